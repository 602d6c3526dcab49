/**
 * The embedded runtime answers the AWS CLI as AWS does (issue 10): with `sluice dev` running in
 * its own process, the AWS CLI v1 (`python3 -m awscli`, with dummy credentials and none of the
 * user's configuration) drops a file into S3, lists the state machine, starts the scheduled run
 * with the schedule's input, sees it SUCCEED with describe-execution, reads its history, and runs
 * `SELECT count(*) FROM access_logs` through start-query-execution / get-query-results with the
 * answer `sluice query` gives. Without the AWS CLI the test is skipped, saying so.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADER, logRow } from '../support/fixtures.ts';
import { tempDir } from '../support/temp.ts';

const run = promisify(execFile);
const root = join(import.meta.dirname, '../..');
const cli = join(root, 'cli/sluice.ts');
const STATE_MACHINE = 'arn:aws:states:us-east-1:000000000000:stateMachine:sluice-pipeline';

const awsCli = await run('python3', ['-m', 'awscli', '--version']).then(
  () => true,
  () => false,
);
if (!awsCli) console.warn('test/e2e/aws-cli.test.ts skipped: python3 -m awscli is missing (pip install awscli)');

let dir = '';
let dev: ChildProcess | undefined;
let endpoint = '';

/** Dummy credentials, and none of the user's AWS configuration. */
const env: NodeJS.ProcessEnv = {
  ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('AWS_'))),
  AWS_ACCESS_KEY_ID: 'any',
  AWS_SECRET_ACCESS_KEY: 'any',
  AWS_CONFIG_FILE: '/dev/null',
  AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
};

async function aws<T>(...args: string[]): Promise<T> {
  const { stdout } = await run(
    'python3',
    ['-m', 'awscli', ...args, '--endpoint-url', endpoint, '--region', 'us-east-1', '--output', 'json'],
    { env, maxBuffer: 64 * 1024 * 1024 },
  );
  return (stdout.trim() ? JSON.parse(stdout) : {}) as T;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  if (!awsCli) return;
  dir = tempDir('awscli-');
  let log = '';
  dev = spawn(process.execPath, [cli, 'dev', '--port', '0', '--ui-port', '0', '--dir', dir], { cwd: root });
  dev.stdout?.on('data', (b: Buffer) => {
    log += b.toString();
  });
  dev.stderr?.on('data', (b: Buffer) => {
    log += b.toString();
  });
  for (let i = 0; i < 240 && !endpoint; i++) {
    endpoint = /S3 at (http:\/\/127\.0\.0\.1:\d+)/.exec(log)?.[1] ?? '';
    if (!endpoint) await sleep(250);
  }
  if (!endpoint) throw new Error(`sluice dev did not start:\n${log}`);
}, 120_000);

afterAll(async () => {
  if (dev) {
    dev.kill('SIGINT');
    await new Promise((resolve) => dev?.once('exit', resolve));
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!awsCli)('the AWS CLI against `sluice dev`', () => {
  it('runs the scheduled run through Step Functions and counts its rows through Athena', {
    timeout: 180_000,
  }, async () => {
    const file = join(dir, 'day.csv');
    writeFileSync(file, `${HEADER}\n${Array.from({ length: 500 }, (_, i) => logRow(i)).join('\n')}\n`);
    // The upload starts its own run; the scheduled run then finds the file loaded and adds nothing.
    await run(
      'python3',
      [
        '-m',
        'awscli',
        's3',
        'cp',
        file,
        's3://sluice-input/access-logs/day.csv',
        '--endpoint-url',
        endpoint,
        '--region',
        'us-east-1',
      ],
      { env },
    );

    const { stateMachines } = await aws<{ stateMachines: { stateMachineArn: string; name: string }[] }>(
      'stepfunctions',
      'list-state-machines',
    );
    expect(stateMachines).toEqual([
      expect.objectContaining({ stateMachineArn: STATE_MACHINE, name: 'sluice-pipeline' }),
    ]);

    // Wait for the upload's run, then start the scheduled one with the schedule's input.
    for (let i = 0; i < 240; i++) {
      const { executions } = await aws<{ executions: { status: string }[] }>(
        'stepfunctions',
        'list-executions',
        '--state-machine-arn',
        STATE_MACHINE,
      );
      if (executions.length > 0 && executions.every((e) => e.status !== 'RUNNING')) break;
      await sleep(250);
    }
    const { executionArn } = await aws<{ executionArn: string }>(
      'stepfunctions',
      'start-execution',
      '--state-machine-arn',
      STATE_MACHINE,
      '--name',
      'scheduled-by-aws-cli',
      '--input',
      JSON.stringify({ pipeline: 'access-logs', trigger: 'schedule' }),
    );
    expect(executionArn).toBe('arn:aws:states:us-east-1:000000000000:execution:sluice-pipeline:scheduled-by-aws-cli');
    let described: { status: string; output?: string } = { status: 'RUNNING' };
    for (let i = 0; i < 480 && described.status === 'RUNNING'; i++) {
      described = await aws('stepfunctions', 'describe-execution', '--execution-arn', executionArn);
      if (described.status === 'RUNNING') await sleep(250);
    }
    expect(described.status).toBe('SUCCEEDED');
    expect(JSON.parse(described.output ?? '{}')).toMatchObject({ trigger: 'schedule', rowsLoaded: 0 });

    const { events } = await aws<{ events: { type: string; stateEnteredEventDetails?: { name: string } }[] }>(
      'stepfunctions',
      'get-execution-history',
      '--execution-arn',
      executionArn,
    );
    expect(events[0]?.type).toBe('ExecutionStarted');
    expect(events.at(-1)?.type).toBe('ExecutionSucceeded');
    expect(events.filter((e) => e.type === 'TaskStateEntered').map((e) => e.stateEnteredEventDetails?.name)).toContain(
      'Plan',
    );

    const { QueryExecutionId } = await aws<{ QueryExecutionId: string }>(
      'athena',
      'start-query-execution',
      '--query-string',
      'SELECT count(*) FROM access_logs',
      '--work-group',
      'sluice',
      '--query-execution-context',
      'Database=sluice',
    );
    let state = 'QUEUED';
    for (let i = 0; i < 200 && (state === 'QUEUED' || state === 'RUNNING'); i++) {
      const got = await aws<{ QueryExecution: { Status: { State: string } } }>(
        'athena',
        'get-query-execution',
        '--query-execution-id',
        QueryExecutionId,
      );
      state = got.QueryExecution.Status.State;
      if (state === 'QUEUED' || state === 'RUNNING') await sleep(100);
    }
    expect(state).toBe('SUCCEEDED');
    const results = await aws<{ ResultSet: { Rows: { Data: { VarCharValue?: string }[] }[] } }>(
      'athena',
      'get-query-results',
      '--query-execution-id',
      QueryExecutionId,
    );
    // Athena's first row of a SELECT holds the column labels.
    const count = Number(results.ResultSet.Rows[1]?.Data[0]?.VarCharValue);
    expect(count).toBe(500);

    const { stdout } = await run(
      process.execPath,
      [cli, 'query', 'SELECT count(*) AS n FROM access_logs', '--json', '--dir', dir],
      {
        cwd: root,
      },
    );
    expect(JSON.parse(stdout)).toEqual([{ n: count }]);
  });
});
