/**
 * What the CLI does on a target, through the Step Functions, S3 and Athena APIs only (the same
 * calls on the embedded runtime, LocalStack and AWS):
 * - runs: StartExecution, DescribeExecution until the execution is no longer RUNNING;
 * - run history: ListExecutions and DescribeExecution, with the run record Finish or RecordFailure
 *   left in the working bucket (`runs/<pipeline>/<run>/run.json`: the plain failure message and its
 *   details) and the steps from GetExecutionHistory: one record shape ({@link ExecutionRecord}) on
 *   every target;
 * - queries: StartQueryExecution, GetQueryExecution until it ends, GetQueryResults page by page.
 */
import {
  GetQueryExecutionCommand,
  GetQueryResultsCommand,
  type GetQueryResultsCommandOutput,
  StartQueryExecutionCommand,
} from '@aws-sdk/client-athena';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  ListExecutionsCommand,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import type { RunRecord } from '../functions/contracts.ts';
import { redriveExecutionName, redriveInput } from '../functions/run/redrive.ts';
import { layout } from '../functions/storage/layout.ts';
import { type ExecutionRecord, REDRIVABLE_STATUSES } from '../runtime/executions.ts';
import type { StepRecord } from '../runtime/state-machine.ts';
import { hint, messageOf, RemoteRunError } from './remote.ts';
import type { TargetSession } from './target.ts';

/** Runs one SDK call; any failure (service error, refused connection, missing credentials) becomes one plain line. */
export async function call<T>(session: TargetSession, what: string, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (error) {
    throw new RemoteRunError(`could not ${what} on ${session.where}: ${messageOf(error)}${hint(error)}`);
  }
}

const pollMsOf = (session: TargetSession) => (session.target === 'local' ? 100 : 2_000);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `arn:...:stateMachine:<machine>` → `arn:...:execution:<machine>:<name>` (Step Functions' ARN format). */
export function executionArnOf(stateMachineArn: string, name: string): string {
  return `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
}

/** The execution name at the end of an execution ARN. */
export const executionNameOf = (arn: string) => arn.slice(arn.lastIndexOf(':') + 1);

/** StartExecution on the target's state machine; resolves with the execution's ARN. */
export async function startExecution(session: TargetSession, input: unknown, name: string): Promise<string> {
  const out = await call(session, `start an execution of ${session.names.stateMachineArn}`, () =>
    session.sfn.send(
      new StartExecutionCommand({ stateMachineArn: session.names.stateMachineArn, name, input: JSON.stringify(input) }),
    ),
  );
  if (!out.executionArn) throw new RemoteRunError(`StartExecution on ${session.where} returned no execution ARN`);
  return out.executionArn;
}

export interface WaitOptions {
  readonly pollMs?: number;
  /** Called every minute while the execution is RUNNING. */
  readonly log?: (line: string) => void;
  /** Called after every DescribeExecution (progress bars). */
  readonly onPoll?: (execution: DescribeExecutionCommandOutput) => void;
}

/** DescribeExecution until the execution is no longer RUNNING. */
export async function waitForExecution(
  session: TargetSession,
  executionArn: string,
  options: WaitOptions = {},
): Promise<DescribeExecutionCommandOutput> {
  const since = Date.now();
  let lastNote = since;
  for (;;) {
    const execution = await call(session, `describe execution ${executionArn}`, () =>
      session.sfn.send(new DescribeExecutionCommand({ executionArn })),
    );
    options.onPoll?.(execution);
    if (execution.status && execution.status !== 'RUNNING') return execution;
    if (Date.now() - lastNote >= 60_000) {
      lastNote = Date.now();
      options.log?.(`still RUNNING after ${Math.round((lastNote - since) / 60_000)} min`);
    }
    await sleep(options.pollMs ?? pollMsOf(session));
  }
}

/**
 * The execution an upload of `key` started: the newest one, started at `since` or later, whose input
 * names the key (the EventBridge rule's input, infra/triggers.ts). Waits up to `timeoutMs`.
 */
export async function findExecutionForKey(
  session: TargetSession,
  key: string,
  since: Date,
  timeoutMs = 60_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  const seen = new Set<string>();
  for (;;) {
    const page = await call(session, 'list executions', () =>
      session.sfn.send(new ListExecutionsCommand({ stateMachineArn: session.names.stateMachineArn, maxResults: 50 })),
    );
    for (const item of page.executions ?? []) {
      if (!item.executionArn || seen.has(item.executionArn)) continue;
      // Clocks of a remote service and this machine differ by a little: a second of slack.
      if (item.startDate && item.startDate.getTime() < since.getTime() - 1_000) continue;
      seen.add(item.executionArn);
      const described = await call(session, `describe execution ${item.executionArn}`, () =>
        session.sfn.send(new DescribeExecutionCommand({ executionArn: item.executionArn })),
      );
      const input = parseJson(described.input) as { key?: unknown } | null;
      if (input?.key === key) return item.executionArn;
    }
    if (Date.now() > deadline) {
      throw new RemoteRunError(
        `no run started for s3://${session.names.inputBucket}/${key} within ${Math.round(timeoutMs / 1000)} s on ${session.where}`,
      );
    }
    await sleep(session.target === 'local' ? 100 : 2_000);
  }
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The run record in the working bucket, when the run got as far as writing one. */
async function runRecord(session: TargetSession, pipeline: string, run: string): Promise<RunRecord | undefined> {
  if (!/^[A-Za-z0-9_-]{1,80}$/.test(pipeline) || !/^[A-Za-z0-9_-]{1,80}$/.test(run)) return undefined;
  try {
    const out = await session.s3.send(
      new GetObjectCommand({ Bucket: session.names.workingBucket, Key: layout.runRecord(pipeline, run) }),
    );
    return JSON.parse((await out.Body?.transformToString()) ?? 'null') as RunRecord;
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name === 'NoSuchKey' || name === 'NoSuchBucket' || name === 'NotFound') return undefined;
    throw new RemoteRunError(`could not read the record of run ${run} on ${session.where}: ${messageOf(error)}`);
  }
}

