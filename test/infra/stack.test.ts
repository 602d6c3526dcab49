import { Duration } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import type { SluiceStackProps } from '../../infra/stack.ts';
import { type Resources, synthStack, twoPipelinesDir } from './fixture.ts';

/** `<prefix><last group of the stack id's UUID>`, as CloudFormation builds it. */
const instanceName = (prefix: string) => ({
  'Fn::Join': [
    '',
    [
      prefix,
      {
        'Fn::Select': [
          4,
          { 'Fn::Split': ['-', { 'Fn::Select': [2, { 'Fn::Split': ['/', { Ref: 'AWS::StackId' }] }] }] },
        ],
      },
    ],
  ],
});

describe('SluiceStack resources', () => {
  const { template, stack } = synthStack({ pipelinesDir: twoPipelinesDir() });
  const ref = (resource: string) => ({ Ref: Match.stringLikeRegexp(`^${resource}`) });

  it('keeps every bucket private, encrypted and TLS-only', () => {
    const buckets = template.findResources('AWS::S3::Bucket') as Resources;
    expect(Object.keys(buckets)).toHaveLength(4);
    for (const [id, bucket] of Object.entries(buckets)) {
      expect(bucket.Properties, id).toMatchObject({
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
      });
      template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: id },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        },
      });
    }
  });

  it('sends the input bucket events to EventBridge without a custom resource', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      NotificationConfiguration: { EventBridgeConfiguration: { EventBridgeEnabled: true } },
      VersioningConfiguration: { Status: 'Enabled' },
    });
    expect(Object.keys(template.findResources('Custom::S3BucketNotifications'))).toHaveLength(0);
    const custom = Object.values(template.toJSON().Resources as Resources).filter(
      (r) => r.Type.startsWith('Custom::') || r.Type === 'AWS::CloudFormation::CustomResource',
    );
    expect(custom).toEqual([]);
  });

  it('starts a run for objects under each pipeline prefix with one of its suffixes', () => {
    template.resourceCountIs('AWS::Events::Rule', 2);
    const cases = [
      { pipeline: 'access-logs', keys: [{ wildcard: 'access-logs/*.csv' }, { wildcard: 'access-logs/*.csv.gz' }] },
      { pipeline: 'clicks', keys: [{ wildcard: 'clicks/*.csv' }] },
    ];
    for (const { pipeline, keys } of cases) {
      template.hasResourceProperties('AWS::Events::Rule', {
        EventPattern: {
          source: ['aws.s3'],
          'detail-type': ['Object Created'],
          detail: { bucket: { name: [ref('StorageInput')] }, object: { key: keys } },
        },
        Targets: [
          Match.objectLike({
            Arn: ref('Pipeline'),
            InputTransformer: {
              InputPathsMap: {
                'detail-bucket-name': '$.detail.bucket.name',
                'detail-object-key': '$.detail.object.key',
              },
              InputTemplate: `{"pipeline":"${pipeline}","trigger":"object","bucket":<detail-bucket-name>,"key":<detail-object-key>}`,
            },
            RetryPolicy: { MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 7200 },
            DeadLetterConfig: { Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TriggersDeadLetters'), 'Arn'] } },
          }),
        ],
      });
    }
  });

  it('schedules access-logs at 20:00 Asia/Seoul, and only the pipelines that have a schedule', () => {
    template.resourceCountIs('AWS::Scheduler::Schedule', 1);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 20 * * ? *)',
      ScheduleExpressionTimezone: 'Asia/Seoul',
      FlexibleTimeWindow: { Mode: 'OFF' },
      State: 'ENABLED',
      Target: {
        Arn: ref('Pipeline'),
        Input: JSON.stringify({ pipeline: 'access-logs', trigger: 'schedule' }),
        RetryPolicy: { MaximumRetryAttempts: 3 },
        DeadLetterConfig: { Arn: Match.anyValue() },
      },
    });
  });

  it('runs every handler on Node 24, arm64, with the Sluice settings', () => {
    const functions = template.findResources('AWS::Lambda::Function') as Resources;
    expect(Object.keys(functions).map((id) => id.replace(/[0-9A-F]{8}$/, ''))).toEqual([
      'HandlersPlan',
      'HandlersWork',
      'HandlersVerify',
      'HandlersFinish',
      'HandlersRecordFailure',
      'HandlersLease',
    ]);
    for (const fn of Object.values(functions)) {
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        Environment: {
          Variables: {
            SLUICE_INPUT_BUCKET: { Ref: expect.stringMatching(/^StorageInput/) },
            SLUICE_WORKING_BUCKET: { Ref: expect.stringMatching(/^StorageWorking/) },
            SLUICE_WAREHOUSE_BUCKET: { Ref: expect.stringMatching(/^StorageWarehouse/) },
            SLUICE_PIPELINES_DIR: '/var/task/pipelines',
            SLUICE_ATHENA_DATABASE: instanceName('test_'),
          },
        },
        LoggingConfig: { LogGroup: { Ref: expect.stringMatching(/^Handlers.*Logs/) } },
      });
    }
  });

  it('gives the worker a full vCPU, 4 GB of /tmp and a timeout well under the 5 minutes of EXPRESS children', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      MemorySize: 1769,
      Timeout: 120,
      EphemeralStorage: { Size: 4096 },
      Environment: { Variables: Match.objectLike({ SLUICE_PIPELINES_DIR: '/var/task/pipelines' }) },
    });
  });

  it('keeps handler logs in their own log groups with a retention', () => {
    const groups = Object.values(template.findResources('AWS::Logs::LogGroup') as Resources);
    expect(groups).toHaveLength(7);
    for (const group of groups) expect(group.Properties.RetentionInDays).toBe(30);
  });

  it('gives Athena a workgroup that enforces its settings, encrypts results and caps each scan', () => {
    template.hasResourceProperties('AWS::Athena::WorkGroup', {
      Name: instanceName('Test-'),
      WorkGroupConfiguration: {
        EnforceWorkGroupConfiguration: true,
        BytesScannedCutoffPerQuery: 10 * 1024 ** 3,
        EngineVersion: { SelectedEngineVersion: 'Athena engine version 3' },
        ResultConfiguration: {
          OutputLocation: {
            'Fn::Join': ['', ['s3://', ref('StorageWorking'), '/athena-results/']],
          },
          EncryptionConfiguration: { EncryptionOption: 'SSE_S3' },
        },
      },
    });
    template.hasResourceProperties('AWS::Glue::Database', { DatabaseInput: { Name: instanceName('test_') } });
    expect(Object.keys(template.findResources('AWS::Glue::Table'))).toHaveLength(0);
  });

  it('alarms on failed executions through an encrypted, TLS-only topic', () => {
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
    // Failed runs notify through the Notify state, or a composite alarm when they skip it (test/infra/monitoring.test.ts).
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ExecutionsTimedOut',
      Namespace: 'AWS/States',
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      AlarmActions: [ref('FailuresTopic')],
    });
  });

  it('outputs what the CLI and a user need to find the deployment', () => {
    const outputs = Object.keys(template.findOutputs('*'));
    expect(outputs).toEqual(
      expect.arrayContaining([
        'InputBucketName',
        'WorkingBucketName',
        'WarehouseBucketName',
        'StateMachineArn',
        'FailureTopicArn',
        'AthenaWorkGroup',
        'GlueDatabase',
      ]),
    );
  });

  it('deploys every pipeline of the folder', () => {
    expect([...stack.pipelines.keys()]).toEqual(['access-logs', 'clicks']);
  });
});

