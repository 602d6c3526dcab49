/**
 * The planner: resolves which input objects a run loads, checks that each looks like
 * the pipeline's format, splits them into chunks, and writes the manifest that the
 * Distributed Map reads. It returns a small summary: the chunk list stays in S3.
 */
import type { Config } from '../config.ts';
import type { Chunk, ChunkPart, PlanEvent, RunRecord, RunRequest, RunState } from '../contracts.ts';
import { InputError, RequestError } from '../errors.ts';
import { formatOf } from '../formats/index.ts';
import { allLoadedEntries, keyHash, readLedger, refuseObjects } from '../ledger/ledger.ts';
import { readAppliedTables } from '../pipeline/applied-tables.ts';
import { matchesInput, type Pipeline } from '../pipeline/definition.ts';
import { needsSetup, setupStatementsFor } from '../pipeline/evolution.ts';
import { setupHash } from '../pipeline/sql.ts';
import { mapLimit, S3_PARALLELISM } from '../storage/concurrency.ts';
import { assertRunId, layout } from '../storage/layout.ts';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.ts';
import { compressionOf } from '../worker/compression.ts';

export interface PlannerDeps {
  readonly store: ObjectStore;
  readonly config: Config;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
}

/** Objects planned for a run, kept beside the manifest for Finish to mark loaded. */
export type RunInputs = readonly ObjectInfo[];

/** How much of an object cut into ranges the planner reads for its header. */
const HEADER_PROBE_BYTES = 64 * 1024;

export function validateRequest(event: PlanEvent, pipelines: ReadonlyMap<string, Pipeline>): RunRequest {
  const request = event?.request as Partial<RunRequest> | undefined;
  if (!request || typeof request.pipeline !== 'string') {
    throw new RequestError(
      'the run request must have a "pipeline" (e.g. {"pipeline": "access-logs", "trigger": "schedule"})',
    );
  }
  if (!pipelines.has(request.pipeline)) {
    throw new RequestError(`unknown pipeline "${request.pipeline}"; known: ${[...pipelines.keys()].join(', ')}`);
  }
  if (request.redriveOf !== undefined && typeof request.redriveOf !== 'string') {
    throw new RequestError('"redriveOf" of a run request must be the run id of the failed run it continues');
  }
  if (request.trigger === 'object' || request.trigger === 'delete') {
    if (typeof request.bucket !== 'string' || typeof request.key !== 'string') {
      throw new RequestError(`an "${request.trigger}" run request needs "bucket" and "key"`);
    }
  } else if (request.trigger === 'backfill') {
    checkWindow(request.from, request.to);
    if (request.reload !== undefined && typeof request.reload !== 'boolean') {
      throw new RequestError('"reload" of a "backfill" run request must be true or false');
    }
  } else if (request.trigger === 'manual') {
    if (
      request.keys !== undefined &&
      !(Array.isArray(request.keys) && request.keys.every((k) => typeof k === 'string'))
    ) {
      throw new RequestError('"keys" of a "manual" run request must be a list of object keys');
    }
  } else if (request.trigger !== 'schedule') {
    throw new RequestError(
      `"trigger" must be object, delete, schedule, manual or backfill, not ${JSON.stringify(request.trigger)}`,
    );
  }
  return request as RunRequest;
}

/** Most days one backfill run re-derives: `sluice backfill` splits a longer window into runs. */
export const MAX_BACKFILL_DAYS = 366;

const DAY = /^\d{4}-\d{2}-\d{2}$/;
const isDay = (value: unknown): value is string =>
  typeof value === 'string' && DAY.test(value) && new Date(`${value}T00:00:00Z`).toISOString().startsWith(value);

