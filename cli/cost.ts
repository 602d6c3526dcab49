/**
 * `sluice cost <pipeline> --input 1TB`: the modeled AWS bill of loading that much CSV, offline
 * (no AWS call), from the dated prices of `pricing/aws-prices.json`, the worker's measured
 * throughput (the latest `bench:worker` entry of docs/benchmarks.md, else the constant kept beside
 * the prices), the pipeline's chunk size, the functions' memory (functions/catalog.ts), the state
 * transitions of one run counted on the ASL file itself, and the statements the load would run
 * (functions/pipeline/sql.ts). Beside it: the same work as a Glue Spark job, and as one Athena
 * CTAS straight from the CSV. Every figure that is an assumption says so in the output.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { HANDLERS } from '../functions/catalog.ts';
import { getPipeline, LINEAGE_COLUMNS, type Pipeline } from '../functions/pipeline/definition.ts';
import { deriveStatements, loadStatements, maintenanceStatements } from '../functions/pipeline/sql.ts';
import { S3_PARALLELISM } from '../functions/storage/concurrency.ts';
import { UPLOAD_PART_BYTES } from '../functions/storage/s3-store.ts';
import prices from '../pricing/aws-prices.json' with { type: 'json' };
import { printTable } from './format.ts';

/** The modeled Sluice cost per TB of CSV that issue 9 asks for. */
export const TARGET_USD_PER_TB = 0.1;

const TB = 1024 ** 4;
const MB = 1e6; // throughputs are measured in MB/s of 10^6 bytes (bench/worker.ts)
const MIB = 1024 ** 2;
/** Parts in one chunk at most (the planner's cap on a Distributed Map item). */
const MAX_PARTS_PER_CHUNK = 500;
/** Verify reads current versions with HEAD up to this many keys, with a listing past it (functions/run/verify.ts). */
const VERIFY_HEAD_LIMIT = 4 * S3_PARALLELISM;
/** The stack's default of bytesScannedCutoffPerQuery (infra/stack.ts): Athena cancels a query past it. */
export const DEFAULT_BYTES_SCANNED_CUTOFF = 10 * 1024 ** 3;
/** Lambda's default concurrency quota per account and Region (https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html). */
export const DEFAULT_ACCOUNT_CONCURRENCY = 1000;
/** Keys per ListObjectsV2 page. */
const LIST_PAGE = 1000;

/**
 * Assumptions of the model that no measurement here gives; each is printed with the result.
 * Changing one changes the model, so they live here, named, not inline.
 */
export const ASSUMPTIONS = {
  s3LatencySeconds: 0.02,
  coldStartSeconds: 1.0,
  queryPollsPerStatement: 5,
  athenaGetsPerStagingFile: 10,
  athenaBytesPerRequest: 8 * MIB,
  resultWriterPuts: 3,
  planBaseSeconds: 0.5,
  verifyBaseSeconds: 1.0,
  finishBaseSeconds: 0.5,
  leaseSeconds: 0.2,
  expressOverheadSeconds: 0.1,
} as const;

const ASSUMPTION_TEXT: Record<keyof typeof ASSUMPTIONS, string> = {
  s3LatencySeconds: 'S3 request latency 20 ms (the figure test/unit/scale.test.ts plans with)',
  coldStartSeconds:
    'each concurrent worker environment (at most the 1,000 of the default account quota) starts cold once: 1 s of billed INIT',
  queryPollsPerStatement: "each Athena statement is polled 5 times (the ASL's 2-second Wait: about 10 s a statement)",
  athenaGetsPerStagingFile: 'Athena makes about 10 GETs per staging Parquet file it reads (footer and column chunks)',
  athenaBytesPerRequest: "Athena's own reads and writes of table data: one S3 request per 8 MiB",
  resultWriterPuts: 'the Distributed Map ResultWriter writes 3 objects per run',
  planBaseSeconds: 'Plan: 0.5 s plus its S3 requests at 64 in parallel',
  verifyBaseSeconds: 'Verify: 1 s plus its S3 requests at 64 in parallel',
  finishBaseSeconds: 'Finish: 0.5 s plus its S3 requests at 64 in parallel',
  leaseSeconds: 'each lease call (acquire, release) takes 0.2 s',
  expressOverheadSeconds: 'an EXPRESS child lasts its worker plus 0.1 s',
};

/** How many runs load the input: one scheduled run over all of it, or one run per uploaded object. */
export type Trigger = 'schedule' | 'object';

export interface CostOptions {
  readonly inputBytes: number;
  /** Input objects (default: one object per chunk). */
  readonly objects?: number;
  /** Days the rows fall on (default 1). */
  readonly days?: number;
  readonly trigger?: Trigger;
  /** Memory of the worker in MB (default the catalog's). */
  readonly workerMemoryMb?: number;
  readonly throughput: Throughput;
}

/** The worker's measured throughput, and where the figure comes from. */
export interface Throughput {
  readonly workerMbPerSecond: number;
  /** Plain DuckDB COPY of the same bytes at the same threads: the per-vCPU speed assumed for Glue. */
  readonly copyMbPerSecond: number;
  readonly threads: number;
  readonly source: string;
}

