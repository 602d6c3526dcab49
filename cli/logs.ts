/**
 * `sluice logs <run>`: what each chunk of a run did (its tries, its errors, when it started and
 * ended, its rows) and the run's state events, through the S3 and Step Functions APIs only, so
 * it reads the same on every target:
 * - the Work handler's files in the working bucket (ListObjectsV2, GetObject): each chunk's result
 *   (`chunks/<index>.json`), its last error (`errors/<index>.json`) and its attempts marker
 *   (`attempts/<index>.json`), all with their times and try numbers (functions/handlers/work.ts);
 * - the Distributed Map's run: ListMapRuns, DescribeMapRun and its child executions
 *   (ListExecutions with the mapRunArn; DescribeExecution of the failed ones for their chunk, where
 *   the target answers it: https://docs.aws.amazon.com/step-functions/latest/apireference/API_ListExecutions.html);
 * - the run's state events from GetExecutionHistory (the top level: states entered and exited, task
 *   failures and retries, the Map run, the end).
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  DescribeMapRunCommand,
  type HistoryEvent,
  ListExecutionsCommand,
  type ListExecutionsCommandOutput,
  ListMapRunsCommand,
} from '@aws-sdk/client-sfn';
import type { ChunkAttempt, ChunkFailure, ChunkResult } from '../functions/contracts.ts';
import { cutAtWord, readableCause } from '../functions/run/failure-message.ts';
import { layout } from '../functions/storage/layout.ts';
import { call, executionArnOf, historyEvents, NESTING_ENDS, NESTING_STARTS, readExecution } from './client.ts';
import { printTable, wrap } from './format.ts';
import { listKeys, planOf, roughDuration } from './progress.ts';
import { messageOf } from './remote.ts';
import type { TargetSession } from './target.ts';
import { type CommandTools, parseCommand } from './ui.ts';

/** One chunk of a run, from its files in the working bucket. */
export interface ChunkLog {
  readonly index: number;
  /** SUCCEEDED (a result), FAILED (an error and no result), RUNNING (a try under way), NO RESULT (a try that left nothing). */
  readonly status: 'SUCCEEDED' | 'FAILED' | 'RUNNING' | 'NO RESULT';
  /** The tries of the chunk in this run (the attempts marker, else the result's or the error's try). */
  readonly attempts: number | null;
  /** The last try's start and end (ISO 8601), and its duration. */
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly ms: number | null;
  readonly rowsRead: number | null;
  readonly rowsStaged: number | null;
  readonly rowsRejected: number | null;
  /** The last error the chunk recorded (a chunk that succeeded after a retry keeps the error of the try that failed). */
  readonly error: {
    readonly type: string;
    readonly message: string;
    readonly attempt: number | null;
    readonly at: string;
    readonly requestId?: string;
    readonly parts: ChunkFailure['parts'];
  } | null;
}

/** A child execution of the run's Distributed Map. */
export interface ChildLog {
  readonly name: string;
  readonly status: string;
  readonly startedAt: string | null;
  readonly stoppedAt: string | null;
  /** The chunk it ran, for the failed children the target describes. */
  readonly chunk?: number;
  readonly error?: string;
  readonly cause?: string;
}

export interface EventLog {
  readonly at: string;
  readonly type: string;
  /** The top-level state the event belongs to. */
  readonly state?: string;
  readonly error?: string;
  readonly cause?: string;
}

export interface RunLogs {
  readonly run: string;
  readonly pipeline: string;
  readonly status: string;
  readonly startedAt: string;
  readonly stoppedAt: string | null;
  readonly planned: { readonly chunks: number; readonly bytes: number; readonly inputs: number } | null;
  readonly mapRun: {
    readonly arn: string;
    readonly status: string;
    readonly counts: Record<string, number>;
    /** null when the target does not list a map run's children. */
    readonly children: readonly ChildLog[] | null;
  } | null;
  readonly chunks: readonly ChunkLog[];
  readonly events: readonly EventLog[];
}

/** A cause is cut to this many characters (Lambda's causes are JSON with a stack). */
const MAX_CAUSE = 500;
/** At most this many failed children are described (DescribeExecution is throttled on AWS). */
const MAX_CHILDREN_DESCRIBED = 20;

const iso = (date: Date | undefined) => (date ? date.toISOString() : null);