/** The days `from`..`to`, inclusive; a window that is not one fails naming what is wrong. */
export function checkWindow(from: unknown, to: unknown): string[] {
  if (!isDay(from) || !isDay(to)) {
    throw new RequestError(
      `a "backfill" run request needs "from" and "to" days (YYYY-MM-DD), not ${JSON.stringify(from)} and ${JSON.stringify(to)}`,
    );
  }
  if (from > to) throw new RequestError(`the backfill window ends (${to}) before it starts (${from})`);
  const days: string[] = [];
  for (const d = new Date(`${from}T00:00:00Z`); d.toISOString().slice(0, 10) <= to; d.setUTCDate(d.getUTCDate() + 1)) {
    days.push(d.toISOString().slice(0, 10));
    if (days.length > MAX_BACKFILL_DAYS) {
      throw new RequestError(
        `the backfill window ${from}..${to} is longer than ${MAX_BACKFILL_DAYS} days; split it (sluice backfill does)`,
      );
    }
  }
  return days;
}

/** EventBridge sends object keys URL-encoded (`+` for spaces); the CLI and Scheduler send them plain. */
export function decodeEventKey(key: string): string {
  try {
    return decodeURIComponent(key.replaceAll('+', ' '));
  } catch {
    return key;
  }
}

async function resolveInputs(request: RunRequest, p: Pipeline, deps: PlannerDeps): Promise<ObjectInfo[]> {
  const { store, config } = deps;
  // A delete run loads nothing (Verify removes the key's rows); a backfill without reload only re-derives.
  if (request.trigger === 'delete' || (request.trigger === 'backfill' && !request.reload)) return [];
  if (request.trigger === 'object') {
    if (request.bucket !== config.inputBucket) {
      throw new RequestError(`bucket "${request.bucket}" is not the input bucket ${config.inputBucket}`);
    }
    let info = await store.head(config.inputBucket, request.key);
    const decoded = decodeEventKey(request.key);
    if (!info && decoded !== request.key) info = await store.head(config.inputBucket, decoded);
    if (!info) throw new InputError(`s3://${config.inputBucket}/${request.key} does not exist (deleted after upload?)`);
    if (!matchesInput(p, info.key)) {
      throw new RequestError(
        `s3://${config.inputBucket}/${info.key} is not an input of pipeline ${p.name} (${p.input.prefix}*${p.input.suffixes.join('|')})`,
      );
    }
    return [info];
  }
  const listed = (await store.list(config.inputBucket, p.input.prefix)).filter((o) => matchesInput(p, o.key));
  if (request.trigger === 'manual' && request.keys) {
    const wanted = new Set(request.keys);
    const found = listed.filter((o) => wanted.has(o.key));
    const missing = [...wanted].filter((k) => !found.some((o) => o.key === k));
    if (missing.length > 0) throw new InputError(`not inputs of pipeline ${p.name}: ${missing.join(', ')}`);
    return found;
  }
  if (request.trigger === 'backfill') return loadedInWindow(listed, p, deps, checkWindow(request.from, request.to));
  return listed;
}

/**
 * A backfill with reload: the listed objects whose current version is the one loaded, with rows
 * on a day of the window (by their ledger markers; a marker without days counts as touching it).
 * An object changed since its load is left to its own run; a deleted one cannot be read again.
 */
async function loadedInWindow(
  listed: readonly ObjectInfo[],
  p: Pipeline,
  deps: PlannerDeps,
  window: readonly string[],
): Promise<ObjectInfo[]> {
  const entries = await allLoadedEntries(deps.store, deps.config.workingBucket, p.name);
  const inWindow = new Set(window);
  const wanted = new Set(
    entries
      .filter((e) => e.days === undefined || e.days.some((d) => inWindow.has(d)))
      .map((e) => `${e.key}\n${e.version}`),
  );
  return listed.filter((o) => wanted.has(`${o.key}\n${o.version}`));
}

/**
 * Drops objects whose current version a previous run already loaded and, for a scheduled
 * run, those whose current version a run refused: one bad file fails one run (and notifies),
 * not every night's. Uploading a new version, or a manual run naming it, tries it again.
 * The ledger is read with one listing per prefix, not one request per object.
 */