export interface LineItem {
  readonly service: 'Lambda' | 'Step Functions' | 'S3' | 'Athena';
  readonly item: string;
  readonly quantity: number;
  readonly unit: string;
  readonly usd: number;
}

export interface Alternative {
  readonly name: string;
  readonly usd: number;
  readonly basis: string;
}

export interface CostModel {
  readonly pipeline: string;
  readonly inputBytes: number;
  readonly objects: number;
  readonly runs: number;
  readonly chunks: number;
  readonly chunkSize: number;
  readonly workerMemoryMb: number;
  readonly workerSecondsPerChunk: number;
  readonly throughput: Throughput;
  readonly parquet: { readonly ratio: number; readonly source: string };
  readonly items: readonly LineItem[];
  readonly totalUsd: number;
  readonly usdPerTb: number;
  readonly target: { readonly usdPerTb: number; readonly met: boolean; readonly dominant: string };
  readonly alternatives: readonly Alternative[];
  /** Limits of the stack's defaults this load would meet. */
  readonly warnings: readonly string[];
  readonly prices: { readonly checked: string; readonly region: string; readonly sources: readonly string[] };
  readonly assumptions: readonly string[];
}

/** A Choice state's decision while walking one execution's path through the ASL. */
type Decide = (state: string, visits: number) => string;

interface AslState {
  readonly Type: string;
  readonly Next?: string;
  readonly End?: boolean;
  readonly Default?: string;
  readonly Choices?: readonly { readonly Next: string }[];
  readonly ItemProcessor?: {
    readonly ProcessorConfig?: { readonly Mode?: string };
    readonly StartAt: string;
    readonly States: Record<string, AslState>;
  };
  readonly Branches?: readonly { readonly StartAt: string; readonly States: Record<string, AslState> }[];
}

interface AslMachine {
  readonly StartAt: string;
  readonly States: Record<string, AslState>;
}

/**
 * The state transitions of one path through a state machine (every state entered counts one,
 * https://aws.amazon.com/step-functions/pricing/), following `decide` at Choice states. An
 * INLINE Map counts its iterations (`items` of the Map's name); a DISTRIBUTED Map counts only
 * itself: its children are separate executions, billed as their own type.
 */
export function countTransitions(machine: AslMachine, decide: Decide, items: (mapState: string) => number): number {
  const walk = (startAt: string, states: Record<string, AslState>): number => {
    const visits = new Map<string, number>();
    let count = 0;
    let name: string | undefined = startAt;
    while (name !== undefined) {
      const state: AslState | undefined = states[name];
      if (!state) throw new Error(`the ASL has no state "${name}"`);
      const seen: number = (visits.get(name) ?? 0) + 1;
      visits.set(name, seen);
      if (seen > 10_000) throw new Error(`the path through "${name}" does not end`);
      count++;
      if (state.Type === 'Map' && state.ItemProcessor && state.ItemProcessor.ProcessorConfig?.Mode !== 'DISTRIBUTED') {
        count += items(name) * walk(state.ItemProcessor.StartAt, state.ItemProcessor.States);
      }
      if (state.Type === 'Parallel') {
        for (const branch of state.Branches ?? []) count += walk(branch.StartAt, branch.States);
      }
      if (state.Type === 'Succeed' || state.Type === 'Fail' || state.End) break;
      name = state.Type === 'Choice' ? decide(name, seen) : state.Next;
    }
    return count;
  };
  return walk(machine.StartAt, machine.States);
}

/** The state machine definition (the one copy, state-machines/pipeline.asl.json). */
export function readStateMachine(repoRoot: string): AslMachine {
  return JSON.parse(readFileSync(join(repoRoot, 'state-machines/pipeline.asl.json'), 'utf8')) as AslMachine;
}

/** The happy path of a run: chunks to process (or none), statements that succeed after a few polls. */
function runTransitions(machine: AslMachine, hasChunks: boolean, statements: number): number {
  const decide: Decide = (state, visits) => {
    if (state === 'HasChunks') return hasChunks ? 'Process' : 'AcquireLease';
    if (state === 'QueryState') return visits < ASSUMPTIONS.queryPollsPerStatement ? 'WaitForQuery' : 'QuerySucceeded';
    throw new Error(`the cost model does not know the Choice state "${state}": teach cli/cost.ts its happy path`);
  };
  return countTransitions(machine, decide, (map) => (map === 'Load' ? statements : 0));
}

/** Sizes such as 1TB, 500GB, 64MB (binary units, like the pipelines' chunk sizes). */
export function parseInputSize(text: string): number {
  const units = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4, PB: 1024 ** 5 } as const;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|PB)?\s*$/i.exec(text);
  if (!match) return Number.NaN;
  const bytes = Math.round(Number(match[1]) * units[(match[2] ?? 'B').toUpperCase() as keyof typeof units]);
  return bytes > 0 ? bytes : Number.NaN;
}