/** One execution as the CLI shows it: DescribeExecution, the run record, and (with `steps`) its history's steps. */
export async function readExecution(
  session: TargetSession,
  executionArn: string,
  options: { readonly steps?: boolean; readonly described?: DescribeExecutionCommandOutput } = {},
): Promise<ExecutionRecord> {
  const described =
    options.described ??
    (await call(session, `describe execution ${executionArn}`, () =>
      session.sfn.send(new DescribeExecutionCommand({ executionArn })),
    ));
  const input = parseJson(described.input);
  const fields = (typeof input === 'object' && input !== null ? input : {}) as {
    pipeline?: unknown;
    trigger?: unknown;
  };
  const pipeline = typeof fields.pipeline === 'string' ? fields.pipeline : '';
  const name = described.name ?? executionNameOf(executionArn);
  const failed = described.status !== 'SUCCEEDED' && described.status !== 'RUNNING';
  const record = failed && pipeline ? await runRecord(session, pipeline, name) : undefined;
  const steps = options.steps ? await executionSteps(session, executionArn, described.status) : undefined;
  return {
    id: name,
    pipeline,
    trigger: typeof fields.trigger === 'string' ? fields.trigger : '',
    status: (described.status ?? 'RUNNING') as ExecutionRecord['status'],
    startedAt: (described.startDate ?? new Date(0)).toISOString(),
    stoppedAt: described.stopDate ? described.stopDate.toISOString() : null,
    input,
    output: parseJson(described.output),
    error: described.error ?? null,
    cause: described.cause ?? null,
    ...(record?.error?.message ? { message: record.error.message } : {}),
    ...(record?.error?.details ? { details: record.error.details } : {}),
    ...(steps ? { steps } : {}),
    pid: 0,
  };
}

