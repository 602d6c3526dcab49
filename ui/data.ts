/**
 * What the UI shows, read through the S3, Step Functions and Athena APIs only (the clients of a
 * {@link TargetSession}), so a deployed stack shows the same way as the embedded runtime:
 * - runs: ListExecutions and DescribeExecution with the run records (cli/client.ts);
 * - a run: its history (steps, SQL statements, the failed state), its chunks' timings from the
 *   chunk result and error files in the working bucket (`runs/<p>/<run>/chunks|errors/<i>.json`:
 *   `startedAt`, `finishedAt`, `attempt` when the Work handler wrote them) and, failing those,
 *   from the Distributed Map's child executions (ListMapRuns, ListExecutions by mapRunArn);
 * - rejects and tables: Athena queries on the pipelines' tables.
 */
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { DescribeMapRunCommand, ListExecutionsCommand, ListMapRunsCommand } from '@aws-sdk/client-sfn';
import {
  call,
  executionArnOf,
  listExecutionItems,
  QueryFailedError,
  type QueryRow,
  readEach,
  readExecution,
  runQuery,
  stepsFromHistory,
} from '../cli/client.ts';
import type { TargetSession } from '../cli/target.ts';
import type { ChunkFailure, ChunkResult } from '../functions/contracts.ts';
import type { Pipeline } from '../functions/pipeline/definition.ts';
import { literal, quoteIdentifier, tableNames } from '../functions/pipeline/sql.ts';
import { layout } from '../functions/storage/layout.ts';
import { type ExecutionRecord, type RunDetail, type RunRow, toRunDetail, toRunRow } from '../runtime/executions.ts';
import type { StepRecord } from '../runtime/state-machine.ts';
import { type FailedState, historyFacts, type PlanFacts, readHistory, type StatementRun } from './history.ts';

/** What the UI server and `sluice report` read from: a target and the pipeline definitions. */
export interface UiSource {
  readonly session: TargetSession;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
}

/** A run id as Step Functions names executions: also what may reach an S3 key or a SQL literal. */
export const RUN_ID = /^[A-Za-z0-9_-]{1,80}$/;

/** A request the UI cannot answer as asked (unknown run, bad parameter): a 4xx with this message. */
export class UiRequestError extends Error {
  override name = 'UiRequestError';
  readonly status: number;
  constructor(message: string, status = 400) {
    super(message);
    this.status = status;
  }
}

/** Runs that ended, by execution ARN: an ended execution does not change, so polling describes only the others. */
const ended = new WeakMap<TargetSession, Map<string, ExecutionRecord>>();

/**
 * The runs page: the newest runs (ListExecutions, then DescribeExecution and the run record of
 * each run not seen ended before: the page polls, and DescribeExecution is throttled on AWS) and
 * the pipelines they can be filtered by.
 */
export async function runsPage(source: UiSource, limit = 100): Promise<{ runs: RunRow[]; pipelines: PipelineInfo[] }> {
  const { session } = source;
  const cache = ended.get(session) ?? new Map<string, ExecutionRecord>();
  ended.set(session, cache);
  const items = await listExecutionItems(session, limit);
  const records = await readEach(items, async ({ arn, status }) => {
    const known = cache.get(arn);
    if (known && known.status === status) return known;
    const record = await readExecution(session, arn);
    if (record.status !== 'RUNNING') cache.set(arn, record);
    return record;
  });
  return { runs: records.map(toRunRow), pipelines: pipelineInfos(source) };
}

export interface PipelineInfo {
  readonly name: string;
  readonly schedule: string | null;
  readonly tables: readonly string[];
}

export function pipelineInfos(source: UiSource): PipelineInfo[] {
  return [...source.pipelines.values()].map((p) => ({
    name: p.name,
    schedule: p.schedule ? `${p.schedule.cron} (${p.schedule.timezone})` : null,
    tables: [p.table.name, tableNames(p).rejects, ...p.derived.map((d) => d.name)],
  }));
}

