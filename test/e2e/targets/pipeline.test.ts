/**
 * The end-to-end suite of issue 10, one for every target: `npm run test:e2e -- --target
 * local|localstack|aws` (SLUICE_E2E_TARGET; `local` when unset, so it runs in `npm test`).
 * It uses only `@aws-sdk/client-s3`, `client-sfn` and `client-athena`, through `openTarget`
 * (cli/target.ts), and never reads the runtime's files: it drops files into the input bucket,
 * finds the execution each upload started (ListExecutions, DescribeExecution's input), waits for
 * it, and checks the tables through Athena (StartQueryExecution, GetQueryExecution,
 * GetQueryResults): the rows loaded, the rejected lines with their line numbers and reasons, and
 * that the same bytes uploaded again and a scheduled run add nothing.
 *
 * For localstack and aws, without an endpoint, credentials or the deployed stack every test ends
 * skipped with a note saying what is missing, never passed. On a LocalStack without Athena
 * (the community plan), the checks through Athena are skipped saying so; the runs are still checked.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  GetQueryExecutionCommand,
  GetQueryResultsCommand,
  ListQueryExecutionsCommand,
  StartQueryExecutionCommand,
} from '@aws-sdk/client-athena';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  GetExecutionHistoryCommand,
  ListExecutionsCommand,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { isTarget, LOCALSTACK_ENDPOINT, messageOf, RemoteRunError, type Target } from '../../../cli/remote.ts';
import { openTarget, type TargetSession } from '../../../cli/target.ts';
import { HEADER, logRow } from '../../support/fixtures.ts';
import { tempDir } from '../../support/temp.ts';

const REPO_ROOT = join(import.meta.dirname, '../../..');
const PIPELINE = 'access-logs';
const requested = process.env.SLUICE_E2E_TARGET || 'local';
if (!isTarget(requested)) throw new Error(`SLUICE_E2E_TARGET="${requested}" is not local, localstack or aws`);
const target: Target = requested;
const remote = target !== 'local';
/** How long a wait may last before the test fails saying what it waited for (not an assertion on time). */
const WAIT_MS = remote ? 15 * 60_000 : 100_000;
const POLL_MS = remote ? 2_000 : 100;
const TEST_TIMEOUT = WAIT_MS + 60_000;

const SUITE_START = Date.now();
/** This run's keys: unique, so that a deployed stack's earlier data never counts. */
const tag = `e2e-${new Date().toISOString().slice(0, 19).replace(/\D/g, '')}-${randomBytes(3).toString('hex')}`;
const keyOf = (name: string) => `${PIPELINE}/${tag}/${name}`;

let session: TargetSession | undefined;
/** What is missing for this target (no endpoint, no stack...): every test is skipped with it. */
let missing: string | undefined;
/** What is missing for the checks through Athena (a LocalStack plan without Athena). */
let noAthena: string | undefined;
let localDir: string | undefined;

beforeAll(async () => {
  if (target === 'local') localDir = tempDir('e2e-target-');
  try {
    session = await openTarget({
      target,
      repoRoot: REPO_ROOT,
      ...(localDir ? { dir: localDir } : {}),
      // The embedded runtime's own log stays out of the test output: the suite reads only the APIs.
      log: () => {},
      ...(process.env.SLUICE_E2E_STACK ? { stack: process.env.SLUICE_E2E_STACK } : {}),
    });
  } catch (error) {
    if (!remote) throw error;
    missing = whyUnavailable(error);
    console.warn(`e2e on ${target}: every test is skipped: ${missing}`);
    return;
  }
  noAthena = await athenaMissing(session);
  if (noAthena) console.warn(`e2e on ${target}: the checks through Athena are skipped: ${noAthena}`);
  console.log(`e2e on ${target}: ${session.where}; keys under s3://${session.names.inputBucket}/${keyOf('')}`);
}, 120_000);

afterAll(async () => {
  await session?.close();
  if (localDir) rmSync(localDir, { recursive: true, force: true });
});