/** The state machine's executions, newest first (ListExecutions, paged), at most `limit`: ARN and status. */
export async function listExecutionItems(
  session: TargetSession,
  limit: number,
): Promise<{ readonly arn: string; readonly status: string }[]> {
  const items: { arn: string; status: string }[] = [];
  let nextToken: string | undefined;
  do {
    const page = await call(session, 'list executions', () =>
      session.sfn.send(
        new ListExecutionsCommand({
          stateMachineArn: session.names.stateMachineArn,
          maxResults: Math.min(1000, limit - items.length),
          ...(nextToken ? { nextToken } : {}),
        }),
      ),
    );
    for (const item of page.executions ?? []) {
      if (item.executionArn) items.push({ arn: item.executionArn, status: item.status ?? 'RUNNING' });
    }
    nextToken = page.nextToken;
  } while (nextToken && items.length < limit);
  return items;
}

/**
 * Reads `items` with `read`, eight at a time: DescribeExecution is throttled on AWS (a bucket of
 * 200, refilled 60 a second per account).
 */
export async function readEach<T, R>(items: readonly T[], read: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += 8) out.push(...(await Promise.all(items.slice(i, i + 8).map(read))));
  return out;
}

/** The target's executions, newest first, at most `limit`, each read by {@link readExecution}. */
export async function listExecutions(session: TargetSession, limit: number): Promise<ExecutionRecord[]> {
  return readEach(await listExecutionItems(session, limit), ({ arn }) => readExecution(session, arn));
}

/** The history's events, oldest first, all pages (GetExecutionHistory); with `data`, their inputs and outputs. */
export async function historyEvents(
  session: TargetSession,
  executionArn: string,
  options: { readonly data?: boolean } = {},
): Promise<HistoryEvent[]> {
  const events: HistoryEvent[] = [];
  let nextToken: string | undefined;
  do {
    const page = await call(session, `read the history of ${executionArn}`, () =>
      session.sfn.send(
        new GetExecutionHistoryCommand({
          executionArn,
          maxResults: 1000,
          includeExecutionData: options.data === true,
          ...(nextToken ? { nextToken } : {}),
        }),
      ),
    );
    events.push(...(page.events ?? []));
    nextToken = page.nextToken;
  } while (nextToken);
  return events;
}

/**
 * The top-level states of an execution from its history: when each was entered and exited, how
 * often, and how it ended. A state entered and not exited is FAILED when the execution ended
 * there, CAUGHT when a later state was entered (its Catch went on), RUNNING otherwise.
 * Only states at the top of the definition count (the Map's and Parallel's inner states are in
 * the history too, between MapIterationStarted/ParallelStateStarted and their end).
 */
export async function executionSteps(
  session: TargetSession,
  executionArn: string,
  status: string | undefined,
): Promise<StepRecord[]> {
  let events: HistoryEvent[];
  try {
    events = await historyEvents(session, executionArn);
  } catch (error) {
    // Steps are a detail: without a history (a target that does not serve it) the run is still shown.
    if (process.env.SLUICE_DEBUG) console.error(`no history for ${executionArn}: ${messageOf(error)}`);
    return [];
  }
  return stepsFromHistory(events, status);
}

type Step = { status: StepRecord['status']; ms: number; times: number; entered?: number };

/** History events that open and close a Map iteration or a Parallel branch (nested states between them). */
export const NESTING_STARTS = new Set(['MapIterationStarted', 'ParallelStateStarted']);
export const NESTING_ENDS = new Set([
  'MapIterationSucceeded',
  'MapIterationFailed',
  'MapIterationAborted',
  'ParallelStateSucceeded',
  'ParallelStateFailed',
  'ParallelStateAborted',
]);
const EXECUTION_ENDS = new Set(['ExecutionFailed', 'ExecutionAborted', 'ExecutionTimedOut']);

/**
 * See {@link executionSteps}. Nested states are skipped by depth (Map iterations, Parallel
 * branches). A state with a failure event (TaskFailed, MapRunFailed, MapStateFailed...) that is
 * then left, or followed by another state, was CAUGHT; a success event after a failure (a retry
 * that worked) clears it.
 */
