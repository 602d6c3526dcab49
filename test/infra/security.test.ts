/**
 * Issue 7, security: the synthesized templates grant no more than Sluice needs and keep
 * every store private, on every target (AWS, LocalStack, AWS with Lake Formation). This
 * file covers every policy of a template (IAM, bucket, key, topic and queue policies) and
 * every store; test/infra/state-machine.test.ts looks closer at the state machine role of
 * the AWS template, test/infra/stack.test.ts at the buckets of a two-pipeline stack, and
 * test/infra/nag.test.ts runs cdk-nag's AwsSolutions rules (not repeated here).
 */
import type { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { asArray, type Resources, synthStack } from './fixture.ts';

interface AnyStatement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  NotAction?: unknown;
  Resource?: unknown;
  NotResource?: unknown;
  Principal?: unknown;
  NotPrincipal?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

interface Owned {
  readonly owner: string;
  readonly type: string;
  readonly statement: AnyStatement;
}

/** Every statement of every policy document in the template: identity and resource policies alike. */
function allStatements(template: Template): Owned[] {
  const out: Owned[] = [];
  const add = (owner: string, type: string, doc: unknown) => {
    for (const statement of asArray((doc as { Statement: AnyStatement | AnyStatement[] }).Statement)) {
      out.push({ owner, type, statement });
    }
  };
  for (const [id, r] of Object.entries(template.toJSON().Resources as Resources)) {
    const p = r.Properties ?? {};
    if (p.PolicyDocument) add(id, r.Type, p.PolicyDocument);
    if (p.KeyPolicy) add(id, r.Type, p.KeyPolicy);
    if (p.AssumeRolePolicyDocument) add(id, `${r.Type} trust`, p.AssumeRolePolicyDocument);
    for (const inline of (p.Policies ?? []) as { PolicyDocument: unknown }[]) add(id, r.Type, inline.PolicyDocument);
  }
  return out;
}

/**
 * The only grants on Resource "*", each with the reason AWS gives no narrower resource.
 * Anything else on "*" fails the test: scope it to an ARN, or add it here with its reason.
 */
const UNSCOPED: readonly { readonly actions: RegExp; readonly where: RegExp; readonly why: string }[] = [
  {
    actions: /^xray:(PutTraceSegments|PutTelemetryRecords|GetSamplingRules|GetSamplingTargets)$/,
    where: /^PipelineRole/,
    why: 'X-Ray tracing of the state machine: these X-Ray actions have no resource-level permissions',
  },
  {
    actions:
      /^logs:(CreateLogDelivery|GetLogDelivery|UpdateLogDelivery|DeleteLogDelivery|ListLogDeliveries|PutResourcePolicy|DescribeResourcePolicies|DescribeLogGroups)$/,
    where: /^PipelineRole/,
    why: 'Step Functions logging to CloudWatch Logs: the log delivery actions must be granted on "*" (Step Functions guide, "IAM policies for logging to CloudWatch Logs")',
  },
  {
    actions: /^lakeformation:GetDataAccess$/,
    where: /^PipelineRole/,
    why: 'only with lakeFormation: true; Lake Formation vends credentials per table itself, and GetDataAccess has no resource-level permissions',
  },
  {
    actions: /^kms:/,
    where: /^FailuresKey/,
    why: 'a KMS key policy: Resource "*" there means the key itself, the only resource a key policy can name',
  },
];

/** The only Allow of every action of a service: the KMS key policy's account statement, which delegates the key to IAM. */
const isKeyAccountStatement = ({ type, statement }: Owned) =>
  type === 'AWS::KMS::Key' &&
  JSON.stringify(statement.Principal) ===
    JSON.stringify({ AWS: { 'Fn::Join': ['', ['arn:aws:iam::', { Ref: 'AWS::AccountId' }, ':root']] } });

/**
 * The action sets of CDK's bucket grants (grantRead, grantReadWrite, grantDelete) on one
 * bucket each; acknowledged one by one for cdk-nag in infra/handlers.ts.
 */
const CDK_GRANT_WILDCARDS = /^s3:(GetObject\*|GetBucket\*|List\*|Abort\*|DeleteObject\*|PutObject\*)$/;

const TEMPLATES = [
  ['AWS', synthStack().template],
  ['LocalStack', synthStack({ target: 'localstack' }).template],
  ['AWS with Lake Formation', synthStack({ lakeFormation: true }).template],
] as const;

const label = ({ owner, type, statement }: Owned) => `${owner} (${type}) ${statement.Sid ?? ''}`.trim();

describe.each(TEMPLATES)('the %s template', (_name, template) => {
  const statements = allStatements(template);
  const allows = statements.filter(({ statement }) => statement.Effect === 'Allow');

  it('has policies to check', () => {
    expect(allows.length).toBeGreaterThan(20);
    expect(new Set(statements.map((s) => s.type))).toEqual(
      new Set([
        'AWS::IAM::Policy',
        'AWS::IAM::Role trust',
        'AWS::S3::BucketPolicy',
        'AWS::KMS::Key',
        'AWS::SNS::TopicPolicy',
        'AWS::SQS::QueuePolicy',
      ]),
    );
  });

  it('allows no "*" action and no whole service, in any policy (the KMS key delegating to its account aside)', () => {
    for (const owned of allows) {
      if (isKeyAccountStatement(owned)) continue;
      for (const action of asArray(owned.statement.Action ?? [])) {
        expect(action, label(owned)).not.toBe('*');
        expect(action, label(owned)).not.toMatch(/^[a-z0-9-]+:\*$/);
      }
    }
  });

  it('uses wildcards inside action names only for the CDK S3 grant sets of the handler roles', () => {
    for (const owned of allows) {
      if (isKeyAccountStatement(owned)) continue;
      for (const action of asArray(owned.statement.Action ?? []).filter((a) => a.includes('*'))) {
        expect(action, label(owned)).toMatch(CDK_GRANT_WILDCARDS);
        expect(owned.owner, `${action} outside a handler role`).toMatch(/^Handlers/);
      }
    }
  });

  it('uses no NotAction, NotResource or NotPrincipal in an Allow (they grant everything else)', () => {
    for (const owned of allows) {
      expect(owned.statement.NotAction, label(owned)).toBeUndefined();
      expect(owned.statement.NotResource, label(owned)).toBeUndefined();
      expect(owned.statement.NotPrincipal, label(owned)).toBeUndefined();
    }
  });

  it('grants on Resource "*" only what the named list justifies', () => {
    const unscoped = allows.filter(({ statement }) => asArray(statement.Resource ?? []).includes('*'));
    expect(unscoped.length).toBeGreaterThan(0);
    for (const owned of unscoped) {
      for (const action of asArray(owned.statement.Action ?? [])) {
        const reason = UNSCOPED.find((u) => u.actions.test(action) && u.where.test(owned.owner));
        expect(reason, `${label(owned)}: ${action} on "*" has no reason in UNSCOPED`).toBeDefined();
      }
    }
  });

  it('grants lakeformation:GetDataAccess only in the Lake Formation template', () => {
    const granted = allows.some(({ statement }) =>
      asArray(statement.Action ?? []).includes('lakeformation:GetDataAccess'),
    );
    expect(granted).toBe(_name === 'AWS with Lake Formation');
  });

  it('opens no resource policy to everyone: every Allow names a service or the account, under a condition for services', () => {
    const resourcePolicies = allows.filter(({ type }) => !type.startsWith('AWS::IAM::'));
    for (const owned of resourcePolicies) {
      const principal = owned.statement.Principal;
      expect(principal, label(owned)).not.toBe('*');
      expect(JSON.stringify(principal), label(owned)).not.toMatch(/"AWS":"\*"/);
      if (JSON.stringify(principal).includes('"Service"')) {
        expect(
          owned.statement.Condition,
          `${label(owned)}: a service principal needs a source condition`,
        ).toBeDefined();
      }
    }
  });

  it('keeps every bucket encrypted, private and TLS-only, and versions the input bucket', () => {
    const buckets = template.findResources('AWS::S3::Bucket') as Resources;
    const policies = Object.values(template.findResources('AWS::S3::BucketPolicy') as Resources);
    expect(Object.keys(buckets).length).toBeGreaterThanOrEqual(4);
    for (const [id, bucket] of Object.entries(buckets)) {
      const encryption = bucket.Properties.BucketEncryption as {
        ServerSideEncryptionConfiguration: { ServerSideEncryptionByDefault: { SSEAlgorithm: string } }[];
      };
      expect(
        encryption?.ServerSideEncryptionConfiguration.map((c) => c.ServerSideEncryptionByDefault.SSEAlgorithm),
        id,
      ).toEqual([expect.stringMatching(/^(AES256|aws:kms|aws:kms:dsse)$/)]);
      expect(bucket.Properties.PublicAccessBlockConfiguration, id).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      expect(bucket.Properties.OwnershipControls, `${id}: ACLs disabled`).toEqual({
        Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }],
      });
      // The Deny on aws:SecureTransport false covers the bucket and every object in it.
      const policy = policies.find((p) => JSON.stringify(p.Properties.Bucket) === JSON.stringify({ Ref: id }));
      const deny = asArray(
        (policy?.Properties.PolicyDocument as { Statement: AnyStatement[] } | undefined)?.Statement ?? [],
      ).find((s) => s.Effect === 'Deny' && s.Condition?.Bool?.['aws:SecureTransport'] === 'false');
      expect(deny, `${id}: SSL-only bucket policy`).toBeDefined();
      expect(asArray(deny?.Action ?? []), id).toEqual(['s3:*']);
      expect(JSON.stringify(deny?.Resource), id).toContain(`{"Fn::GetAtt":["${id}","Arn"]},"/*"]`);
    }
    const input = Object.entries(buckets).filter(([id]) => id.startsWith('StorageInput'));
    expect(input).toHaveLength(1);
    expect(input[0]?.[1].Properties.VersioningConfiguration).toEqual({ Status: 'Enabled' });
  });

  it('encrypts the failure topic with its own rotated key and the dead-letter queue at rest', () => {
    for (const topic of Object.values(template.findResources('AWS::SNS::Topic') as Resources)) {
      expect(JSON.stringify(topic.Properties.KmsMasterKeyId)).toMatch(/FailuresKey/);
    }
    for (const key of Object.values(template.findResources('AWS::KMS::Key') as Resources)) {
      expect(key.Properties.EnableKeyRotation).toBe(true);
    }
    for (const queue of Object.values(template.findResources('AWS::SQS::Queue') as Resources)) {
      expect(queue.Properties.SqsManagedSseEnabled === true || queue.Properties.KmsMasterKeyId !== undefined).toBe(
        true,
      );
    }
  });
});