/** What to do to reach a remote target, from the error of opening it. */
function whyUnavailable(error: unknown): string {
  const message = error instanceof RemoteRunError ? error.message : messageOf(error);
  if (
    target === 'localstack' &&
    /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|fetch failed|socket hang up|connect/i.test(message)
  ) {
    const endpoint = process.env.AWS_ENDPOINT_URL || LOCALSTACK_ENDPOINT;
    return `no LocalStack is reachable at ${endpoint} (${message}); start it (docs/localstack.md), or set AWS_ENDPOINT_URL to where it runs`;
  }
  if (/credential/i.test(message)) {
    return `no AWS credentials (${message}); set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY`;
  }
  if (/Region is missing/i.test(message))
    return `no AWS region (${message}); set AWS_REGION or a region in your profile`;
  return message;
}

/** Undefined when the target answers Athena; else why not (LocalStack's community plan has no Athena). */
async function athenaMissing(open: TargetSession): Promise<string | undefined> {
  try {
    await open.athena.send(new ListQueryExecutionsCommand({ WorkGroup: open.names.workGroup, MaxResults: 1 }));
    return undefined;
  } catch (error) {
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    const message = messageOf(error);
    if (
      target === 'localstack' &&
      (status === 501 || /not (yet )?implemented|not yet been emulated|pro feature|license/i.test(message))
    ) {
      return `${open.where} does not serve Athena on this plan (${message}). Without Athena and Glue the Load state cannot run, so runs end FAILED after Verify: the suite checks that each upload starts a run that gets through Plan, Process and Verify, and cannot check that runs SUCCEED, the rows in the tables, the rejected lines, or that the same bytes or a scheduled run add nothing. Athena needs a LocalStack plan that includes it (LOCALSTACK_AUTH_TOKEN, docs/localstack.md)`;
    }
    throw error;
  }
}

/** The open target, or the test ends skipped naming what is missing. */
function need(ctx: TestContext, athena = false): TargetSession {
  if (missing || !session) ctx.skip(`target ${target}: ${missing ?? 'not opened'}`);
  if (athena && noAthena) ctx.skip(`target ${target}: ${noAthena}`);
  return session as TargetSession;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `probe` returns a value; fails saying what it waited for. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${WAIT_MS / 1000} s`);
    await sleep(POLL_MS);
  }
}

const csv = (lines: readonly string[]) => `${[HEADER, ...lines].join('\n')}\n`;

async function upload(open: TargetSession, key: string, body: string): Promise<void> {
  await open.s3.send(new PutObjectCommand({ Bucket: open.names.inputBucket, Key: key, Body: body }));
}

/** Executions already matched to an upload, so an upload of the same key again finds its own. */
const claimed = new Set<string>();
/** Executions seen whose input is not one of this suite's keys. */
const others = new Set<string>();

/** The execution the upload of `key` started (its input carries the bucket and key), once there is one. */
async function executionOf(open: TargetSession, key: string): Promise<string> {
  const arn = await waitFor(`the execution started by s3://${open.names.inputBucket}/${key}`, async () => {
    let nextToken: string | undefined;
    do {
      const page = await open.sfn.send(
        new ListExecutionsCommand({ stateMachineArn: open.names.stateMachineArn, maxResults: 100, nextToken }),
      );
      for (const execution of page.executions ?? []) {
        // Newest first: the rest started before this suite (a few minutes allowed for clocks apart).
        if (execution.startDate && execution.startDate.getTime() < SUITE_START - 5 * 60_000) return undefined;
        const arn = execution.executionArn;
        if (!arn || claimed.has(arn) || others.has(arn)) continue;
        const described = await open.sfn.send(new DescribeExecutionCommand({ executionArn: arn }));
        const input = JSON.parse(described.input ?? '{}') as { bucket?: string; key?: string };
        if (input.bucket === open.names.inputBucket && input.key === key) {
          claimed.add(arn);
          return arn;
        }
        if (!input.key?.startsWith(keyOf(''))) others.add(arn);
      }
      nextToken = page.nextToken;
    } while (nextToken);
    return undefined;
  });
  return arn;
}

/** DescribeExecution once the execution is no longer RUNNING. */
async function finished(open: TargetSession, executionArn: string): Promise<DescribeExecutionCommandOutput> {
  return waitFor(`execution ${executionArn} to end`, async () => {
    const described = await open.sfn.send(new DescribeExecutionCommand({ executionArn }));
    return described.status === 'RUNNING' || described.status === 'PENDING_REDRIVE' ? undefined : described;
  });
}