/** One chunk of a run as the Gantt shows it. */
export interface ChunkBar {
  readonly index: number;
  readonly status: 'SUCCEEDED' | 'FAILED' | 'RUNNING' | 'NOT RUN';
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  /** The worker slot it ran in (chunks that overlap in time are in different slots). */
  readonly slot: number;
  /** How many times it was tried (1: once). */
  readonly attempt: number;
  readonly rowsRead: number | null;
  readonly rowsRejected: number | null;
  /** The input objects it read. */
  readonly keys: readonly string[];
  readonly error: string | null;
  readonly errorType: string | null;
}

/** Where the chunk timings came from. */
export type TimingSource = 'chunk files' | 'child executions' | 'none';

export interface ThroughputPoint {
  readonly at: string;
  readonly rowsPerSecond: number;
}

export interface RunPage {
  readonly run: RunDetail;
  readonly executionArn: string;
  readonly plan: PlanFacts | null;
  /** While the run is in progress: its Distributed Map's counts (DescribeMapRun). */
  readonly progress: MapProgress | null;
  readonly chunks: readonly ChunkBar[];
  readonly slots: number;
  readonly timing: TimingSource;
  readonly throughput: readonly ThroughputPoint[];
  readonly statements: readonly StatementRun[];
  readonly failure: Failure | null;
  readonly rejects: RejectSummary;
  readonly readAt: string;
}

/** A failed run in plain words: the state, the error, the message, the chunks and input objects it concerns. */
export interface Failure {
  readonly state: string;
  readonly error: string;
  readonly errorType: string;
  readonly message: string;
  readonly cause: string;
  readonly inputs: readonly string[];
  readonly chunks: readonly { index: number; errorType: string; message: string; parts: string[] }[];
}

export interface RejectReason {
  readonly column: string | null;
  readonly reason: string;
  readonly count: number;
  readonly exampleKey: string;
  readonly exampleLine: number | null;
  readonly exampleRaw: string | null;
}

export interface RejectSummary {
  readonly table: string | null;
  readonly total: number;
  readonly top: readonly RejectReason[];
  /** Why the rejects could not be read, when they could not. */
  readonly note: string | null;
}

/** At most this many chunk files are read for one run page (the Gantt of a bigger run shows its first ones). */
const MAX_CHUNK_FILES = 2000;

function checkRunId(id: string): void {
  if (!RUN_ID.test(id)) throw new UiRequestError(`"${id}" is not a run id (1 to 80 of A-Z, a-z, 0-9, - and _)`);
}

/** The run page's data. */
export async function runPage(source: UiSource, id: string): Promise<RunPage> {
  checkRunId(id);
  const { session } = source;
  const executionArn = executionArnOf(session.names.stateMachineArn, id);
  let record: Awaited<ReturnType<typeof readExecution>>;
  try {
    record = await readExecution(session, executionArn);
  } catch (error) {
    if (/ExecutionDoesNotExist/.test((error as Error).message)) {
      throw new UiRequestError(`no run named "${id}" on ${session.where}`, 404);
    }
    throw error;
  }
  const events = await readHistory(session, executionArn);
  const facts = historyFacts(events);
  const steps: StepRecord[] = stepsFromHistory(events, record.status);
  const run = toRunDetail({ ...record, steps });
  const pipeline = source.pipelines.get(run.pipeline);
  const [files, children] = await Promise.all([
    run.pipeline ? chunkFiles(session, run.pipeline, id) : Promise.resolve({ results: new Map(), errors: new Map() }),
    mapRunFacts(session, executionArn),
  ]);
  const { bars, timing } = chunkBars(facts.plan?.chunks ?? null, files, children.children, run.status);
  return {
    run,
    executionArn,
    plan: facts.plan,
    progress: run.status === 'RUNNING' ? children.progress : null,
    chunks: bars,
    slots: bars.reduce((n, b) => Math.max(n, b.slot + 1), 0),
    timing,
    throughput: throughput(bars),
    statements: facts.statements,
    failure: failureOf(run, facts.failed),
    // Athena is asked once the run has ended: the page polls a running run, and its rejects are loaded at Load.
    rejects: !pipeline
      ? emptyRejects(null, 'the pipeline is not defined here')
      : run.status === 'RUNNING'
        ? emptyRejects(tableNames(pipeline).rejects, 'shown when the run has ended')
        : await rejectSummary(source, pipeline, id),
    readAt: new Date().toISOString(),
  };
}

