/**
 * `sluice run <pipeline> --scheduled --target localstack`, run as a user runs it, against moto
 * standing in for LocalStack (LocalStack's EventBridge Scheduler never fires schedules, so this
 * command is how the scheduled run starts there): the CLI must find the state machine in the
 * stack's outputs, start it with exactly the input the schedule sends, wait for it, and exit 0
 * only for SUCCEEDED; a missing stack and a failed run are one plain message each.
 *
 * moto's Step Functions (with `execute_state_machine`) runs executions with LocalStack's
 * interpreter. moto 5.2.1 can start only one execution per account and region (StartExecution
 * deep-copies the backend, threads of earlier executions included, and fails), so each run
 * below has its own region. A missing moto is a skip with a message naming it, never a pass.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CloudFormationClient, CreateStackCommand } from '@aws-sdk/client-cloudformation';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import {
  CreateStateMachineCommand,
  DescribeExecutionCommand,
  ListExecutionsCommand,
  SFNClient,
} from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MotoServer, motoInstalled, startMoto, warnIfMotoMissing } from '../support/moto.ts';

const root = join(import.meta.dirname, '../..');
const cli = join(root, 'cli/sluice.ts');
const SCHEDULE_INPUT = { pipeline: 'access-logs', trigger: 'schedule' };

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The CLI as a user runs it, with no AWS settings of this machine: only what the test passes. */
async function sluice(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('AWS_') && key !== 'SLUICE_DEBUG'),
  );
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [cli, ...args], {
      cwd: root,
      env: { ...clean, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** What the CLI printed to stderr, without its timestamped progress lines. */
const errorLines = (result: CliResult) =>
  result.stderr
    .trim()
    .split('\n')
    .filter((line) => line !== '');

describe('sluice run --target: errors before any AWS call', () => {
  it('refuses an unknown target in one line, naming the targets', async () => {
    const result = await sluice(['run', 'access-logs', '--scheduled', '--target', 'azure']);
    expect(result.code).not.toBe(0);
    expect(errorLines(result)).toEqual(['sluice: unknown --target "azure"; use one of local, localstack, aws']);
  });

  it('refuses --dir with a deployed target, with exit code 2', async () => {
    const result = await sluice(['runs', '--target', 'aws', '--dir', '.sluice']);
    expect(result.code).toBe(2);
    expect(errorLines(result)).toEqual([
      "sluice: --dir is the local runtime's folder: it does not go with --target aws",
    ]);
  });

  it('refuses --stack with the local target', async () => {
    const result = await sluice(['run', 'access-logs', '--scheduled', '--stack', 'Sluice']);
    expect(result.code).toBe(2);
    expect(errorLines(result)).toEqual([
      'sluice: --stack names a deployed stack: use it with --target localstack or --target aws',
    ]);
  });

  it('documents the targets in the help texts', async () => {
    for (const command of ['run', 'runs', 'status', 'query', 'redrive', 'backfill']) {
      expect((await sluice([command, '--help'])).stdout).toMatch(/--target .*local, localstack, aws/);
    }
    expect((await sluice(['--help'])).stdout).toMatch(/--target local\|localstack\|aws/);
  });
});

warnIfMotoMissing('`sluice run --target localstack` was not run');

describe.skipIf(!motoInstalled)('sluice run --scheduled --target localstack, against moto', () => {
  let moto: MotoServer | undefined;
  let endpoint = '';

  const clients = (region: string) => {
    const config = { endpoint, region, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } };
    return {
      sfn: new SFNClient(config),
      cloudFormation: new CloudFormationClient(config),
      s3: new S3Client({ ...config, forcePathStyle: true }),
    };
  };

  /** A state machine of one state and a stack whose `StateMachineArn` output names it, as a deploy leaves them. */
  async function deploy(region: string, stack: string, state: Record<string, unknown>): Promise<string> {
    const { sfn, cloudFormation, s3 } = clients(region);
    const working = `${stack.toLowerCase()}-working`;
    await s3.send(new CreateBucketCommand({ Bucket: working }));
    const { stateMachineArn } = await sfn.send(
      new CreateStateMachineCommand({
        name: `${stack}-pipeline`,
        roleArn: 'arn:aws:iam::123456789012:role/sluice-pipeline',
        definition: JSON.stringify({ StartAt: 'Only', States: { Only: state } }),
      }),
    );
    if (!stateMachineArn) throw new Error(`moto created no state machine for ${stack}`);
    await cloudFormation.send(
      new CreateStackCommand({
        StackName: stack,
        TemplateBody: JSON.stringify({
          Resources: { Handle: { Type: 'AWS::CloudFormation::WaitConditionHandle' } },
          // What a deploy of infra/stack.ts outputs (cli/target.ts reads them).
          Outputs: {
            Other: { Value: 'not the state machine' },
            StateMachineArn: { Value: stateMachineArn },
            InputBucketName: { Value: `${stack.toLowerCase()}-input` },
            WorkingBucketName: { Value: working },
            WarehouseBucketName: { Value: `${stack.toLowerCase()}-warehouse` },
            AthenaWorkGroup: { Value: 'primary' },
            GlueDatabase: { Value: 'sluice' },
          },
        }),
      }),
    );
    return stateMachineArn;
  }

  beforeAll(async () => {
    moto = await startMoto();
    endpoint = moto.endpoint;
  }, 40_000);

  afterAll(() => {
    moto?.stop();
  });

  it('starts one execution with the schedule input, waits for it and exits 0 for SUCCEEDED', async () => {
    // A Pass state outputs its input.
    const stateMachineArn = await deploy('us-east-1', 'SluiceTest', { Type: 'Pass', End: true });
    const result = await sluice(
      ['run', 'access-logs', '--scheduled', '--target', 'localstack', '--stack', 'SluiceTest'],
      { AWS_ENDPOINT_URL: endpoint },
    );
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);

    const { sfn } = clients('us-east-1');
    const { executions = [] } = await sfn.send(new ListExecutionsCommand({ stateMachineArn }));
    expect(executions).toHaveLength(1);
    const executionArn = executions[0]?.executionArn ?? '';
    const execution = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    expect(execution.status).toBe('SUCCEEDED');
    expect(execution.input).toBe(JSON.stringify(SCHEDULE_INPUT));
    expect(JSON.parse(execution.input ?? '')).toEqual(SCHEDULE_INPUT);
    expect(JSON.parse(execution.output ?? '')).toEqual(SCHEDULE_INPUT);
    expect(executionArn).toMatch(/:execution:SluiceTest-pipeline:access-logs-\d{8}T\d{6}Z-[0-9a-z]{6}$/);

    // The same summary as on the embedded runtime.
    expect(result.stdout).toContain(`execution ${executionArn}`);
    expect(result.stdout).toMatch(/^status +SUCCEEDED$/m);
    expect(result.stdout).toMatch(/^pipeline +access-logs \(schedule\)$/m);

    // `sluice runs` lists it through the same Step Functions calls as on the embedded runtime.
    const listed = await sluice(['runs', '--json', '--target', 'localstack', '--stack', 'SluiceTest'], {
      AWS_ENDPOINT_URL: endpoint,
    });
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({
        id: executionArn.split(':').at(-1),
        pipeline: 'access-logs',
        trigger: 'schedule',
        status: 'SUCCEEDED',
      }),
    ]);
  }, 60_000);

  it('says in one line that the stack does not exist, naming the stack and the endpoint', async () => {
    const result = await sluice(
      ['run', 'access-logs', '--scheduled', '--target', 'localstack', '--stack', 'NoSuchSluice'],
      { AWS_ENDPOINT_URL: endpoint },
    );
    expect(result.code).not.toBe(0);
    const lines = errorLines(result);
    expect(lines, result.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^sluice: there is no stack "NoSuchSluice" on LocalStack at /);
    expect(lines[0]).toContain(endpoint);
    expect(lines[0]).not.toMatch(/\n|^\s+at /);
  }, 60_000);

  it('says which output it looked for in which stack when the stack lacks it', async () => {
    const { cloudFormation } = clients('us-east-1');
    await cloudFormation.send(
      new CreateStackCommand({
        StackName: 'NotSluice',
        TemplateBody: JSON.stringify({
          Resources: { Handle: { Type: 'AWS::CloudFormation::WaitConditionHandle' } },
          Outputs: { BucketName: { Value: 'some-bucket' } },
        }),
      }),
    );
    const result = await sluice(
      ['run', 'access-logs', '--scheduled', '--target', 'localstack', '--stack', 'NotSluice'],
      { AWS_ENDPOINT_URL: endpoint },
    );
    expect(result.code).not.toBe(0);
    const lines = errorLines(result);
    expect(lines, result.stderr).toHaveLength(1);
    expect(lines[0]).toContain(`stack "NotSluice" on LocalStack at ${endpoint}`);
    expect(lines[0]).toContain(
      'has no output InputBucketName, WorkingBucketName, WarehouseBucketName, StateMachineArn',
    );
    expect(lines[0]).toContain('its outputs are BucketName');
  }, 60_000);

  it("exits non-zero for a failed run and prints the run's error and cause", async () => {
    // Its own region: see the header. The region comes from AWS_REGION, as with cdklocal.
    await deploy('eu-west-1', 'SluiceFails', {
      Type: 'Fail',
      Error: 'Sluice.QueryFailed',
      Cause: 'TABLE_NOT_FOUND: Table access_logs does not exist',
    });
    const result = await sluice(
      ['run', 'access-logs', '--scheduled', '--target', 'localstack', '--stack', 'SluiceFails'],
      { AWS_ENDPOINT_URL: endpoint, AWS_REGION: 'eu-west-1' },
    );
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(1);
    expect(result.stdout).toMatch(
      /^execution arn:aws:states:eu-west-1:\d+:execution:SluiceFails-pipeline:access-logs-/m,
    );
    expect(result.stdout).toMatch(/^status +FAILED$/m);
    expect(result.stdout).toMatch(/^error +TABLE_NOT_FOUND: Table access_logs does not exist/m);
    expect(result.stdout).toMatch(/^type +Sluice\.QueryFailed$/m);
  }, 60_000);
});