export function stepsFromHistory(events: readonly HistoryEvent[], status: string | undefined): StepRecord[] {
  const steps = new Map<string, Step>();
  let depth = 0;
  let open: string | undefined;
  let failed = false;
  const close = (at: number, outcome: StepRecord['status']) => {
    const step = open ? steps.get(open) : undefined;
    if (step && step.entered !== undefined) {
      step.ms += at - step.entered;
      step.entered = undefined;
      step.status = outcome;
    }
    open = undefined;
    failed = false;
  };
  for (const event of events) {
    const at = event.timestamp ? new Date(event.timestamp).getTime() : 0;
    const type = event.type ?? '';
    if (NESTING_STARTS.has(type)) depth++;
    if (NESTING_ENDS.has(type)) depth = Math.max(0, depth - 1);
    if (depth > 0) continue;
    if (type.endsWith('StateEntered') && event.stateEnteredEventDetails?.name) {
      // The state before was left without an exit: its error was caught.
      if (open) close(at, 'CAUGHT');
      const name = event.stateEnteredEventDetails.name;
      const step = steps.get(name) ?? { status: 'RUNNING', ms: 0, times: 0 };
      step.times++;
      step.status = 'RUNNING';
      step.entered = at;
      steps.set(name, step);
      open = name;
    } else if (type.endsWith('StateExited') && event.stateExitedEventDetails?.name === open) {
      close(at, failed ? 'CAUGHT' : 'SUCCEEDED');
    } else if (EXECUTION_ENDS.has(type)) {
      if (open) close(at, 'FAILED');
    } else if (open && (type.endsWith('Failed') || type.endsWith('TimedOut'))) {
      failed = true;
    } else if (open && type.endsWith('Succeeded')) {
      failed = false;
    }
  }
  if (open && status && status !== 'RUNNING') close(Date.now(), 'FAILED');
  return [...steps].map(([name, s]) => ({ name, status: s.status, ms: s.ms, times: s.times }));
}

export type QueryRow = Record<string, string | number | boolean | null>;

const NUMBER_TYPES = new Set(['tinyint', 'smallint', 'integer', 'int', 'bigint', 'double', 'float', 'real']);

/** A GetQueryResults cell as a JSON value, by its column's Athena type: numbers and booleans as such, the rest as text. */
function cell(value: string | undefined, type: string | undefined): string | number | boolean | null {
  if (value === undefined) return null;
  const base = (type ?? '').toLowerCase();
  if (base === 'boolean') return value === 'true';
  if (NUMBER_TYPES.has(base) || base === 'decimal') {
    const number = Number(value);
    // Beyond 2^53 a number loses digits: keep its text.
    return Number.isSafeInteger(number) || (!Number.isInteger(number) && Number.isFinite(number)) ? number : value;
  }
  return value;
}

/**
 * Runs one statement through Athena and returns its rows. A failed or cancelled query throws its
 * reason. Athena puts the column labels in the first row of a SELECT's first page; they are skipped
 * there (a statement without a result set has no such row).
 */
export async function runQuery(session: TargetSession, sql: string): Promise<{ rows: QueryRow[]; columns: string[] }> {
  const started = await call(session, 'start the query', () =>
    session.athena.send(
      new StartQueryExecutionCommand({
        QueryString: sql,
        WorkGroup: session.names.workGroup,
        QueryExecutionContext: { Database: session.names.database },
      }),
    ),
  );
  const id = started.QueryExecutionId;
  if (!id) throw new RemoteRunError(`StartQueryExecution on ${session.where} returned no query id`);
  for (;;) {
    const { QueryExecution: execution } = await call(session, `get query ${id}`, () =>
      session.athena.send(new GetQueryExecutionCommand({ QueryExecutionId: id })),
    );
    const state = execution?.Status?.State;
    if (state === 'SUCCEEDED') break;
    if (state === 'FAILED' || state === 'CANCELLED') {
      throw new QueryFailedError(execution?.Status?.StateChangeReason ?? `the query ended ${state}`);
    }
    await sleep(session.target === 'local' ? 20 : 500);
  }
  const rows: QueryRow[] = [];
  let columns: string[] = [];
  let types: (string | undefined)[] = [];
  let nextToken: string | undefined;
  let first = true;
  do {
    const page: GetQueryResultsCommandOutput = await call(session, `get the results of query ${id}`, () =>
      session.athena.send(
        new GetQueryResultsCommand({
          QueryExecutionId: id,
          MaxResults: 1000,
          ...(nextToken ? { NextToken: nextToken } : {}),
        }),
      ),
    );
    const info = page.ResultSet?.ResultSetMetadata?.ColumnInfo ?? [];
    if (first) {
      columns = info.map((c) => c.Label ?? c.Name ?? '');
      types = info.map((c) => c.Type);
    }
    let data = page.ResultSet?.Rows ?? [];
    if (first && columns.length > 0 && data[0]?.Data?.every((d, i) => d.VarCharValue === columns[i])) {
      data = data.slice(1);
    }
    first = false;
    for (const row of data) {
      rows.push(Object.fromEntries(columns.map((name, i) => [name, cell(row.Data?.[i]?.VarCharValue, types[i])])));
    }
    nextToken = page.NextToken;
  } while (nextToken);
  return { rows, columns };
}