/**
 * The worker's throughput from the newest `## bench:worker` or `## npm run bench` entry of docs/benchmarks.md, or
 * undefined when there is none that reads (the caller then uses the constant of the price file).
 */
export function latestBenchmark(markdown: string): Throughput | undefined {
  const entries = markdown.split(/^## /m).filter((s) => s.startsWith('bench:worker') || s.startsWith('npm run bench'));
  for (const entry of entries.reverse()) {
    const title = entry.split('\n', 1)[0] ?? '';
    const worker = /worker \(S3 -> DuckDB -> Parquet on S3\):\s*([\d.]+) MB\/s/.exec(entry);
    const copy = /plain DuckDB COPY[^:]*:\s*([\d.]+) MB\/s/.exec(entry);
    const threads = /DuckDB threads (\d+)/.exec(entry);
    if (!worker || !copy || !threads) continue;
    return {
      workerMbPerSecond: Number(worker[1]),
      copyMbPerSecond: Number(copy[1]),
      threads: Number(threads[1]),
      source: `docs/benchmarks.md, ${title.trim()}`,
    };
  }
  return undefined;
}

/** The throughput the model uses: the latest benchmark, else the measured constant beside the prices. */
export function measuredThroughput(repoRoot: string): Throughput {
  let markdown = '';
  try {
    markdown = readFileSync(join(repoRoot, 'docs/benchmarks.md'), 'utf8');
  } catch {
    // No benchmarks file: the constant below.
  }
  const fromBench = latestBenchmark(markdown);
  if (fromBench) return fromBench;
  const w = prices.measured.worker;
  return {
    workerMbPerSecond: w.mbPerSecond,
    copyMbPerSecond: w.duckdbCopyMbPerSecond,
    threads: w.threads,
    source: `pricing/aws-prices.json (${w.source})`,
  };
}

/** Chunks the planner makes of `objects` objects of `objectBytes` each (functions/planning/planner.ts). */
export function chunksOf(objects: number, objectBytes: number, chunkSize: number): number {
  if (objects === 0 || objectBytes <= 0) return 0;
  if (objectBytes > chunkSize) return objects * Math.ceil(objectBytes / chunkSize);
  const perChunk = Math.min(MAX_PARTS_PER_CHUNK, Math.max(1, Math.floor(chunkSize / objectBytes)));
  return Math.ceil(objects / perChunk);
}

/** PUT-class requests of one file uploaded with @aws-sdk/lib-storage. */
const uploadRequests = (bytes: number) => (bytes <= UPLOAD_PART_BYTES ? 1 : 2 + Math.ceil(bytes / UPLOAD_PART_BYTES));

/** Billed bytes of one Athena statement. */
function athenaBilled(bytes: number): number {
  const { minimumBytesPerQuery, roundUpBytes } = prices.athena;
  return Math.max(minimumBytesPerQuery, Math.ceil(bytes / roundUpBytes) * roundUpBytes);
}

/**
 * The share of a Parquet file's bytes that some columns take: measured per column for the
 * pipeline of the price file's measurement, else an equal share per column (an assumption).
 */
function columnShare(p: Pipeline, columns: readonly string[]): { share: number; measured: boolean } {
  const measured = prices.measured.parquet;
  const shares = measured.columnShares as Record<string, number>;
  if (measured.pipeline === p.name && Object.keys(shares).length > 0) {
    return { share: columns.reduce((sum, c) => sum + (shares[c] ?? 0), 0), measured: true };
  }
  const all = p.table.columns.length + LINEAGE_COLUMNS.length;
  return { share: columns.length / all, measured: false };
}

/** The main table's columns a derived table's SQL names (it reads only those from the table). */
function derivedColumns(p: Pipeline, sql: string): string[] {
  return p.table.columns.map((c) => c.name).filter((name) => new RegExp(`\\b${name}\\b`, 'i').test(sql));
}

/** Consecutive days from 2026-01-01, for the statements the load would run. */
function someDays(count: number): string[] {
  return Array.from({ length: count }, (_, i) => new Date(Date.UTC(2026, 0, 1 + i)).toISOString().slice(0, 10));
}

/** The load being modeled: what the options and the pipeline make of it, computed once. */
interface Shape {
  readonly p: Pipeline;
  readonly trigger: Trigger;
  readonly input: number;
  readonly objects: number;
  readonly objectBytes: number;
  readonly days: readonly string[];
  readonly workerMb: number;
  readonly throughput: Throughput;
  readonly runs: number;
  readonly objectsPerRun: number;
  readonly chunksPerRun: number;
  readonly chunks: number;
  /** The workers' ranged GETs: one per part. */
  readonly parts: number;
  readonly workerSeconds: number;
  readonly parquetBytes: number;
  readonly stagedPerChunk: number;
}

function shapeOf(p: Pipeline, options: CostOptions): Shape {
  const trigger = options.trigger ?? 'schedule';
  const chunkSize = p.processing.chunkSize;
  const input = options.inputBytes;
  const objects = options.objects ?? Math.max(1, Math.ceil(input / chunkSize));
  const objectBytes = input / objects;
  const runs = trigger === 'object' ? objects : 1;
  const objectsPerRun = objects / runs;
  const chunksPerRun = chunksOf(objectsPerRun, objectBytes, chunkSize);
  const chunks = chunksPerRun * runs;
  const ratio = prices.measured.parquet.csvToParquetRatio;
  return {
    p,
    trigger,
    input,
    objects,
    objectBytes,
    days: someDays(options.days ?? 1),
    workerMb: options.workerMemoryMb ?? HANDLERS.work.memorySize,
    throughput: options.throughput,
    runs,
    objectsPerRun,
    chunksPerRun,
    chunks,
    parts: objectBytes > chunkSize ? chunks : objects,
    workerSeconds: input / chunks / MB / options.throughput.workerMbPerSecond,
    parquetBytes: input * ratio,
    stagedPerChunk: (input / chunks) * ratio,
  };
}

const gb = (mb: number) => mb / 1024;
const pages = (keys: number) => Math.max(1, Math.ceil(keys / LIST_PAGE));
/** Seconds of `requests` S3 requests made 64 at a time. */
const inParallel = (requests: number) => (requests * ASSUMPTIONS.s3LatencySeconds) / S3_PARALLELISM;
const item = (service: LineItem['service'], what: string, quantity: number, unit: string, usd: number): LineItem => ({
  service,
  item: what,
  quantity,
  unit,
  usd,
});

/**
 * Plan's header probes: one ranged GET per object it cuts into byte ranges (larger than a chunk);
 * the workers check the headers of the objects they read whole (functions/planning/planner.ts).
 */
const probedPerRun = (s: Shape) => (s.objectBytes > s.p.processing.chunkSize ? s.objectsPerRun : 0);
/** Plan's duration: its header probes, the input and ledger listings page by page. */
const planSeconds = (s: Shape) =>
  ASSUMPTIONS.planBaseSeconds + inParallel(probedPerRun(s)) + pages(s.objectsPerRun) * 3 * ASSUMPTIONS.s3LatencySeconds;
/** Finish's duration: a ledger marker per object. */
const finishSeconds = (s: Shape) => ASSUMPTIONS.finishBaseSeconds + inParallel(s.objectsPerRun);

/** Lambda: GB-seconds of every handler on the happy path, plus requests. */
function lambdaItems(s: Shape): LineItem[] {
  const price = prices.lambda.arm64GbSecond;
  const workGbs = s.chunks * s.workerSeconds * gb(s.workerMb);
  // Environments are reused between chunks: at most one cold start per concurrent worker, within the account's quota.
  const coldStarts = Math.min(s.chunks, s.p.processing.maxConcurrency * s.runs, DEFAULT_ACCOUNT_CONCURRENCY);
  const initGbs = coldStarts * ASSUMPTIONS.coldStartSeconds * gb(s.workerMb);
  const verifySeconds =
    ASSUMPTIONS.verifyBaseSeconds + inParallel(2 * s.chunksPerRun + Math.min(s.objectsPerRun, VERIFY_HEAD_LIMIT));
  const otherGbs =
    s.runs *
    (planSeconds(s) * gb(HANDLERS.plan.memorySize) +
      verifySeconds * gb(HANDLERS.verify.memorySize) +
      finishSeconds(s) * gb(HANDLERS.finish.memorySize) +
      2 * ASSUMPTIONS.leaseSeconds * gb(HANDLERS.lease.memorySize));
  const requests = s.chunks + 5 * s.runs;
  return [
    item(
      'Lambda',
      `Work: ${s.chunks} chunks x ${s.workerSeconds.toFixed(2)} s x ${s.workerMb} MB`,
      workGbs,
      'GB-s',
      workGbs * price,
    ),
    item('Lambda', `Work: ${coldStarts} cold starts (INIT)`, initGbs, 'GB-s', initGbs * price),
    item('Lambda', `Plan, Verify, Finish, Lease x2: ${s.runs} run(s)`, otherGbs, 'GB-s', otherGbs * price),
    item(
      'Lambda',
      'requests (every handler)',
      requests,
      'requests',
      (requests / 1e6) * prices.lambda.perMillionRequests,
    ),
  ];
}

/** The Athena statements of the load, what each reads, and their bills. */
interface AthenaWork {
  readonly items: readonly LineItem[];
  /** Statements of one run (a scheduled run's include the maintenance). */
  readonly perRun: number;
  /** Statements of the nightly scheduled run that follows one-run-per-object loads. */
  readonly nightly: number;
  readonly total: number;
  readonly largest: number;
  /** Bytes of the main table the derives read. */
  readonly deriveRead: number;
  readonly measuredShares: boolean;
}

function athenaWork(s: Shape): AthenaWork {
  const { p, runs, parquetBytes } = s;
  const lineage = columnShare(p, [...LINEAGE_COLUMNS.map((c) => c.name), p.table.partitionDay]);
  const deriveShare = p.derived.reduce((sum, d) => sum + columnShare(p, derivedColumns(p, d.sql)).share, 0);
  const loads = loadStatements(p, 'cost', s.days, true, true).length;
  const mainLoads = loads - 1; // the last of loadStatements is the rejects MERGE
  const derives = deriveStatements(p, s.days).length;
  const maintenance = maintenanceStatements(p, s.days);
  const optimizeMain = maintenance.filter((m) => m.startsWith(`OPTIMIZE "${p.table.name}"`)).length;
  const nightly = s.trigger === 'object' ? 1 : 0;
  const items: LineItem[] = [];
  let total = 0;
  let largest = 0;
  const bill = (what: string, count: number, bytesEach: number) => {
    const billed = count * athenaBilled(bytesEach);
    total += count;
    largest = Math.max(largest, bytesEach);
    items.push(item('Athena', what, billed / TB, 'TB scanned', (billed / TB) * prices.athena.perTbScanned));
  };
  // Each run's load MERGE reads its staging whole, and the lineage of the rows already on its days:
  // run i of n finds (i-1)/n of the days' rows there, (n-1)/2 of the input's lineage over n runs.
  bill(
    `load MERGE x ${mainLoads * runs}: staging (${(prices.measured.parquet.csvToParquetRatio * 100).toFixed(1)}% of the CSV) and the days' lineage`,
    mainLoads * runs,
    (parquetBytes / runs + (lineage.share * parquetBytes * (runs - 1)) / 2 / runs) / mainLoads,
  );
  bill(`rejects MERGE x ${runs} (at the 10 MB minimum)`, runs, 0);
  // Each run re-derives its days whole: over n runs on the same days, (n+1)/2 times the days' rows.
  const deriveRead = deriveShare * parquetBytes;
  const deriveRuns = runs + nightly;
  bill(
    `derive MERGE x ${derives * deriveRuns}: the columns its SQL names, of the days loaded`,
    derives * deriveRuns,
    ((deriveRead * (runs + 1)) / 2 + nightly * deriveRead) / deriveRuns / Math.max(1, derives),
  );
  // Maintenance: once a day (the scheduled run); OPTIMIZE of the main table reads the days' rows once.
  bill(`OPTIMIZE of ${p.table.name} x ${optimizeMain}: the days loaded`, optimizeMain, parquetBytes / optimizeMain);
  bill(
    `OPTIMIZE of the small tables, VACUUM x ${maintenance.length - optimizeMain}`,
    maintenance.length - optimizeMain,
    0,
  );
  return {
    items,
    perRun: loads + derives + (nightly ? 0 : maintenance.length),
    nightly: nightly * (derives + maintenance.length),
    total,
    largest,
    deriveRead,
    measuredShares: lineage.measured,
  };
}

/** Step Functions: the parent's transitions (counted on the ASL), the EXPRESS children. */
function stepFunctionsItems(s: Shape, machine: AslMachine, athena: AthenaWork): LineItem[] {
  const perRun = runTransitions(machine, true, athena.perRun);
  const nightly = athena.nightly > 0 ? runTransitions(machine, false, athena.nightly) : 0;
  const transitions = s.runs * perRun + nightly;
  const step = prices.stepFunctions.expressDurationStepSeconds;
  const childSeconds = Math.ceil((s.workerSeconds + ASSUMPTIONS.expressOverheadSeconds) / step) * step;
  const expressGbs = s.chunks * childSeconds * gb(prices.stepFunctions.expressBilledMemoryStepMb);
  return [
    item(
      'Step Functions',
      `STANDARD: ${perRun} transitions a run x ${s.runs}${nightly ? ` + ${nightly} (nightly run)` : ''}`,
      transitions,
      'transitions',
      (transitions / 1000) * prices.stepFunctions.standardPerThousandTransitions,
    ),
    item(
      'Step Functions',
      'EXPRESS children: requests',
      s.chunks,
      'requests',
      (s.chunks / 1e6) * prices.stepFunctions.expressPerMillionRequests,
    ),
    item(
      'Step Functions',
      `EXPRESS children: ${childSeconds.toFixed(1)} s x 64 MB each`,
      expressGbs,
      'GB-s',
      expressGbs * prices.stepFunctions.expressGbSecond,
    ),
  ];
}

/** S3 requests, by who makes them. */
function s3Items(s: Shape, athena: AthenaWork): LineItem[] {
  const { runs, chunks, objects, objectsPerRun, chunksPerRun, parquetBytes } = s;
  const putPrice = prices.s3.putCopyPostListPerThousand / 1000;
  const getPrice = prices.s3.getSelectAllOtherPerThousand / 1000;
  const perStaging = uploadRequests(s.stagedPerChunk);
  const staging = chunks * perStaging;
  const puts =
    runs * (3 + ASSUMPTIONS.resultWriterPuts + 2 + 2) + // Plan's manifest, inputs and record; ResultWriter; Verify's rejects and verified; Finish's record and setup marker
    chunks * 2 + // each chunk's rejects and result
    objects + // Finish: a ledger marker per object
    runs * (s.trigger === 'object' ? 4 : 3 * pages(objectsPerRun)) + // LISTs of the ledger (loaded, refused) and the input prefix
    runs * 3 * pages(chunksPerRun) + // Verify lists the results; Finish lists staging and rejects
    runs * (objectsPerRun > VERIFY_HEAD_LIMIT ? pages(objectsPerRun) : 0) + // Verify lists the input prefix
    Math.ceil((2 * parquetBytes) / ASSUMPTIONS.athenaBytesPerRequest) + // Athena writes the table (load, OPTIMIZE)
    athena.total * 2; // Athena's query results
  const gets =
    runs * (3 + 2) + // manifest (ItemReader), applied tables, setup marker; lease
    probedPerRun(s) * runs + // Plan's header probes (objects it cuts into ranges)
    (s.trigger === 'object' ? runs : 0) + // Plan's HEAD of the uploaded object
    s.parts + // the workers' ranged GETs
    chunks * 2 + // Verify reads each result and each rejects file
    runs * Math.min(objectsPerRun, VERIFY_HEAD_LIMIT) + // Verify's HEADs
    chunks * ASSUMPTIONS.athenaGetsPerStagingFile + // Athena reads staging
    Math.ceil((athena.deriveRead + parquetBytes) / ASSUMPTIONS.athenaBytesPerRequest); // Athena reads the table (derive, OPTIMIZE)
  return [
    item(
      'S3',
      `PUT: staging Parquet, ${perStaging} request(s) a chunk (one PutObject up to ${UPLOAD_PART_BYTES / MIB} MiB, else multipart)`,
      staging,
      'requests',
      staging * putPrice,
    ),
    item(
      'S3',
      'PUT, LIST: results, rejects, ledger markers, listings, Athena writes',
      puts,
      'requests',
      puts * putPrice,
    ),
    item('S3', 'GET, HEAD: ranged reads, probes, results, Athena reads', gets, 'requests', gets * getPrice),
  ];
}

/** Limits this load would meet with the stack's defaults (docs/scaling.md). */
function limitsMet(s: Shape, athena: AthenaWork): string[] {
  const warnings: string[] = [];
  const gib = 1024 ** 3;
  if (athena.largest > DEFAULT_BYTES_SCANNED_CUTOFF) {
    warnings.push(
      `one statement would scan ${(athena.largest / gib).toFixed(0)} GiB, more than the workgroup's default cutoff of ${DEFAULT_BYTES_SCANNED_CUTOFF / gib} GiB a query (infra/stack.ts bytesScannedCutoffPerQuery): Athena would cancel it; raise the cutoff or load in smaller runs`,
    );
  }
  for (const [name, seconds] of [
    ['Plan', planSeconds(s)],
    ['Finish', finishSeconds(s)],
  ] as const) {
    const timeout = HANDLERS[name === 'Plan' ? 'plan' : 'finish'].timeoutSeconds;
    if (seconds > timeout / 2) {
      warnings.push(
        `${name} would take about ${seconds.toFixed(0)} s for ${s.objectsPerRun} objects in a run, against its ${timeout} s timeout: split the load into several runs`,
      );
    }
  }
  if (s.workerSeconds > HANDLERS.work.timeoutSeconds) {
    warnings.push(
      `a chunk would take ${s.workerSeconds.toFixed(0)} s, more than the worker's ${HANDLERS.work.timeoutSeconds} s timeout: use a smaller chunk size`,
    );
  }
  if (s.trigger === 'object' && s.runs > 1000) {
    warnings.push(
      `${s.runs} runs take the pipeline's load lease one at a time; at ${ASSUMPTIONS.queryPollsPerStatement * 2} s or more a statement, a day holds a few thousand loads at most, and a run waits at most about 75 minutes for the lease: most of these runs would fail there and leave their objects to the nightly run`,
    );
  }
  return warnings;
}

/** The same work elsewhere. Glue: Spark at the measured DuckDB COPY speed per vCPU (a lower bound of its cost). */
function alternativesTo(s: Shape): Alternative[] {
  const { glue, athena } = prices;
  const dpuSeconds = Math.max(
    glue.minimumSeconds * glue.minimumDpus,
    s.input / MB / (s.throughput.copyMbPerSecond * glue.vcpusPerDpu),
  );
  return [
    {
      name: 'Glue Spark job',
      usd: (dpuSeconds / 3600) * glue.perDpuHour,
      basis: `${(dpuSeconds / 3600).toFixed(2)} DPU-hours: each of a DPU's ${glue.vcpusPerDpu} vCPUs converting at the measured plain DuckDB COPY rate (${s.throughput.copyMbPerSecond} MB/s; Spark's CSV reader is not faster, so this is a lower bound), ${glue.minimumSeconds} s and ${glue.minimumDpus} DPUs at least; writes Iceberg itself (no Athena scan)`,
    },
    {
      name: 'Athena CTAS from the CSV',
      usd: (athenaBilled(s.input) / TB) * athena.perTbScanned,
      basis: `scans the CSV once: ${(s.input / TB).toFixed(3)} TB at $${athena.perTbScanned}/TB (S3 requests not counted)`,
    },
  ];
}

function assumptionsOf(s: Shape, athena: AthenaWork): string[] {
  const { parquet } = prices.measured;
  const shares = athena.measuredShares
    ? `measured column shares of ${parquet.pipeline}`
    : 'an equal share per column (no measurement for this pipeline)';
  return [
    `worker throughput ${s.throughput.workerMbPerSecond} MB/s at ${s.throughput.threads} DuckDB thread(s), from ${s.throughput.source}; a Lambda vCPU is taken to be as fast as that machine's core`,
    `staging Parquet is ${parquet.csvToParquetRatio} of the CSV's bytes (${parquet.source}); the columns a statement reads: ${shares}`,
    s.trigger === 'object'
      ? 'one run per uploaded object (what the EventBridge rule starts), and one nightly scheduled run that re-derives and compacts the day'
      : 'one scheduled run loads every object (with OPTIMIZE and VACUUM); uploads would start one run each (--trigger object)',
    `${s.objects} objects of ${(s.objectBytes / MIB).toFixed(1)} MiB; rows on ${s.days.length} day(s); every chunk has a few rejects; the prefix and the ledger hold only this input`,
    ...Object.values(ASSUMPTION_TEXT),
    'not counted: S3 storage, CloudWatch Logs, EventBridge, retries, the free tiers',
  ];
}

/** The model. Pure: every input is an argument (the ASL, the pipeline, the throughput). */
export function modelCost(p: Pipeline, machine: AslMachine, options: CostOptions): CostModel {
  const s = shapeOf(p, options);
  const athena = athenaWork(s);
  const items = [...lambdaItems(s), ...athena.items, ...stepFunctionsItems(s, machine, athena), ...s3Items(s, athena)];
  const totalUsd = items.reduce((sum, i) => sum + i.usd, 0);
  const usdPerTb = totalUsd / (s.input / TB);
  const byService = new Map<string, number>();
  for (const i of items) byService.set(i.service, (byService.get(i.service) ?? 0) + i.usd);
  const [dominantService, dominantUsd] = [...byService].sort((a, b) => b[1] - a[1])[0] ?? ['none', 0];
  return {
    pipeline: p.name,
    inputBytes: s.input,
    objects: s.objects,
    runs: s.runs,
    chunks: s.chunks,
    chunkSize: p.processing.chunkSize,
    workerMemoryMb: s.workerMb,
    workerSecondsPerChunk: s.workerSeconds,
    throughput: s.throughput,
    parquet: { ratio: prices.measured.parquet.csvToParquetRatio, source: prices.measured.parquet.source },
    items,
    totalUsd,
    usdPerTb,
    target: {
      usdPerTb: TARGET_USD_PER_TB,
      met: usdPerTb <= TARGET_USD_PER_TB,
      dominant: `${dominantService} ($${dominantUsd.toFixed(4)}, ${((dominantUsd / totalUsd) * 100).toFixed(0)}% of the total)`,
    },
    alternatives: alternativesTo(s),
    warnings: limitsMet(s, athena),
    prices: {
      checked: prices.checked,
      region: prices.region,
      sources: [
        prices.lambda.source,
        prices.stepFunctions.source,
        prices.s3.source,
        prices.athena.source,
        prices.glue.source,
      ],
    },
    assumptions: assumptionsOf(s, athena),
  };
}

const OPTIONS = {
  input: { type: 'string' },
  objects: { type: 'string' },
  days: { type: 'string' },
  trigger: { type: 'string', default: 'schedule' },
  'worker-memory': { type: 'string' },
  throughput: { type: 'string' },
  json: { type: 'boolean' },
  pipelines: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsOptionsConfig;

/** What `sluice cost` uses of the CLI (cli/commands.ts's command tools). */
export interface CostTools {
  /** A command line that is not understood (exit code 2). */
  readonly usage: (message: string) => Error;
  /** Prints a command's help; returns its exit code. */
  readonly help: (command: string) => number;
  /** The pipeline definitions (`--pipelines`, default the repository's). */
  readonly pipelines: (dir?: string) => ReadonlyMap<string, Pipeline>;
}

export const COST_HELP = `Usage: sluice cost <pipeline> --input <size> [--objects N] [--trigger schedule|object] [--days N]
                   [--worker-memory MB] [--throughput MB/s] [--json] [--pipelines <dir>]

Prints the modeled AWS cost (us-east-1, on-demand prices of pricing/aws-prices.json) of loading
<size> of CSV with the pipeline: Lambda, Step Functions, S3 requests and Athena, with a total and
the cost per TB against the $${TARGET_USD_PER_TB.toFixed(2)}/TB target, beside the same work as a Glue Spark job and as an
Athena CTAS from the CSV. Offline: no AWS call. Every assumption is printed with the result.
--input          how much CSV, e.g. 1TB, 250GB (binary units)
--objects        in how many objects (default one per chunk of the pipeline's chunk size)
--trigger        schedule: one scheduled run loads them all (default); object: one run per uploaded
                 object, as the upload rule starts them, plus the nightly scheduled run
--days           the days the rows fall on (default 1)
--worker-memory  the worker's memory in MB (default ${HANDLERS.work.memorySize}, the stack's default)
--throughput     the worker's MB/s (default: the latest bench:worker entry of docs/benchmarks.md)
--json           print the model as JSON
--pipelines      the pipeline definitions (default the repository's pipelines/)`;

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const positiveInteger = (value: string | undefined, option: string, tools: CostTools): number | undefined => {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw tools.usage(`${option} "${value}" is not a positive whole number`);
  return n;
};

/** `sluice cost`. */
export async function cost(args: string[], tools: CostTools, repoRoot = REPO_ROOT): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>>;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: OPTIONS });
  } catch (error) {
    throw tools.usage(
      `${(error as Error).message} (sluice cost works offline: it takes no --target, --stack or --dir)`,
    );
  }
  const { values, positionals } = parsed;
  if (values.help) return tools.help('cost');
  const [name, ...extra] = positionals;
  if (!name) throw tools.usage('which pipeline? usage: sluice cost <pipeline> --input 1TB');
  if (extra.length > 0)
    throw tools.usage(`unexpected argument(s): ${extra.join(' ')}; usage: sluice cost <pipeline> --input 1TB`);
  if (values.input === undefined) throw tools.usage('--input <size> is required, e.g. --input 1TB');
  const inputBytes = parseInputSize(values.input);
  if (Number.isNaN(inputBytes)) throw tools.usage(`--input "${values.input}" is not a size such as 1TB, 250GB or 64MB`);
  const trigger = values.trigger;
  if (trigger !== 'schedule' && trigger !== 'object')
    throw tools.usage(`--trigger "${trigger}": use schedule or object`);
  const objects = positiveInteger(values.objects, '--objects', tools);
  const days = positiveInteger(values.days, '--days', tools);
  const workerMemoryMb = positiveInteger(values['worker-memory'], '--worker-memory', tools);
  if (workerMemoryMb !== undefined && (workerMemoryMb < 128 || workerMemoryMb > 10240)) {
    throw tools.usage(`--worker-memory ${workerMemoryMb}: a Lambda function has 128 to 10240 MB`);
  }
  let throughput = measuredThroughput(repoRoot);
  if (values.throughput !== undefined) {
    const mbps = Number(values.throughput);
    if (!(mbps > 0)) throw tools.usage(`--throughput "${values.throughput}" is not a positive number of MB/s`);
    throughput = { ...throughput, workerMbPerSecond: mbps, source: '--throughput' };
  }
  const pipeline = getPipeline(tools.pipelines(values.pipelines), name);
  const model = modelCost(pipeline, readStateMachine(repoRoot), {
    inputBytes,
    trigger,
    throughput,
    ...(objects !== undefined ? { objects } : {}),
    ...(days !== undefined ? { days } : {}),
    ...(workerMemoryMb !== undefined ? { workerMemoryMb } : {}),
  });
  if (values.json) console.log(JSON.stringify(model, null, 2));
  else printModel(model);
  return 0;
}

