/**
 * The tools that know AWS and LocalStack better than we do, run over both synthesized templates
 * (AWS and `-c target=localstack`), built as `cdk synth` builds them but without bundling:
 *
 * - cfn-lint: CloudFormation's resource schemas, and IAM action names (W3037).
 * - moto's Step Functions with `execute_state_machine`, whose CreateStateMachine parses the
 *   definition with LocalStack's ASL grammar: the LocalStack template's state machine must be
 *   created; the AWS one (EXPRESS children) must be refused, which shows the check can fail.
 *
 * A tool that is not installed is a skip with a message naming it, never a pass.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MotoServer, motoInstalled, startMoto, warnIfMotoMissing } from '../support/moto.ts';
import { type Resources, renderedDefinition, stateMachineOf, synthStack, writeTemplate } from './fixture.ts';

const templates = {
  aws: synthStack().template,
  localstack: synthStack({ target: 'localstack' }).template,
};

// --- cfn-lint -------------------------------------------------------------------------------

/** How to run cfn-lint here: the command on PATH, or the module in the machine's Python. */
function findCfnLint(): string[] | undefined {
  if (spawnSync('cfn-lint', ['--version']).status === 0) return ['cfn-lint'];
  if (spawnSync('python3', ['-c', 'import cfnlint']).status === 0) {
    return ['python3', '-c', 'import sys; from cfnlint.runner import main; sys.exit(main())'];
  }
  return undefined;
}
const cfnLint = findCfnLint();
if (!cfnLint) console.warn('SKIPPED: cfn-lint is not installed (pip install cfn-lint, or put cfn-lint on PATH)');

interface LintMatch {
  readonly Rule: { readonly Id: string };
  readonly Level: string;
  readonly Message: string;
  readonly Location: { readonly Path: readonly (string | number)[] };
}

/** cfn-lint's findings that fail the check: every error, and unknown IAM action names (W3037). */
function lint(file: string): string[] {
  const [command = 'cfn-lint', ...args] = cfnLint ?? [];
  const run = spawnSync(command, [...args, '--format', 'json', file], { encoding: 'utf8' });
  if (run.stdout.trim() === '') throw new Error(`cfn-lint printed nothing for ${file}: ${run.stderr}`);
  const matches = JSON.parse(run.stdout) as LintMatch[];
  return matches
    .filter((m) => m.Level === 'Error' || m.Rule.Id === 'W3037')
    .map((m) => `${m.Rule.Id} at ${m.Location.Path.join('/')}: ${m.Message.slice(0, 200)}`);
}

describe.skipIf(!cfnLint)('cfn-lint', () => {
  it.each(Object.keys(templates) as (keyof typeof templates)[])(
    'finds no error and no unknown IAM action in the %s template',
    (name) => {
      expect(lint(writeTemplate(templates[name], name))).toEqual([]);
    },
  );

  it('reports an unknown IAM action and a wrong property type (the check can fail)', () => {
    const broken = templates.aws.toJSON() as { Resources: Resources };
    const policy = Object.entries(broken.Resources).find(
      ([id, r]) => r.Type === 'AWS::IAM::Policy' && id.startsWith('PipelineRole'),
    )?.[1];
    if (!policy) throw new Error('the template has no policy of the state machine role');
    const statements = (policy.Properties.PolicyDocument as { Statement: { Action: unknown }[] }).Statement;
    (statements[0] as { Action: unknown }).Action = 'athena:StartQueryExecutions';
    const fn = Object.values(broken.Resources).find((r) => r.Type === 'AWS::Lambda::Function');
    if (fn) fn.Properties.MemorySize = 'a lot';
    const file = writeTemplate(templates.aws, 'broken');
    writeFileSync(file, JSON.stringify(broken));
    const findings = lint(file);
    expect(findings).toEqual(expect.arrayContaining([expect.stringMatching(/^W3037 .*startqueryexecutions/)]));
    expect(findings.some((f) => /^E\d+ .*MemorySize/.test(f))).toBe(true);
  });
});

// --- moto (LocalStack's ASL parser) ---------------------------------------------------------

warnIfMotoMissing("LocalStack's ASL parser did not run");

describe.skipIf(!motoInstalled)("moto's Step Functions, which parses definitions with LocalStack's ASL grammar", () => {
  let moto: MotoServer | undefined;
  let endpoint = '';

  beforeAll(async () => {
    moto = await startMoto();
    endpoint = moto.endpoint;
  });

  afterAll(() => {
    moto?.stop();
  });

  /** CreateStateMachine (JSON 1.0 protocol); moto does not check the signature, only reads the region. */
  async function createStateMachine(name: string, definition: string): Promise<{ status: number; body: string }> {
    const response = await fetch(endpoint, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-amz-json-1.0',
        'X-Amz-Target': 'AWSStepFunctions.CreateStateMachine',
        Authorization:
          'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/states/aws4_request, SignedHeaders=host, Signature=0',
      },
      body: JSON.stringify({
        name,
        definition,
        roleArn: 'arn:aws:iam::123456789012:role/sluice-pipeline',
        type: 'STANDARD',
      }),
    });
    return { status: response.status, body: await response.text() };
  }

  it('creates the state machine of the LocalStack template', async () => {
    const result = await createStateMachine('sluice-localstack', renderedDefinition(templates.localstack));
    expect(result.body).toMatch(/"stateMachineArn"/);
    expect(result.status).toBe(200);
  });

  it('refuses the AWS template, whose Distributed Map children are EXPRESS (so the check can fail)', async () => {
    const result = await createStateMachine('sluice-aws', renderedDefinition(templates.aws));
    expect(result.status).toBe(400);
    expect(result.body).toMatch(/mismatched input '\\"EXPRESS\\"' expecting '\\"STANDARD\\"'/);
  });
});

// --- what LocalStack lacks, in both templates -----------------------------------------------

describe.each(Object.keys(templates) as (keyof typeof templates)[])('the %s template', (name) => {
  const definition = JSON.parse(renderedDefinition(templates[name])) as unknown;
  const resources: string[] = [];
  const keys: string[] = [];
  (function walk(node: unknown): void {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        keys.push(key);
        if (key === 'Resource' && typeof value === 'string') resources.push(value);
        walk(value);
      }
    }
  })(definition);

  it('runs Athena through the aws-sdk integration, never .sync (LocalStack does not support it)', () => {
    expect(resources.filter((r) => r.includes(':athena:'))).toEqual([
      'arn:aws:states:::aws-sdk:athena:startQueryExecution',
      'arn:aws:states:::aws-sdk:athena:getQueryExecution',
    ]);
    expect(resources.filter((r) => r.endsWith('.sync') || r.includes('.sync:'))).toEqual([]);
  });

  it('has no ItemBatcher (LocalStack has none; the planner batches)', () => {
    expect(keys).not.toContain('ItemBatcher');
  });

  it('keeps the definition of the ASL file, substituted', () => {
    const file = readFileSync(new URL('../../state-machines/pipeline.asl.json', import.meta.url), 'utf8');
    expect(stateMachineOf(templates[name]).properties.DefinitionString).toBe(file);
  });
});