describe('SluiceStack props', () => {
  it('accepts the defaults for the repository pipelines', () => {
    expect(() => synthStack()).not.toThrow();
  });

  it.each<[string, SluiceStackProps, RegExp]>([
    ['a worker timeout over 5 minutes', { workerTimeout: Duration.minutes(6) }, /workerTimeout: 6 minutes is not in/],
    ['a worker memory under 128 MB', { workerMemorySize: 100 }, /workerMemorySize: 100/],
    ['a state machine name over 80 characters', { stateMachineName: 'x'.repeat(81) }, /stateMachineName: "x+"/],
    ['a Glue database name with capitals', { glueDatabaseName: 'Sluice-DB' }, /glueDatabaseName: "Sluice-DB"/],
    ['an email without @', { failureEmails: ['ops'] }, /failureEmails: "ops"/],
    ['a handlers folder without handlers', { handlersDir: '/nonexistent' }, /handlersDir: the Plan handler/],
  ])('rejects %s, naming the prop', (_, props, message) => {
    expect(() => synthStack(props)).toThrow(message);
  });

  it('rejects two pipelines that would both take the same upload', () => {
    const dir = twoPipelinesDir({ clicksPrefix: 'access-logs/clicks/' });
    expect(() => synthStack({ pipelinesDir: dir })).toThrow(
      /pipelines access-logs .* and clicks .* both take objects under access-logs\/clicks\/ ending in \.csv/,
    );
  });

  it('rejects two pipelines that would write the same table', () => {
    const dir = twoPipelinesDir({ clicksTable: 'access_logs' });
    expect(() => synthStack({ pipelinesDir: dir })).toThrow(/both use table access_logs\b/);
  });

  it('names the retained Glue database and the workgroup per stack instance, so a redeploy after cdk destroy does not meet the old names', () => {
    const { template } = synthStack();
    const database = Object.values(template.findResources('AWS::Glue::Database') as Resources)[0];
    const workGroup = Object.values(template.findResources('AWS::Athena::WorkGroup') as Resources)[0];
    const databaseName = (database?.Properties.DatabaseInput as { Name: unknown } | undefined)?.Name;
    // Not the plain stack name (which a destroyed instance's retained database still holds)...
    expect(databaseName).not.toBe('test');
    expect(workGroup?.Properties.Name).not.toBe('Test');
    // ...but the stack name and the stack id's UUID, which CloudFormation makes new for every instance.
    expect(databaseName).toEqual(instanceName('test_'));
    expect(workGroup?.Properties.Name).toEqual(instanceName('Test-'));
    // The same tokens reach the state machine's substitutions and the outputs.
    const machine = Object.values(template.findResources('AWS::StepFunctions::StateMachine') as Resources)[0];
    expect(machine?.Properties.DefinitionSubstitutions).toMatchObject({
      GlueDatabase: instanceName('test_'),
      AthenaWorkGroup: instanceName('Test-'),
    });
    expect(template.findOutputs('GlueDatabase').GlueDatabase?.Value).toEqual(instanceName('test_'));
    expect(template.findOutputs('AthenaWorkGroup').AthenaWorkGroup?.Value).toEqual(instanceName('Test-'));
  });

  it('keeps explicit Glue database and workgroup names', () => {
    const { template } = synthStack({ glueDatabaseName: 'warehouse', athenaWorkGroupName: 'loads' });
    template.hasResourceProperties('AWS::Glue::Database', { DatabaseInput: { Name: 'warehouse' } });
    template.hasResourceProperties('AWS::Athena::WorkGroup', { Name: 'loads' });
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      DefinitionSubstitutions: Match.objectLike({ GlueDatabase: 'warehouse', AthenaWorkGroup: 'loads' }),
    });
    expect(template.findOutputs('GlueDatabase').GlueDatabase?.Value).toBe('warehouse');
  });

  it('rejects a stack name too long for the default workgroup name, naming the prop', () => {
    expect(() => synthStack({ stackName: 'S'.repeat(120), stateMachineName: 'pipeline' })).toThrow(
      /athenaWorkGroupName: the default .* is longer than 128 characters/,
    );
  });

  it('deploys schedules disabled when asked', () => {
    const { template } = synthStack({ schedulesEnabled: false });
    template.hasResourceProperties('AWS::Scheduler::Schedule', { State: 'DISABLED' });
  });
});