async function notYetLoaded(
  objects: ObjectInfo[],
  p: Pipeline,
  deps: PlannerDeps,
  skipRefused: boolean,
): Promise<ObjectInfo[]> {
  if (objects.length === 0) return [];
  const { store, config } = deps;
  const keys = objects.map((o) => o.key);
  const [loaded, refused] = await Promise.all([
    readLedger(store, config.workingBucket, p.name, 'loaded', keys),
    skipRefused ? readLedger(store, config.workingBucket, p.name, 'refused', keys) : undefined,
  ]);
  return objects.filter((o) => {
    const hash = keyHash(o.key);
    return !loaded.hasHash(hash, o.version) && !refused?.hasHash(hash, o.version);
  });
}

/** The first line of `head`, without its line ending. */
function lineOf(head: Buffer): Buffer {
  const nl = head.indexOf(0x0a);
  const line = head.subarray(0, nl < 0 ? head.length : nl);
  return line.at(-1) === 0x0d ? line.subarray(0, -1) : line;
}

/**
 * Reads the header of an object the planner cuts into byte ranges, with ONE ranged GET of its
 * first bytes (on the planned version, `If-Match`): the ranges after the first start without
 * it, so their chunks carry its columns. Objects read whole are checked by the worker as it
 * reads them (header, compression): no request per object here, which is what lets a run
 * plan 100,000 small objects in seconds. Returns the header's columns, undefined without one.
 */
async function inspect(o: ObjectInfo, p: Pipeline, deps: PlannerDeps): Promise<readonly string[] | undefined> {
  const where = `s3://${deps.config.inputBucket}/${o.key}`;
  const length = Math.min(o.size, HEADER_PROBE_BYTES);
  const head = await deps.store.getBytes(deps.config.inputBucket, o.key, 0, length, o.version);
  const line = lineOf(head);
  return line.length > 0 ? formatOf(p).columns(line, where) : undefined;
}

/** Whether the planner cuts the object into byte ranges (see {@link splitIntoChunks}). */
const isCut = (o: ObjectInfo, p: Pipeline, chunkSize: number) =>
  o.size > chunkSize && formatOf(p).splittable(compressionOf(o.key));

/**
 * Inspects the objects cut into ranges whose format has a header (bounded parallelism).
 * Every refused object gets a refused marker, then the run fails naming the first (and how
 * many others).
 */
async function inspectAll(
  objects: readonly ObjectInfo[],
  p: Pipeline,
  deps: PlannerDeps,
  runId: string,
  chunkSize: number,
): Promise<PlannedObject[]> {
  type Outcome = { readonly planned: PlannedObject } | { readonly refused: InputError };
  const inspected = formatOf(p).hasHeader;
  const outcomes = await mapLimit(objects, S3_PARALLELISM, async (o): Promise<Outcome> => {
    if (!inspected || !isCut(o, p, chunkSize)) return { planned: o };
    try {
      const columns = await inspect(o, p, deps);
      return { planned: columns ? { ...o, columns } : o };
    } catch (error) {
      if (error instanceof InputError) return { refused: error };
      throw error;
    }
  });
  const planned: PlannedObject[] = [];
  const refused: { key: string; version: string; error: InputError }[] = [];
  for (const [i, outcome] of outcomes.entries()) {
    if ('planned' in outcome) planned.push(outcome.planned);
    else refused.push({ ...(objects[i] as ObjectInfo), error: outcome.refused });
  }
  if (refused.length > 0) await refuseObjects(deps.store, deps.config.workingBucket, p.name, runId, refused);
  return planned;
}

/** An object to split, with its header's columns. */
export type PlannedObject = ObjectInfo & { readonly columns?: readonly string[] };