/** The names of the states the execution exited (GetExecutionHistory). */
async function statesExited(open: TargetSession, executionArn: string): Promise<string[]> {
  const names: string[] = [];
  let nextToken: string | undefined;
  do {
    const page = await open.sfn.send(new GetExecutionHistoryCommand({ executionArn, maxResults: 1000, nextToken }));
    for (const event of page.events ?? []) {
      if (event.stateExitedEventDetails?.name) names.push(event.stateExitedEventDetails.name);
    }
    nextToken = page.nextToken;
  } while (nextToken);
  return names;
}

interface RunOutput {
  readonly rowsRead: number;
  readonly rowsLoaded: number;
  readonly rowsRejected: number;
}

/**
 * Uploads the body under the key, and returns the execution it started, ended and SUCCEEDED.
 * Without Athena (noAthena), a run that did not succeed must have got through Verify (its
 * history says so), and the test ends skipped saying why the rest cannot be checked.
 */
async function uploadAndRun(ctx: TestContext, open: TargetSession, key: string, body: string) {
  await upload(open, key, body);
  const execution = await finished(open, await executionOf(open, key));
  const why = `${execution.error ?? ''} ${execution.cause ?? ''}`.trim();
  if (noAthena && execution.status !== 'SUCCEEDED') {
    expect(await statesExited(open, execution.executionArn as string), `${execution.name}: ${why}`).toEqual(
      expect.arrayContaining(['Plan', 'Process', 'Verify']),
    );
    ctx.skip(`target ${target}: the run of ${key} got through Verify and ended ${execution.status}; ${noAthena}`);
  }
  expect(execution.status, `execution ${execution.name} of ${key}: ${why}`).toBe('SUCCEEDED');
  return { execution, output: JSON.parse(execution.output ?? 'null') as RunOutput };
}

/** A query's rows through Athena, keyed by column name (the header row of the first page dropped, as Athena sends it). */
async function query(open: TargetSession, sql: string): Promise<Record<string, string | undefined>[]> {
  const started = await open.athena.send(
    new StartQueryExecutionCommand({
      QueryString: sql,
      WorkGroup: open.names.workGroup,
      QueryExecutionContext: { Database: open.names.database },
    }),
  );
  const id = started.QueryExecutionId as string;
  const status = await waitFor(`query ${id} (${sql})`, async () => {
    const got = await open.athena.send(new GetQueryExecutionCommand({ QueryExecutionId: id }));
    const state = got.QueryExecution?.Status?.State;
    return state === 'QUEUED' || state === 'RUNNING' ? undefined : got.QueryExecution?.Status;
  });
  if (status.State !== 'SUCCEEDED') throw new Error(`query ${status.State}: ${status.StateChangeReason} (${sql})`);
  const rows: Record<string, string | undefined>[] = [];
  let nextToken: string | undefined;
  let first = true;
  do {
    const page = await open.athena.send(new GetQueryResultsCommand({ QueryExecutionId: id, NextToken: nextToken }));
    const columns = (page.ResultSet?.ResultSetMetadata?.ColumnInfo ?? []).map((c) => c.Name ?? '');
    const data = (page.ResultSet?.Rows ?? []).slice(first ? 1 : 0);
    for (const row of data) rows.push(Object.fromEntries(columns.map((c, i) => [c, row.Data?.[i]?.VarCharValue])));
    first = false;
    nextToken = page.NextToken;
  } while (nextToken);
  return rows;
}

const count = async (open: TargetSession, table: string, key: string) =>
  Number((await query(open, `SELECT count(*) AS n FROM ${table} WHERE source_key = '${key}'`))[0]?.n);

// Files: 40 good rows; 30 rows of which two are bad (line 4: status "OK", not an integer; line 9: an extra field).
const VALID = keyOf('valid.csv');
const validBody = csv(Array.from({ length: 40 }, (_, i) => logRow(i)));
const BAD = keyOf('bad-lines.csv');
const badBody = csv(
  Array.from({ length: 30 }, (_, i) => {
    const line = i + 2;
    if (line === 4) return logRow(1000 + i, { status: 'OK' });
    if (line === 9) return logRow(1000 + i, { user_agent: 'a,b' });
    return logRow(1000 + i);
  }),
);

