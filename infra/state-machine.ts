import { readFileSync } from 'node:fs';
import { ArnFormat, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Effect, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import { DefinitionBody, LogLevel, StateMachine, StateMachineType } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { HANDLERS, type HandlerName, MAP_RESULTS_PREFIX, PLACEHOLDERS } from '../functions/catalog.ts';
import { ConfigError } from '../functions/errors.ts';
import { aslPlaceholders } from './asl.ts';
import type { Handlers } from './handlers.ts';
import { acknowledge, resourceFinding } from './nag.ts';
import { ATHENA_RESULTS_PREFIX } from './storage.ts';
import type { ChildExecutionType } from './target.ts';
import type { Warehouse } from './warehouse.ts';

export interface PipelineStateMachineProps {
  readonly stateMachineName: string;
  readonly aslFile: string;
  readonly handlers: Handlers;
  readonly warehouse: Warehouse;
  readonly workingBucket: IBucket;
  readonly warehouseBucket: IBucket;
  readonly failureTopic: ITopic;
  readonly failureTopicKey: IKey;
  readonly logRetention: RetentionDays;
  /** `ProcessorConfig.ExecutionType` of the Distributed Map (EXPRESS on AWS, STANDARD on LocalStack). */
  readonly childExecutionType: ChildExecutionType;
  /** The account uses Lake Formation for the Data Catalog: grant `lakeformation:GetDataAccess`. */
  readonly lakeFormation: boolean;
}

/**
 * The STANDARD state machine of every pipeline, from the ASL file (the only copy of it).
 * A definition that CDK did not build gets no IAM from CDK, so every permission the
 * states need is written here, scoped to exact ARNs.
 */
export class PipelineStateMachine extends Construct {
  readonly stateMachine: StateMachine;
  /** Built from the name, not the resource, so that the role's policy can name it without a cycle. */
  readonly stateMachineArn: string;

  constructor(scope: Construct, id: string, props: PipelineStateMachineProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const { handlers, warehouse, workingBucket, warehouseBucket, failureTopic } = props;
    const name = props.stateMachineName;

    // Every placeholder from the catalog (functions/catalog.ts), which the embedded runtime substitutes too.
    const substitutions: Record<string, string> = {
      ...Object.fromEntries(
        (Object.keys(HANDLERS) as HandlerName[]).map((key) => [
          HANDLERS[key].placeholder,
          handlers.functions[key].functionArn,
        ]),
      ),
      [PLACEHOLDERS.athenaWorkGroup]: warehouse.workGroupName,
      [PLACEHOLDERS.glueDatabase]: warehouse.databaseName,
      [PLACEHOLDERS.failureTopicArn]: failureTopic.topicArn,
      [PLACEHOLDERS.workingBucketName]: workingBucket.bucketName,
      [PLACEHOLDERS.childExecutionType]: props.childExecutionType,
    };
    const definition = readFileSync(props.aslFile, 'utf8');
    const expected = aslPlaceholders(definition).join(', ');
    const provided = Object.keys(substitutions).sort().join(', ');
    if (expected !== provided) {
      throw new ConfigError(
        `aslFile: ${props.aslFile} has the placeholders [${expected}] but infra/state-machine.ts substitutes [${provided}]: update one of them`,
      );
    }

    this.stateMachineArn = stack.formatArn({
      service: 'states',
      resource: 'stateMachine',
      resourceName: name,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    const executionArn = (resourceName: string) =>
      stack.formatArn({
        service: 'states',
        resource: 'execution',
        resourceName,
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
      });
    // Map Run child executions are named `<state machine>/<map run>:<execution>`; the current guide
    // ("IAM policies for using Distributed Map states",
    // https://docs.aws.amazon.com/step-functions/latest/dg/iam-policies-eg-dist-map.html) grants
    // DescribeExecution on `execution:<state machine>:*`; the earlier form, kept for Stop and Redrive,
    // is `execution:<state machine>/*`.
    const childExecutions = executionArn(`${name}/*`);
    const executions = executionArn(`${name}:*`);
    const mapResults = workingBucket.arnForObjects(`${MAP_RESULTS_PREFIX}/*`);

    this.stateMachine = new StateMachine(this, 'Resource', {
      stateMachineName: name,
      stateMachineType: StateMachineType.STANDARD,
      // Inline (not an S3 asset): the template carries the definition, so `cdk diff` shows ASL changes.
      definitionBody: DefinitionBody.fromString(definition),
      definitionSubstitutions: substitutions,
      logs: {
        destination: new LogGroup(this, 'Logs', {
          // The /aws/vendedlogs/ prefix keeps CloudWatch Logs' resource policy from growing per log group.
          logGroupName: `/aws/vendedlogs/states/${name}`,
          retention: props.logRetention,
          removalPolicy: RemovalPolicy.DESTROY,
        }),
        level: LogLevel.ALL,
        includeExecutionData: true,
      },
      tracingEnabled: true,
    });

    const allow = (sid: string, actions: string[], resources: string[]) =>
      this.stateMachine.addToRolePolicy(new PolicyStatement({ sid, effect: Effect.ALLOW, actions, resources }));
    const fns: IFunction[] = handlers.all;
    allow(
      'InvokeHandlers',
      ['lambda:InvokeFunction'],
      fns.flatMap((fn) => [fn.functionArn, `${fn.functionArn}:*`]),
    );
    // The Distributed Map starts its child executions as executions of this state machine.
    allow('StartChildExecutions', ['states:StartExecution'], [this.stateMachineArn]);
    allow(
      'ManageChildExecutions',
      ['states:DescribeExecution', 'states:StopExecution', 'states:RedriveExecution'],
      [childExecutions],
    );
    allow('DescribeChildExecutions', ['states:DescribeExecution', 'states:StopExecution'], [executions]);
    allow('ReadManifests', ['s3:GetObject'], [workingBucket.arnForObjects('manifests/*')]);
    // The Distributed Map's ResultWriter writes the children's results under map-results/ with a
    // multipart upload; these are the actions the Step Functions guide lists for a ResultWriter.
    allow(
      'WriteMapResults',
      ['s3:PutObject', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:AbortMultipartUpload'],
      [mapResults],
    );

    // Athena runs every statement (DDL, MERGE, derives, OPTIMIZE, VACUUM) through the aws-sdk
    // integration: startQueryExecution, then getQueryExecution until it ends. StopQueryExecution
    // lets a stopped execution's query be cancelled. No `.sync` (LocalStack does not support it).
    allow(
      'RunQueries',
      ['athena:StartQueryExecution', 'athena:GetQueryExecution', 'athena:StopQueryExecution'],
      [warehouse.arns.workGroup],
    );
    allow(
      'ReadDataCatalog',
      ['athena:GetDataCatalog'],
      [stack.formatArn({ service: 'athena', resource: 'datacatalog', resourceName: 'AwsDataCatalog' })],
    );
    // What the queries themselves need from Glue (Athena's "Configure access to databases and tables
    // in the AWS Glue Data Catalog": CREATE TABLE needs CreateTable, ALTER TABLE ADD COLUMNS, MERGE,
    // OPTIMIZE and VACUUM on Iceberg need GetTable and UpdateTable, DROP TABLE needs DeleteTable).
    allow(
      'ManageTables',
      [
        'glue:GetDatabase',
        'glue:GetTable',
        'glue:GetTables',
        'glue:CreateTable',
        'glue:UpdateTable',
        'glue:DeleteTable',
        'glue:GetPartitions',
        'glue:BatchCreatePartition',
      ],
      [warehouse.arns.catalog, warehouse.arns.database, warehouse.arns.tables],
    );
    allow(
      'ListQueryBuckets',
      ['s3:GetBucketLocation', 's3:ListBucket', 's3:ListBucketMultipartUploads'],
      [workingBucket.bucketArn, warehouseBucket.bucketArn],
    );
    allow(
      'ReadStaging',
      ['s3:GetObject'],
      [workingBucket.arnForObjects('staging/*'), workingBucket.arnForObjects('rejects/*')],
    );
    allow(
      'WriteTablesAndResults',
      ['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
      [warehouseBucket.arnForObjects('*'), workingBucket.arnForObjects(`${ATHENA_RESULTS_PREFIX}*`)],
    );
    if (props.lakeFormation) {
      // With Lake Formation permissions, Athena reads and writes table data with credentials it gets
      // from Lake Formation. GetDataAccess has no resource-level permissions: AWS requires Resource "*".
      allow('LakeFormationDataAccess', ['lakeformation:GetDataAccess'], ['*']);
    }
    allow('NotifyFailure', ['sns:Publish'], [failureTopic.topicArn]);
    // Publishing to a topic encrypted with a customer managed key needs the key.
    allow('EncryptNotification', ['kms:GenerateDataKey', 'kms:Decrypt'], [props.failureTopicKey.keyArn]);

    // The Step Functions resource provider replaces exactly the `${Key}` strings of DefinitionSubstitutions
    // and leaves any other `${` text as written; CloudFormation's linter reads such text as a misplaced Fn::Sub.
    const otherDollarBraces = definition.replace(/\$\{[A-Za-z][A-Za-z0-9_]*\}/g, '').includes('${');
    if (otherDollarBraces) {
      acknowledge(
        this.stateMachine,
        'CloudFormation-Validate::E1029',
        `${props.aslFile} has "\${" text that is not a placeholder (e.g. in a Comment). DefinitionString is not an Fn::Sub: CloudFormation substitutes only the DefinitionSubstitutions keys (all checked above) and leaves other text unchanged.`,
      );
    }

    const role = this.stateMachine.role;
    acknowledge(
      role,
      'AwsSolutions-IAM5',
      `No resource-level permissions exist for these, so AWS requires Resource "*": X-Ray PutTraceSegments, PutTelemetryRecords, GetSamplingRules, GetSamplingTargets (tracing) and the CloudWatch Logs vended-log delivery actions Create/Get/Update/Delete/ListLogDeliveries, PutResourcePolicy, DescribeResourcePolicies, DescribeLogGroups (execution logging); CDK adds both.${
        props.lakeFormation
          ? ' Also lakeformation:GetDataAccess (only with -c lakeFormation=true), which has no resource-level permissions either; Lake Formation itself decides which tables the role may reach.'
          : ''
      }`,
      ['Resource::*'],
    );
    acknowledge(
      role,
      'AwsSolutions-IAM5',
      'The six handler functions by ARN; ":*" is the same functions\' versions and aliases (lambda:invoke may be given a qualified ARN).',
      fns.map((fn) => resourceFinding(this, `${fn.functionArn}:*`)),
    );
    acknowledge(
      role,
      'AwsSolutions-IAM5',
      'Executions of this state machine only (execution:<name>/* and execution:<name>:*, the forms of the Step Functions guide for Distributed Map children): the Distributed Map names its child executions per run, and a redrive targets them.',
      [resourceFinding(this, childExecutions), resourceFinding(this, executions)],
    );

    acknowledge(
      role,
      'AwsSolutions-IAM5',
      "Run-specific objects under fixed prefixes of Sluice's own buckets: the ItemReader reads manifests/, the ResultWriter writes map-results/, Athena reads staging/ and rejects/, writes athena-results/ and the Iceberg table files of the warehouse bucket (their paths are chosen by Iceberg).",
      [
        workingBucket.arnForObjects('manifests/*'),
        mapResults,
        workingBucket.arnForObjects('staging/*'),
        workingBucket.arnForObjects('rejects/*'),
        workingBucket.arnForObjects(`${ATHENA_RESULTS_PREFIX}*`),
        warehouseBucket.arnForObjects('*'),
      ].map((arn) => resourceFinding(this, arn)),
    );
    acknowledge(
      role,
      'AwsSolutions-IAM5',
      "The tables of the Sluice Glue database only (table/<database>/*): the pipelines' CREATE TABLE IF NOT EXISTS creates them at run time, so they are not resources of this stack.",
      [resourceFinding(this, warehouse.arns.tables)],
    );
  }
}