/** A query Athena ran and failed: its reason, as Athena gives it. */
export class QueryFailedError extends Error {
  override name = 'QueryFailedError';
}

/**
 * Whether a statement only reads: SELECT, WITH ... SELECT, SHOW, DESCRIBE, EXPLAIN, VALUES, TABLE.
 * `sluice query` refuses anything else unless `--write` is given, on every target. Conservative:
 * a WITH that names a writing statement's keyword anywhere counts as writing.
 */
export function isReadOnlyStatement(sql: string): boolean {
  const text = sql
    .replace(/--[^\n]*/g, ' ')
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .trim()
    .replace(/^\(+\s*/, '');
  const first = /^[A-Za-z]+/.exec(text)?.[0]?.toLowerCase() ?? '';
  if (['select', 'show', 'describe', 'desc', 'explain', 'values', 'table'].includes(first)) return true;
  if (first !== 'with') return false;
  const unquoted = text.replace(/'(?:[^']|'')*'/g, "''").replace(/"(?:[^"]|"")*"/g, '""');
  return !/\b(insert|update|delete|merge|create|drop|alter|copy|truncate|vacuum|optimize|attach|install|load)\b/i.test(
    unquoted,
  );
}

/** Why a run cannot be redriven: it does not exist, it did not fail, or it was redriven too often. */
export class RedriveRefusedError extends Error {
  override name = 'RedriveRefusedError';
  readonly reason: 'unknown' | 'not-failed' | 'too-many';
  constructor(reason: RedriveRefusedError['reason'], message: string) {
    super(message);
    this.reason = reason;
  }
}

/**
 * Continues a failed run (`sluice redrive`, the UI's Redrive): starts the next free
 * `<run>-redrive-<n>` with the run's input and `redriveOf` (functions/run/redrive.ts says why
 * not RedriveExecution). Resolves with the new execution's name and ARN.
 */
export async function startRedrive(
  session: TargetSession,
  id: string,
): Promise<{ name: string; executionArn: string }> {
  let failed: ExecutionRecord;
  try {
    failed = await readExecution(session, executionArnOf(session.names.stateMachineArn, id));
  } catch (error) {
    if (/ExecutionDoesNotExist/.test((error as Error).message)) {
      throw new RedriveRefusedError(
        'unknown',
        `no run named "${id}" on ${session.where}; "sluice runs" lists the runs`,
      );
    }
    throw error;
  }
  if (!REDRIVABLE_STATUSES.includes(failed.status)) {
    throw new RedriveRefusedError(
      'not-failed',
      `run ${id} is ${failed.status}: only a run that FAILED, was ABORTED or TIMED_OUT can be redriven`,
    );
  }
  const input = redriveInput(failed.input, id);
  for (let attempt = 1; attempt <= 99; attempt++) {
    const name = redriveExecutionName(id, attempt);
    try {
      return { name, executionArn: await startExecution(session, input, name) };
    } catch (error) {
      if (/ExecutionAlreadyExists/.test((error as Error).message)) continue;
      throw error;
    }
  }
  throw new RedriveRefusedError('too-many', `run ${id} has been redriven 99 times already; start a new run instead`);
}