describe(`pipeline end to end on ${target}, through S3, Step Functions and Athena`, () => {
  let validLoaded = false;
  let badLoaded = false;

  it(
    'a valid file: the upload starts an execution that SUCCEEDS, loading every row',
    async (ctx) => {
      const open = need(ctx);
      const { output } = await uploadAndRun(ctx, open, VALID, validBody);
      expect(output).toMatchObject({ rowsRead: 40, rowsLoaded: 40, rowsRejected: 0 });
      validLoaded = true;
    },
    TEST_TIMEOUT,
  );

  it(
    'a valid file: Athena counts its rows in the main table',
    async (ctx) => {
      const open = need(ctx, true);
      expect(validLoaded, 'the valid file was not loaded (see the test above)').toBe(true);
      expect(await count(open, 'access_logs', VALID)).toBe(40);
      expect(await count(open, 'access_logs_rejects', VALID)).toBe(0);
    },
    TEST_TIMEOUT,
  );

  it(
    'a file with bad lines: the execution SUCCEEDS, loading the good rows and rejecting the bad',
    async (ctx) => {
      const open = need(ctx);
      const { output } = await uploadAndRun(ctx, open, BAD, badBody);
      expect(output).toMatchObject({ rowsRead: 30, rowsLoaded: 28, rowsRejected: 2 });
      badLoaded = true;
    },
    TEST_TIMEOUT,
  );

  it(
    'a file with bad lines: the rejects table has each bad line with its number and reason',
    async (ctx) => {
      const open = need(ctx, true);
      expect(badLoaded, 'the file with bad lines was not loaded (see the test above)').toBe(true);
      expect(await count(open, 'access_logs', BAD)).toBe(28);
      const rejects = await query(
        open,
        `SELECT line_number, column_name, reason FROM access_logs_rejects WHERE source_key = '${BAD}' ORDER BY line_number`,
      );
      expect(rejects.map((r) => Number(r.line_number))).toEqual([4, 9]);
      expect(rejects[0]?.column_name).toBe('status');
      expect(rejects[0]?.reason).toMatch(/integer|digits/i);
      expect(rejects[1]?.reason).toMatch(/too many|expected 10|11 (columns|fields)/i);
    },
    TEST_TIMEOUT,
  );

  it(
    'the same bytes uploaded again: the execution SUCCEEDS and loads nothing',
    async (ctx) => {
      const open = need(ctx, true);
      expect(validLoaded, 'the valid file was not loaded (see the first test)').toBe(true);
      const { output } = await uploadAndRun(ctx, open, VALID, validBody);
      expect(output).toMatchObject({ rowsLoaded: 0 });
      expect(await count(open, 'access_logs', VALID)).toBe(40);
      expect(await count(open, 'access_logs_rejects', VALID)).toBe(0);
    },
    TEST_TIMEOUT,
  );

  it(
    "a scheduled run (the schedule's input, through StartExecution) SUCCEEDS and adds nothing",
    async (ctx) => {
      const open = need(ctx, true);
      expect(validLoaded && badLoaded, 'the files were not loaded (see the tests above)').toBe(true);
      // What the pipeline's EventBridge Scheduler schedule sends (infra/triggers.ts).
      const started = await open.sfn.send(
        new StartExecutionCommand({
          stateMachineArn: open.names.stateMachineArn,
          name: `${tag}-schedule`,
          input: JSON.stringify({ pipeline: PIPELINE, trigger: 'schedule' }),
        }),
      );
      const execution = await finished(open, started.executionArn as string);
      expect(execution.status, `${execution.error ?? ''} ${execution.cause ?? ''}`).toBe('SUCCEEDED');
      expect(await count(open, 'access_logs', VALID)).toBe(40);
      expect(await count(open, 'access_logs', BAD)).toBe(28);
      expect(await count(open, 'access_logs_rejects', BAD)).toBe(2);
    },
    TEST_TIMEOUT,
  );
});