/**
 * Largest serialized manifest item (one chunk, the input of one Distributed Map child).
 * Step Functions caps a child execution's input, like any state's input, at 256 KiB
 * (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html); half of it
 * leaves room for what the Map and the Lambda integration wrap around the item.
 */
export const MAX_CHUNK_JSON_BYTES = 128 * 1024;

/**
 * Most parts (objects) in one bin-packed chunk. A worker reads its parts one after another
 * (a GET of some 20 ms each: 500 are 10 s of the Work function's 120 s) and its lineage
 * SQL has one CASE branch per part.
 */
export const MAX_PARTS_PER_CHUNK = 500;

const jsonBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value), 'utf8');

/**
 * Splits objects into chunks: splittable objects larger than `chunkSize` into line-aligned
 * byte ranges of `chunkSize`, compressed or non-splittable ones whole in a chunk of their
 * own, and the other objects up to `chunkSize` bin-packed together up to `chunkSize`, at most
 * {@link MAX_PARTS_PER_CHUNK} parts and {@link MAX_CHUNK_JSON_BYTES} of JSON per chunk.
 * A compressed object stays alone because it can fail its chunk when cut short or corrupt
 * (a plain object's bad lines are rejected): packed, its neighbours would wait for the next
 * run, which skips it once refused (docs/scaling.md).
 * Objects are packed whatever their header (the worker reads each one's own); the columns
 * of an object cut into ranges, read by Plan, go with each of its chunks. Empty objects
 * produce no chunk.
 */
export function splitIntoChunks(
  objects: readonly PlannedObject[],
  p: Pipeline,
  chunkSize: number,
  runId: string,
): Chunk[] {
  interface Group {
    readonly parts: ChunkPart[];
    readonly columns?: readonly string[];
    bytes: number;
    json: number;
  }
  const groups: Group[] = [];
  /** The chunk being packed with whole objects (each part is read with its own header). */
  let bin: Group | undefined;
  const format = formatOf(p);
  /** The JSON of a chunk with no parts (the index at its widest). */
  const emptyJson = (columns?: readonly string[]) =>
    jsonBytes({ runId, pipeline: p.name, index: 99_999_999, parts: [], ...(columns ? { columns } : {}) });
  const open = (columns?: readonly string[]): Group => ({
    parts: [],
    ...(columns ? { columns } : {}),
    bytes: 0,
    json: emptyJson(columns),
  });
  for (const o of objects) {
    if (o.size === 0) continue;
    const compression = compressionOf(o.key);
    const whole: ChunkPart = { key: o.key, version: o.version, size: o.size, start: 0, end: o.size, compression };
    // A part's JSON, plus the comma before it; a range's start/end are no wider than its size.
    const partJson = jsonBytes(whole) + 1;
    if (emptyJson(o.columns) + partJson > MAX_CHUNK_JSON_BYTES) {
      throw new InputError(
        `input object ${o.key} cannot be planned: its part of a manifest item takes ${emptyJson(o.columns) + partJson} bytes of JSON ` +
          `(key of ${Buffer.byteLength(o.key)} bytes${o.columns ? `, header of ${o.columns.length} columns` : ''}), ` +
          `more than the ${MAX_CHUNK_JSON_BYTES} bytes a Distributed Map item may take; shorten its key or header`,
      );
    }
    const splittable = format.splittable(compression);
    if (o.size > chunkSize || !splittable) {
      const ranges: [number, number][] = [];
      if (splittable)
        for (let start = 0; start < o.size; start += chunkSize)
          ranges.push([start, Math.min(o.size, start + chunkSize)]);
      else ranges.push([0, o.size]);
      for (const [start, end] of ranges) {
        const g = open(o.columns);
        g.parts.push({ ...whole, start, end });
        groups.push(g);
      }
      continue;
    }
    if (
      bin &&
      (bin.bytes + o.size > chunkSize ||
        bin.parts.length >= MAX_PARTS_PER_CHUNK ||
        bin.json + partJson > MAX_CHUNK_JSON_BYTES)
    ) {
      groups.push(bin);
      bin = undefined;
    }
    bin ??= open();
    bin.parts.push(whole);
    bin.bytes += o.size;
    bin.json += partJson;
  }
  if (bin) groups.push(bin);
  return groups.map((g, index) => ({
    runId,
    pipeline: p.name,
    index,
    parts: g.parts,
    ...(g.columns ? { columns: g.columns } : {}),
  }));
}