const usd = (n: number) => (n >= 1 ? `$${n.toFixed(2)}` : `$${n.toFixed(4)}`);
const amount = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : Number(n.toPrecision(3)).toString());

function printModel(m: CostModel): void {
  const tb = m.inputBytes / TB;
  console.log(
    `sluice cost ${m.pipeline}: ${tb >= 0.01 ? `${tb.toFixed(2)} TB` : `${(m.inputBytes / MIB).toFixed(0)} MiB`} of CSV in ${m.objects} objects, ${m.runs} run(s), ${m.chunks} chunks of up to ${(m.chunkSize / MIB).toFixed(0)} MiB`,
  );
  console.log(`prices: ${m.prices.region}, checked ${m.prices.checked} (pricing/aws-prices.json)\n`);
  printTable(
    m.items.map((i) => ({
      service: i.service,
      item: i.item,
      quantity: amount(i.quantity),
      unit: i.unit,
      usd: usd(i.usd),
    })),
  );
  console.log(`\ntotal: ${usd(m.totalUsd)}, ${usd(m.usdPerTb)} per TB of CSV`);
  console.log(
    m.target.met
      ? `target <= $${m.target.usdPerTb.toFixed(2)} per TB: met`
      : `target <= $${m.target.usdPerTb.toFixed(2)} per TB: NOT met; ${m.target.dominant} dominates`,
  );
  console.log('\nthe same work elsewhere:');
  for (const a of m.alternatives) console.log(`  ${a.name}: ${usd(a.usd)} (${usd(a.usd / tb)} per TB): ${a.basis}`);
  if (m.warnings.length > 0) {
    console.log('\nlimits this load meets with the stack defaults:');
    for (const w of m.warnings) console.log(`  ! ${w}`);
  }
  console.log('\nassumptions:');
  for (const a of m.assumptions) console.log(`  - ${a}`);
}