/** A JSON object of the working bucket; undefined when it is not there. */
async function readJson<T>(session: TargetSession, key: string): Promise<T | undefined> {
  try {
    const out = await session.s3.send(new GetObjectCommand({ Bucket: session.names.workingBucket, Key: key }));
    return JSON.parse((await out.Body?.transformToString()) ?? 'null') as T;
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name === 'NoSuchKey' || name === 'NotFound' || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

/** `runs/p/r/chunks/00012.json` → 12. */
const indexOf = (key: string) => Number(/(\d+)\.json$/.exec(key)?.[1] ?? Number.NaN);

/** The JSON files under a prefix, by chunk index (8 reads at a time). */
async function readAll<T>(session: TargetSession, prefix: string): Promise<Map<number, T>> {
  const keys = await listKeys(session, prefix);
  const read = new Map<number, T>();
  for (let i = 0; i < keys.length; i += 8) {
    await Promise.all(
      keys.slice(i, i + 8).map(async (key) => {
        const value = await readJson<T>(session, key);
        if (value !== undefined && Number.isInteger(indexOf(key))) read.set(indexOf(key), value);
      }),
    );
  }
  return read;
}

/** One chunk's log from its three files. */
export function chunkLog(
  index: number,
  files: { result?: ChunkResult; failure?: ChunkFailure; attempt?: ChunkAttempt },
  runRunning: boolean,
): ChunkLog {
  const { result, failure, attempt } = files;
  const attempts = attempt?.attempt ?? result?.attempt ?? failure?.attempt ?? null;
  // A result is final: the Map does not run a chunk again once it succeeded.
  const underWay = runRunning && attempt !== undefined && attempt.attempt > (failure?.attempt ?? 0);
  const status: ChunkLog['status'] = result
    ? 'SUCCEEDED'
    : underWay
      ? 'RUNNING'
      : failure
        ? 'FAILED'
        : runRunning
          ? 'RUNNING'
          : 'NO RESULT';
  const startedAt =
    (status === 'SUCCEEDED' ? result?.startedAt : status === 'FAILED' ? failure?.startedAt : attempt?.startedAt) ??
    null;
  const finishedAt =
    (status === 'SUCCEEDED'
      ? result?.finishedAt
      : status === 'FAILED'
        ? (failure?.finishedAt ?? failure?.failedAt)
        : undefined) ?? null;
  return {
    index,
    status,
    attempts,
    startedAt,
    finishedAt,
    ms: startedAt && finishedAt ? Date.parse(finishedAt) - Date.parse(startedAt) : null,
    rowsRead: result?.rowsRead ?? null,
    rowsStaged: result?.rowsStaged ?? null,
    rowsRejected: result?.rowsRejected ?? null,
    error: failure
      ? {
          type: failure.errorType,
          message: failure.message,
          attempt: failure.attempt ?? null,
          at: failure.failedAt,
          ...(failure.requestId ? { requestId: failure.requestId } : {}),
          parts: failure.parts,
        }
      : null,
  };
}

/** The chunks of a run (all, or the one asked for), from the working bucket. */
async function readChunks(
  session: TargetSession,
  pipeline: string,
  run: string,
  chunk: number | undefined,
  runRunning: boolean,
): Promise<ChunkLog[]> {
  if (chunk !== undefined) {
    const [result, failure, attempt] = await Promise.all([
      readJson<ChunkResult>(session, layout.chunkResult(pipeline, run, chunk)),
      readJson<ChunkFailure>(session, layout.chunkError(pipeline, run, chunk)),
      readJson<ChunkAttempt>(session, layout.chunkAttempt(pipeline, run, chunk)),
    ]);
    if (!result && !failure && !attempt) return [];
    return [
      chunkLog(
        chunk,
        { ...(result ? { result } : {}), ...(failure ? { failure } : {}), ...(attempt ? { attempt } : {}) },
        runRunning,
      ),
    ];
  }
  const attemptsPrefix = layout.chunkAttemptsPrefix(pipeline, run);
  const [results, failures, attempts] = await Promise.all([
    readAll<ChunkResult>(session, layout.chunkResultsPrefix(pipeline, run)),
    readAll<ChunkFailure>(session, layout.chunkErrorsPrefix(pipeline, run)),
    readAll<ChunkAttempt>(session, attemptsPrefix),
  ]);
  const indexes = [...new Set([...results.keys(), ...failures.keys(), ...attempts.keys()])].sort((a, b) => a - b);
  return indexes.map((index) => {
    const result = results.get(index);
    const failure = failures.get(index);
    const attempt = attempts.get(index);
    return chunkLog(
      index,
      { ...(result ? { result } : {}), ...(failure ? { failure } : {}), ...(attempt ? { attempt } : {}) },
      runRunning,
    );
  });
}

/** The run's Distributed Map run, its counts and children; null when the target has none to show. */
async function readMapRun(session: TargetSession, executionArn: string): Promise<RunLogs['mapRun']> {
  const { sfn } = session;
  let mapRunArn: string | undefined;
  try {
    const { mapRuns = [] } = await sfn.send(new ListMapRunsCommand({ executionArn }));
    mapRunArn = [...mapRuns]
      .sort((a, b) => (a.startDate?.getTime() ?? 0) - (b.startDate?.getTime() ?? 0))
      .at(-1)?.mapRunArn;
  } catch (error) {
    if (process.env.SLUICE_DEBUG) console.error(`no map runs for ${executionArn}: ${messageOf(error)}`);
    return null;
  }
  if (!mapRunArn) return null;
  const described = await call(session, `describe map run ${mapRunArn}`, () =>
    sfn.send(new DescribeMapRunCommand({ mapRunArn })),
  );
  const counts = Object.fromEntries(
    Object.entries(described.itemCounts ?? {}).filter(
      (entry): entry is [string, number] => typeof entry[1] === 'number',
    ),
  );
  let children: ChildLog[] | null = [];
  try {
    let nextToken: string | undefined;
    do {
      const page: ListExecutionsCommandOutput = await sfn.send(
        new ListExecutionsCommand({ mapRunArn, maxResults: 1000, ...(nextToken ? { nextToken } : {}) }),
      );
      for (const child of page.executions ?? []) {
        children.push({
          name: child.name ?? '',
          status: child.status ?? '',
          startedAt: iso(child.startDate),
          stoppedAt: iso(child.stopDate),
        });
      }
      nextToken = page.nextToken;
    } while (nextToken);
  } catch (error) {
    if (process.env.SLUICE_DEBUG) console.error(`no children for ${mapRunArn}: ${messageOf(error)}`);
    children = null;
  }
  if (children) children = await describeFailedChildren(session, mapRunArn, children);
  return { arn: mapRunArn, status: described.status ?? '', counts, children };
}

/** The failed children with their chunk and error, where the target describes a child (AWS does; the embedded runtime does not). */
async function describeFailedChildren(
  session: TargetSession,
  mapRunArn: string,
  children: ChildLog[],
): Promise<ChildLog[]> {
  const childMachine = mapRunArn.replace(':mapRun:', ':execution:').replace(/:[^:]+$/, '');
  const failed = children
    .filter((c) => c.status !== 'SUCCEEDED' && c.status !== 'RUNNING')
    .slice(0, MAX_CHILDREN_DESCRIBED);
  const described = new Map<string, ChildLog>();
  for (const child of failed) {
    try {
      const out = await session.sfn.send(
        new DescribeExecutionCommand({ executionArn: `${childMachine}:${child.name}` }),
      );
      const input = JSON.parse(out.input ?? 'null') as { index?: unknown } | null;
      described.set(child.name, {
        ...child,
        ...(typeof input?.index === 'number' ? { chunk: input.index } : {}),
        ...(out.error ? { error: out.error } : {}),
        ...(out.cause ? { cause: cutAtWord(readableCause(out.cause), MAX_CAUSE) } : {}),
      });
    } catch {
      break; // the target does not describe children: the list stays as listed
    }
  }
  return children.map((child) => described.get(child.name) ?? child);
}

/** The error and cause of a failure event, whichever kind it is. */
function failureOf(event: HistoryEvent): { error?: string; cause?: string } | undefined {
  for (const [name, value] of Object.entries(event)) {
    if (!name.endsWith('EventDetails') || typeof value !== 'object' || value === null) continue;
    const { error, cause } = value as { error?: unknown; cause?: unknown };
    if (typeof error === 'string' || typeof cause === 'string') {
      return {
        ...(typeof error === 'string' ? { error } : {}),
        ...(typeof cause === 'string' ? { cause: cutAtWord(readableCause(cause), MAX_CAUSE) } : {}),
      };
    }
  }
  return undefined;
}

/** The run's top-level events, oldest first (the Map's and Parallel's inner events are left out). */
async function readEvents(session: TargetSession, executionArn: string): Promise<EventLog[]> {
  const events: EventLog[] = [];
  let depth = 0;
  let state: string | undefined;
  for (const event of await historyEvents(session, executionArn, { data: true })) {
    const type = event.type ?? '';
    if (NESTING_STARTS.has(type)) depth++;
    if (NESTING_ENDS.has(type)) depth = Math.max(0, depth - 1);
    if (depth > 0 || NESTING_ENDS.has(type) || type === 'MapIterationStarted') continue;
    if (type.endsWith('StateEntered')) state = event.stateEnteredEventDetails?.name ?? state;
    events.push({
      at: iso(event.timestamp) ?? '',
      type,
      ...(state && !type.startsWith('Execution') ? { state } : {}),
      ...failureOf(event),
    });
  }
  return events;
}

/** Everything `sluice logs` shows of a run (with `chunk`, of that chunk only). */
export async function readRunLogs(
  session: TargetSession,
  executionArn: string,
  options: { readonly chunk?: number } = {},
): Promise<RunLogs> {
  const execution = await readExecution(session, executionArn);
  const running = execution.status === 'RUNNING';
  const plan = await planOf(session, executionArn).catch(() => null);
  const [chunks, mapRun, events] = await Promise.all([
    execution.pipeline
      ? readChunks(session, execution.pipeline, execution.id, options.chunk, running)
      : Promise.resolve([]),
    readMapRun(session, executionArn),
    readEvents(session, executionArn),
  ]);
  return {
    run: execution.id,
    pipeline: execution.pipeline,
    status: execution.status,
    startedAt: execution.startedAt,
    stoppedAt: execution.stoppedAt,
    planned: plan ? { chunks: plan.chunks, bytes: plan.bytes, inputs: plan.inputs } : null,
    mapRun,
    chunks,
    events,
  };
}

const time = (at: string | null) => (at ? at.slice(11, 23) : '');
const seconds = (ms: number | null) => (ms === null ? '' : `${(ms / 1000).toFixed(1)} s`);

/** Prints a run's logs: the run, its chunks, their errors, the map run's children that failed, the events. */
export function printRunLogs(logs: RunLogs, options: { readonly chunk?: number } = {}): void {
  console.log(`run       ${logs.run}`);
  console.log(`pipeline  ${logs.pipeline}`);
  console.log(`status    ${logs.status}`);
  console.log(`started   ${logs.startedAt}${logs.stoppedAt ? `, ended ${logs.stoppedAt}` : ''}`);
  if (logs.planned) {
    const mb = (logs.planned.bytes / 1_000_000).toFixed(1);
    console.log(`planned   ${logs.planned.chunks} chunks, ${mb} MB, ${logs.planned.inputs} input object(s)`);
  }
  if (logs.mapRun) {
    const c = logs.mapRun.counts;
    const parts = ['succeeded', 'failed', 'timedOut', 'aborted', 'running', 'pending']
      .filter((name) => (c[name] ?? 0) > 0)
      .map((name) => `${c[name]} ${name}`);
    console.log(`map run   ${logs.mapRun.status}: ${parts.join(', ') || 'no items'} of ${c.total ?? 0}`);
  }
  console.log('');
  if (logs.chunks.length === 0) {
    console.log(
      options.chunk !== undefined ? `chunk ${options.chunk}: no try recorded in this run` : 'no chunk recorded a try',
    );
  } else {
    printTable(
      logs.chunks.map((chunk) => ({
        chunk: chunk.index,
        status: chunk.status,
        tries: chunk.attempts ?? '',
        started: time(chunk.startedAt),
        duration: seconds(chunk.ms),
        read: chunk.rowsRead ?? '',
        staged: chunk.rowsStaged ?? '',
        rejected: chunk.rowsRejected ?? '',
      })),
    );
  }
  const failed = logs.chunks.filter((chunk) => chunk.error);
  if (failed.length > 0) {
    console.log('');
    console.log('errors');
    for (const chunk of failed) {
      const error = chunk.error;
      if (!error) continue;
      const retried = chunk.status === 'SUCCEEDED' ? ', then succeeded' : '';
      const attempt = error.attempt !== null ? `, try ${error.attempt}` : '';
      console.log(`chunk ${chunk.index}${attempt} at ${time(error.at)}: ${error.type}${retried}`);
      for (const line of wrap(error.message, 96)) console.log(`    ${line}`);
      for (const part of error.parts) console.log(`    in ${part.key} (bytes ${part.start}–${part.end})`);
      if (error.requestId) console.log(`    request ${error.requestId}`);
    }
  }
  const children = logs.mapRun?.children?.filter((child) => child.status !== 'SUCCEEDED') ?? [];
  if (children.length > 0) {
    console.log('');
    console.log('map run children that did not succeed');
    for (const child of children) {
      const took =
        child.startedAt && child.stoppedAt
          ? roughDuration(Date.parse(child.stoppedAt) - Date.parse(child.startedAt))
          : '';
      const chunk = child.chunk !== undefined ? ` chunk ${child.chunk}` : '';
      console.log(
        `${child.name}${chunk} ${child.status} at ${time(child.stoppedAt)} after ${took}${child.error ? `: ${child.error}` : ''}`,
      );
    }
  }
  if (options.chunk === undefined && logs.events.length > 0) {
    console.log('');
    console.log('events (GetExecutionHistory, the top level; --json has every event)');
    for (const line of eventLines(logs.events)) console.log(line);
  }
}

/** Events a reader skips: a task's scheduling and start, and the Map's start and success (its entry and exit say it). */
const QUIET = new Set(['TaskScheduled', 'TaskStarted', 'TaskSucceeded', 'MapStateStarted', 'MapStateSucceeded']);

/** The events as lines; a task scheduled again after it failed is shown as its retry. */
export function eventLines(events: readonly EventLog[]): string[] {
  const lines: string[] = [];
  let scheduled = 0;
  for (const event of events) {
    if (event.type.endsWith('StateEntered')) scheduled = 0;
    if (event.type === 'TaskScheduled' && ++scheduled > 1) {
      lines.push(`${time(event.at)}  retry ${scheduled - 1} of ${event.state ?? 'the task'}`);
      continue;
    }
    if (QUIET.has(event.type)) continue;
    const failure = event.error || event.cause ? `  ${[event.error, event.cause].filter(Boolean).join(': ')}` : '';
    lines.push(`${time(event.at)}  ${event.type}${event.state ? ` ${event.state}` : ''}${failure}`);
  }
  return lines;
}

export const logsHelp = (
  targetHelp: string,
) => `Usage: sluice logs <run> [--chunk N] [--json] [--target T] [--stack S] [--dir .sluice]

What each chunk of a run did: its status, tries, start, duration and rows, the errors its tries
recorded (type, message, the input bytes, the request id), the Distributed Map's counts and its
child executions that did not succeed; then the run's state events (entered, exited, failed, retried).
From the chunks' files in the working bucket and the Step Functions API, the same on every target.
--chunk  one chunk only (its index, as "sluice runs <run>" and the table here show it)
--json   print JSON instead
${targetHelp}`;

/** `sluice logs <run> [--chunk N] [--json]`. */
export async function logs(args: string[], tools: CommandTools): Promise<number> {
  const { values, positionals } = parseCommand(args, { chunk: { type: 'string' }, json: { type: 'boolean' } }, tools);
  if (values.help) return tools.help('logs');
  const [id, ...extra] = positionals;
  if (!id) throw tools.usage('which run? usage: sluice logs <run> [--chunk N]; "sluice runs" lists the runs');
  if (extra.length > 0) throw tools.usage(`unexpected argument(s): ${extra.join(' ')}; usage: sluice logs <run>`);
  if (!/^[A-Za-z0-9_-]{1,80}$/.test(id)) {
    throw tools.fail(`"${id}" is not a run id (1 to 80 of A-Z, a-z, 0-9, - and _); "sluice runs" lists the runs`);
  }
  const chunk = values.chunk === undefined ? undefined : Number(values.chunk);
  if (chunk !== undefined && (!/^\d+$/.test(values.chunk ?? '') || !Number.isSafeInteger(chunk))) {
    throw tools.usage(`--chunk "${values.chunk}" is not a chunk index (0, 1, 2...)`);
  }
  const session = await tools.open(values);
  try {
    let read: RunLogs;
    try {
      read = await readRunLogs(session, executionArnOf(session.names.stateMachineArn, id), {
        ...(chunk !== undefined ? { chunk } : {}),
      });
    } catch (error) {
      if (/ExecutionDoesNotExist/.test((error as Error).message)) {
        throw tools.fail(`no run named "${id}" on ${session.where}; "sluice runs" lists the runs`);
      }
      throw error;
    }
    if (values.json) console.log(JSON.stringify(read, null, 2));
    else printRunLogs(read, { ...(chunk !== undefined ? { chunk } : {}) });
    return 0;
  } finally {
    await session.close();
  }
}