/** A chunk result or error file, with the timings the Work handler adds (absent in older files). */
export type ChunkFile = Partial<Omit<ChunkResult, 'parts'> & Omit<ChunkFailure, 'parts'>> & {
  readonly parts?: readonly { readonly key: string }[];
  readonly startedAt?: string;
  readonly finishedAt?: string;
  readonly attempt?: number;
};

/** The run's chunk result and error files, by chunk index. */
async function chunkFiles(
  session: TargetSession,
  pipeline: string,
  run: string,
): Promise<{ results: Map<number, ChunkFile>; errors: Map<number, ChunkFile> }> {
  const read = async (prefix: string) => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await call(session, `list s3://${session.names.workingBucket}/${prefix}`, () =>
        session.s3.send(
          new ListObjectsV2Command({
            Bucket: session.names.workingBucket,
            Prefix: prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        ),
      );
      for (const object of page.Contents ?? []) if (object.Key?.endsWith('.json')) keys.push(object.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token && keys.length < MAX_CHUNK_FILES);
    const files = new Map<number, ChunkFile>();
    const wanted = keys.slice(0, MAX_CHUNK_FILES);
    // Sixteen at a time: S3 serves thousands of GETs a second per prefix, the local server fewer.
    for (let i = 0; i < wanted.length; i += 16) {
      await Promise.all(
        wanted.slice(i, i + 16).map(async (key) => {
          try {
            const out = await session.s3.send(new GetObjectCommand({ Bucket: session.names.workingBucket, Key: key }));
            const file = JSON.parse((await out.Body?.transformToString()) ?? 'null') as ChunkFile | null;
            const index = Number(/(\d+)\.json$/.exec(key)?.[1]);
            if (file && Number.isInteger(index)) files.set(index, file);
          } catch {
            // A file deleted or half-written meanwhile: the chunk shows without it.
          }
        }),
      );
    }
    return files;
  };
  const [results, errors] = await Promise.all([
    read(layout.chunkResultsPrefix(pipeline, run)),
    read(layout.chunkErrorsPrefix(pipeline, run)),
  ]);
  return { results, errors };
}

export interface Child {
  readonly startDate: Date;
  readonly stopDate: Date | null;
  readonly status: string;
}

export interface MapProgress {
  readonly total: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly running: number;
  readonly pending: number;
}

/**
 * The Distributed Map's child executions (ListMapRuns, then ListExecutions by mapRunArn), oldest
 * first, and the counts of its latest map run (DescribeMapRun).
 */
async function mapRunFacts(
  session: TargetSession,
  executionArn: string,
): Promise<{ children: Child[]; progress: MapProgress | null }> {
  const children: Child[] = [];
  let progress: MapProgress | null = null;
  try {
    const runs = await session.sfn.send(new ListMapRunsCommand({ executionArn, maxResults: 10 }));
    const latest = runs.mapRuns?.at(-1)?.mapRunArn;
    if (latest) {
      const counts = (await session.sfn.send(new DescribeMapRunCommand({ mapRunArn: latest }))).itemCounts;
      progress = {
        total: counts?.total ?? 0,
        succeeded: counts?.succeeded ?? 0,
        failed: (counts?.failed ?? 0) + (counts?.timedOut ?? 0) + (counts?.aborted ?? 0),
        running: counts?.running ?? 0,
        pending: counts?.pending ?? 0,
      };
    }
    for (const mapRun of runs.mapRuns ?? []) {
      let token: string | undefined;
      do {
        const page = await session.sfn.send(
          new ListExecutionsCommand({
            mapRunArn: mapRun.mapRunArn,
            maxResults: 1000,
            ...(token ? { nextToken: token } : {}),
          }),
        );
        for (const child of page.executions ?? []) {
          if (child.startDate) {
            children.push({
              startDate: child.startDate,
              stopDate: child.stopDate ?? null,
              status: child.status ?? 'RUNNING',
            });
          }
        }
        token = page.nextToken;
      } while (token && children.length < MAX_CHUNK_FILES);
    }
  } catch {
    // A target without map runs (or a run that never reached the map): the chunk files alone.
  }
  return { children: children.sort((a, b) => a.startDate.getTime() - b.startDate.getTime()), progress };
}

const iso = (value: string | Date | undefined | null) =>
  value ? (typeof value === 'string' ? value : value.toISOString()) : null;

/**
 * One bar per planned chunk. Timings from the chunk files when they carry them; otherwise the
 * map's children in start order, which is the order the Distributed Map starts items in (an
 * approximation the page says it is). Bars are then put in worker slots: a chunk goes to the
 * first slot free when it starts.
 */
export function chunkBars(
  planned: number | null,
  files: { results: Map<number, ChunkFile>; errors: Map<number, ChunkFile> },
  children: readonly Child[],
  runStatus: string,
): { bars: ChunkBar[]; timing: TimingSource } {
  const indexes = [...files.results.keys(), ...files.errors.keys()];
  const count = Math.max(planned ?? 0, indexes.length > 0 ? Math.max(...indexes) + 1 : 0);
  const fromFiles = [...files.results.values(), ...files.errors.values()].some((f) => f.startedAt);
  const timing: TimingSource = fromFiles ? 'chunk files' : children.length > 0 ? 'child executions' : 'none';
  const draft = Array.from({ length: count }, (_, index) => {
    const result = files.results.get(index);
    const error = files.errors.get(index);
    const child = timing === 'child executions' ? children[index] : undefined;
    const failed = !result && (error !== undefined || child?.status === 'FAILED' || child?.status === 'TIMED_OUT');
    const status: ChunkBar['status'] = result
      ? 'SUCCEEDED'
      : failed
        ? 'FAILED'
        : runStatus === 'RUNNING'
          ? 'RUNNING'
          : child?.status === 'SUCCEEDED'
            ? 'SUCCEEDED'
            : 'NOT RUN';
    const startedAt = fromFiles ? iso(result?.startedAt ?? error?.startedAt) : iso(child?.startDate);
    const finishedAt = fromFiles
      ? iso(result?.finishedAt ?? error?.finishedAt ?? error?.failedAt)
      : iso(child?.stopDate ?? null);
    const keys = [...new Set([...(result?.parts ?? []), ...(error?.parts ?? [])].map((p) => p.key))];
    return {
      index,
      status,
      startedAt,
      finishedAt,
      // An error file beside a result: the chunk failed once, then a retry succeeded.
      attempt: Math.max(result?.attempt ?? 1, error?.attempt ?? 1, result && error ? 2 : 1),
      rowsRead: result?.rowsRead ?? null,
      rowsRejected: result?.rowsRejected ?? null,
      keys,
      error: error?.message ?? null,
      errorType: error?.errorType ?? null,
    };
  });
  return { bars: assignSlots(draft), timing };
}

function assignSlots(draft: Omit<ChunkBar, 'slot'>[]): ChunkBar[] {
  const free: number[] = []; // per slot: when it is free again
  const slots = new Map<number, number>();
  const timed = draft.filter((b) => b.startedAt).sort((a, b) => (a.startedAt ?? '').localeCompare(b.startedAt ?? ''));
  for (const bar of timed) {
    const start = Date.parse(bar.startedAt ?? '');
    const end = bar.finishedAt ? Date.parse(bar.finishedAt) : Date.now();
    let slot = free.findIndex((until) => until <= start);
    if (slot < 0) slot = free.push(end) - 1;
    else free[slot] = end;
    slots.set(bar.index, slot);
  }
  return draft.map((bar) => ({ ...bar, slot: slots.get(bar.index) ?? 0 }));
}

/** Rows read per second over the run's chunks, in up to 40 steps: each chunk's rows spread evenly over its time. */
export function throughput(bars: readonly ChunkBar[]): ThroughputPoint[] {
  const timed = bars.filter((b) => b.startedAt && b.finishedAt && b.rowsRead !== null);
  if (timed.length === 0) return [];
  const start = Math.min(...timed.map((b) => Date.parse(b.startedAt ?? '')));
  const end = Math.max(...timed.map((b) => Date.parse(b.finishedAt ?? '')));
  const steps = Math.max(1, Math.min(40, Math.ceil((end - start) / 100)));
  const width = Math.max(1, (end - start) / steps);
  const rows = new Array<number>(steps).fill(0);
  for (const bar of timed) {
    const from = Date.parse(bar.startedAt ?? '');
    const to = Math.max(from + 1, Date.parse(bar.finishedAt ?? ''));
    for (let i = 0; i < steps; i++) {
      const overlap = Math.min(to, start + (i + 1) * width) - Math.max(from, start + i * width);
      if (overlap > 0) rows[i] = (rows[i] ?? 0) + ((bar.rowsRead ?? 0) * overlap) / (to - from);
    }
  }
  return rows.map((n, i) => ({
    at: new Date(start + (i + 0.5) * width).toISOString(),
    rowsPerSecond: Math.round((n * 1000) / width),
  }));
}

/** The failure in plain words, with the chunks and the input objects it concerns. */
function failureOf(run: RunDetail, failed: FailedState | null): Failure | null {
  if (!run.error) return null;
  const chunks = (run.details?.chunks ?? []).map((c) => ({
    index: c.index,
    errorType: c.errorType,
    message: c.message,
    parts: c.parts.map((p) => `${p.key} (bytes ${p.start}–${p.end})`),
  }));
  const input = run.input as { key?: unknown } | null;
  const inputs = [
    ...new Set([
      ...(run.details?.chunks ?? []).flatMap((c) => c.parts.map((p) => p.key)),
      ...(typeof input?.key === 'string' ? [input.key] : []),
    ]),
  ];
  return {
    state: failed?.state ?? run.steps.find((s) => s.status === 'FAILED' || s.status === 'CAUGHT')?.name ?? '',
    error: run.error,
    errorType: run.details?.errorType ?? run.error,
    message: run.message ?? run.cause ?? '',
    cause: run.cause ?? '',
    inputs,
    chunks,
  };
}

const emptyRejects = (table: string | null, note: string | null): RejectSummary => ({ table, total: 0, top: [], note });

/** Athena says a table is missing this way (and the local runtime the same). */
const isMissingTable = (error: unknown) =>
  error instanceof QueryFailedError && /does not exist|not found|TABLE_NOT_FOUND/i.test(error.message);

/** The top reject reasons of a run, with an example line of each (Athena). */
async function rejectSummary(source: UiSource, pipeline: Pipeline, id: string): Promise<RejectSummary> {
  const table = tableNames(pipeline).rejects;
  const from = `FROM ${quoteIdentifier(table)} WHERE run_id = ${literal(id)}`;
  try {
    const [total, top] = await Promise.all([
      runQuery(source.session, `SELECT count(*) AS n ${from}`),
      runQuery(
        source.session,
        `SELECT column_name, reason, count(*) AS n, min_by(source_key, line_number) AS example_key,
                min(line_number) AS example_line, min_by(raw_line, line_number) AS example_raw
         ${from} GROUP BY column_name, reason ORDER BY n DESC, reason LIMIT 10`,
      ),
    ]);
    return {
      table,
      total: Number(total.rows[0]?.n ?? 0),
      top: top.rows.map((row) => ({
        column: row.column_name === null ? null : String(row.column_name),
        reason: String(row.reason ?? ''),
        count: Number(row.n ?? 0),
        exampleKey: String(row.example_key ?? ''),
        exampleLine: row.example_line === null ? null : Number(row.example_line),
        exampleRaw: row.example_raw === null ? null : String(row.example_raw),
      })),
      note: null,
    };
  } catch (error) {
    if (isMissingTable(error)) return emptyRejects(table, `${table} does not exist yet: no run has loaded anything`);
    return emptyRejects(table, `could not read ${table}: ${(error as Error).message}`);
  }
}

/** At most this many reject rows on one page of the table. */
export const REJECTS_PAGE = 50;

/** One page of a run's rejects, in file and line order. */
export async function rejectsPage(
  source: UiSource,
  id: string,
  offset: number,
): Promise<{ rows: QueryRow[]; offset: number; total: number }> {
  checkRunId(id);
  if (!Number.isInteger(offset) || offset < 0) throw new UiRequestError(`offset "${offset}" is not a row number`);
  const run = await readExecution(source.session, executionArnOf(source.session.names.stateMachineArn, id));
  const pipeline = source.pipelines.get(run.pipeline);
  if (!pipeline) throw new UiRequestError(`run ${id} is of pipeline "${run.pipeline}", which is not defined here`, 404);
  const table = quoteIdentifier(tableNames(pipeline).rejects);
  const from = `FROM ${table} WHERE run_id = ${literal(id)}`;
  try {
    const [rows, total] = await Promise.all([
      runQuery(
        source.session,
        `SELECT source_key, line_number, column_name, reason, raw_line ${from}
         ORDER BY source_key, line_number OFFSET ${offset} LIMIT ${REJECTS_PAGE}`,
      ),
      runQuery(source.session, `SELECT count(*) AS n ${from}`),
    ]);
    return { rows: rows.rows, offset, total: Number(total.rows[0]?.n ?? 0) };
  } catch (error) {
    if (isMissingTable(error)) return { rows: [], offset, total: 0 };
    throw error;
  }
}

export interface TableInfo {
  readonly pipeline: string;
  readonly table: string;
  readonly kind: 'main' | 'rejects' | 'derived';
  readonly rows: number | null;
  /** Days with rows, newest first (the main table's partition day; a derived table's `day` column). */
  readonly days: readonly { day: string; rows: number }[];
  readonly note: string | null;
}

/** Each pipeline's tables with their row counts and days (Athena). */
export async function tablesPage(source: UiSource): Promise<TableInfo[]> {
  const tables: { pipeline: Pipeline; table: string; kind: TableInfo['kind']; day: string | null }[] = [];
  for (const pipeline of source.pipelines.values()) {
    tables.push({ pipeline, table: pipeline.table.name, kind: 'main', day: pipeline.table.partitionDay ?? null });
    tables.push({ pipeline, table: tableNames(pipeline).rejects, kind: 'rejects', day: null });
    for (const derived of pipeline.derived) {
      const day = derived.columns.find((c) => c.type === 'date')?.name ?? null;
      tables.push({ pipeline, table: derived.name, kind: 'derived', day });
    }
  }
  return Promise.all(
    tables.map(async ({ pipeline, table, kind, day }): Promise<TableInfo> => {
      const name = quoteIdentifier(table);
      try {
        const count = await runQuery(source.session, `SELECT count(*) AS n FROM ${name}`);
        const days = day
          ? (
              await runQuery(
                source.session,
                `SELECT CAST(CAST(${quoteIdentifier(day)} AS DATE) AS VARCHAR) AS day, count(*) AS n FROM ${name}
                 GROUP BY 1 ORDER BY 1 DESC LIMIT 100`,
              )
            ).rows.map((r) => ({ day: String(r.day), rows: Number(r.n) }))
          : [];
        return { pipeline: pipeline.name, table, kind, rows: Number(count.rows[0]?.n ?? 0), days, note: null };
      } catch (error) {
        const note = isMissingTable(error) ? 'not created yet: no run has loaded anything' : (error as Error).message;
        return { pipeline: pipeline.name, table, kind, rows: null, days: [], note };
      }
    }),
  );
}