export async function plan(event: PlanEvent, deps: PlannerDeps): Promise<RunState> {
  const request = validateRequest(event, deps.pipelines);
  const runId = assertRunId(event.runId);
  const p = deps.pipelines.get(request.pipeline) as Pipeline;
  const { store, config } = deps;
  if (request.trigger === 'delete' && p.onDelete !== 'remove') {
    throw new RequestError(
      `pipeline ${p.name} keeps the rows of deleted input objects (onDelete: keep); set onDelete: remove in ${p.file} to remove them`,
    );
  }
  if (request.trigger === 'delete' && request.bucket !== config.inputBucket) {
    throw new RequestError(`bucket "${request.bucket}" is not the input bucket ${config.inputBucket}`);
  }
  const candidates = await resolveInputs(request, p, deps);
  // A reload plans versions that are loaded: that is its point.
  const reload = request.trigger === 'backfill' && request.reload === true;
  const inputs = reload ? candidates : await notYetLoaded(candidates, p, deps, request.trigger === 'schedule');
  const chunkSize = config.chunkSizeOverride ?? p.processing.chunkSize;
  const planned = await inspectAll(inputs, p, deps, runId, chunkSize);
  const chunks = splitIntoChunks(planned, p, chunkSize, runId);
  const manifest = { bucket: config.workingBucket, key: layout.manifest(p.name, runId) };
  // CREATE TABLE IF NOT EXISTS does nothing to an existing table: columns appended to the definition
  // since the last setup become ALTER TABLE ... ADD COLUMNS; any other change fails here, naming them.
  const applied = await readAppliedTables(store, config.workingBucket, p.name);
  const statements = setupStatementsFor(p, config, applied);
  const hash = setupHash(statements);
  const record: RunRecord = {
    id: runId,
    pipeline: p.name,
    trigger: request.trigger,
    status: 'RUNNING',
    startedAt: event.startedAt,
    stoppedAt: null,
    inputKeys: inputs.map((o) => o.key),
    chunks: chunks.length,
    ...(request.redriveOf ? { redriveOf: request.redriveOf } : {}),
  };
  const [setupMarker] = await Promise.all([
    store.head(config.workingBucket, layout.setupMarker(p.name, hash)),
    store.putJson(manifest.bucket, manifest.key, chunks),
    store.putJson(config.workingBucket, layout.runInputs(p.name, runId), inputs satisfies RunInputs),
    store.putJson(config.workingBucket, layout.runRecord(p.name, runId), record),
  ]);
  return {
    runId,
    pipeline: p.name,
    trigger: request.trigger,
    startedAt: event.startedAt,
    manifest,
    chunks: chunks.length,
    inputs: inputs.length,
    bytes: inputs.reduce((sum, o) => sum + o.size, 0),
    maxConcurrency: p.processing.maxConcurrency,
    toleratedFailurePercentage: p.processing.toleratedFailurePercentage,
    setup: setupMarker !== undefined && !needsSetup(p, applied) ? [] : statements,
    setupHash: hash,
    // The key as the event sent it: Verify finds its rows under it or, EventBridge sending keys URL-encoded, its decoded form.
    ...(request.trigger === 'delete' ? { remove: request.key } : {}),
    ...(request.trigger === 'backfill' ? { window: { from: request.from, to: request.to } } : {}),
    ...(reload ? { reload: true } : {}),
    ...(request.redriveOf ? { redriveOf: request.redriveOf } : {}),
  };
}
