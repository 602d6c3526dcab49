/**
 * The planner: resolves which input objects a run loads, checks that each looks like
 * the pipeline's format, splits them into chunks, and writes the manifest that the
 * Distributed Map reads. It returns a small summary: the chunk list stays in S3.
 */
import type { Config } from '../config.ts';
import type { Chunk, ChunkPart, PlanEvent, RunRecord, RunRequest, RunState } from '../contracts.ts';
import { InputError, RequestError } from '../errors.ts';
import { matchesInput, type Pipeline } from '../pipeline/definition.ts';
import { setupHash, setupStatements } from '../pipeline/sql.ts';
import { assertRunId, layout } from '../storage/layout.ts';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.ts';
import { checkMagic, compressionOf, decompress } from '../worker/compression.ts';
import { checkHeader } from '../worker/header.ts';

export interface PlannerDeps {
  readonly store: ObjectStore;
  readonly config: Config;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
}

/** What a ledger entry says: this version of this key was loaded by that run. */
export interface LedgerEntry {
  readonly key: string;
  readonly version: string;
  readonly runId: string;
  readonly loadedAt: string;
}

/** Objects planned for a run, kept beside the manifest for Finish to mark loaded. */
export type RunInputs = readonly ObjectInfo[];

/** How much of an object the planner reads to check its header. */
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
  if (request.trigger === 'object') {
    if (typeof request.bucket !== 'string' || typeof request.key !== 'string') {
      throw new RequestError('an "object" run request needs "bucket" and "key"');
    }
  } else if (request.trigger === 'manual') {
    if (
      request.keys !== undefined &&
      !(Array.isArray(request.keys) && request.keys.every((k) => typeof k === 'string'))
    ) {
      throw new RequestError('"keys" of a "manual" run request must be a list of object keys');
    }
  } else if (request.trigger !== 'schedule') {
    throw new RequestError(`"trigger" must be object, schedule or manual, not ${JSON.stringify(request.trigger)}`);
  }
  return request as RunRequest;
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
  return listed;
}

/**
 * Drops objects whose current version a previous run already loaded and, for a scheduled
 * run, those whose current version a run refused: one bad file fails one run (and notifies),
 * not every night's. Uploading a new version, or a manual run naming it, tries it again.
 */
async function notYetLoaded(
  objects: ObjectInfo[],
  p: Pipeline,
  deps: PlannerDeps,
  skipRefused: boolean,
): Promise<ObjectInfo[]> {
  const fresh: ObjectInfo[] = [];
  for (const o of objects) {
    const entry = await deps.store.getJson<LedgerEntry>(deps.config.workingBucket, layout.ledger(p.name, o.key));
    if (entry?.version === o.version) continue;
    if (skipRefused) {
      const refused = await deps.store.getJson<RefusedEntry>(deps.config.workingBucket, layout.refused(p.name, o.key));
      if (refused?.version === o.version) continue;
    }
    fresh.push(o);
  }
  return fresh;
}

/** An object version a run refused, and why. */
export interface RefusedEntry {
  readonly key: string;
  readonly version: string;
  readonly runId: string;
  readonly reason: string;
}

/** Reads the first line of an object (decompressed), or less when the object has no newline early on. */
async function firstLine(o: ObjectInfo, p: Pipeline, deps: PlannerDeps, where: string): Promise<Buffer> {
  const compression = compressionOf(o.key);
  let head: Buffer;
  if (compression === 'none') {
    head = await deps.store.getBytes(deps.config.inputBucket, o.key, 0, Math.min(o.size, HEADER_PROBE_BYTES));
  } else {
    const chunks: Buffer[] = [];
    let total = 0;
    const source = (await deps.store.getStream(deps.config.inputBucket, o.key)) as AsyncIterable<Buffer>;
    for await (const b of decompress(source, compression, p.input.maxDecompressionRatio, where)) {
      chunks.push(b);
      total += b.length;
      if (b.includes(0x0a) || total >= HEADER_PROBE_BYTES) break;
    }
    head = Buffer.concat(chunks);
  }
  const nl = head.indexOf(0x0a);
  const line = head.subarray(0, nl < 0 ? head.length : nl);
  return line.at(-1) === 0x0d ? line.subarray(0, -1) : line;
}

/**
 * Checks an object before any worker starts: a compressed one must really be
 * compressed, and a file with a header must have the pipeline's columns. Returns
 * the header's columns (undefined when the format has no header).
 */
async function inspect(o: ObjectInfo, p: Pipeline, deps: PlannerDeps): Promise<readonly string[] | undefined> {
  if (o.size === 0) return undefined;
  const where = `s3://${deps.config.inputBucket}/${o.key}`;
  const compression = compressionOf(o.key);
  if (compression !== 'none') {
    checkMagic(compression, await deps.store.getBytes(deps.config.inputBucket, o.key, 0, Math.min(o.size, 8)), where);
  }
  if (!p.input.header || p.input.format === 'jsonl') return undefined;
  const line = await firstLine(o, p, deps, where);
  return line.length > 0 ? checkHeader(p, line, where) : undefined;
}

/** An object to split, with its header's columns. */
export type PlannedObject = ObjectInfo & { readonly columns?: readonly string[] };

/**
 * Splits objects into chunks: splittable objects into line-aligned byte ranges of
 * `chunkSize`, compressed or non-splittable ones whole, and small ones bin-packed
 * together up to `chunkSize` (only objects with the same header share a chunk).
 * Empty objects produce no chunk.
 */
export function splitIntoChunks(
  objects: readonly PlannedObject[],
  p: Pipeline,
  chunkSize: number,
  runId: string,
): Chunk[] {
  const groups: ChunkPart[][] = [];
  const bins = new Map<string, { parts: ChunkPart[]; bytes: number }>();
  for (const o of objects) {
    if (o.size === 0) continue;
    const compression = compressionOf(o.key);
    const whole: ChunkPart = {
      key: o.key,
      version: o.version,
      size: o.size,
      start: 0,
      end: o.size,
      compression,
      ...(o.columns ? { columns: o.columns } : {}),
    };
    const splittable = compression === 'none' && p.input.splittable;
    if (o.size > chunkSize || !splittable) {
      if (splittable) {
        for (let start = 0; start < o.size; start += chunkSize) {
          groups.push([{ ...whole, start, end: Math.min(o.size, start + chunkSize) }]);
        }
      } else {
        groups.push([whole]);
      }
      continue;
    }
    const signature = o.columns?.join('\n') ?? '';
    let bin = bins.get(signature);
    if (bin && bin.bytes + o.size > chunkSize) {
      groups.push(bin.parts);
      bin = undefined;
    }
    bin ??= { parts: [], bytes: 0 };
    bin.parts.push(whole);
    bin.bytes += o.size;
    bins.set(signature, bin);
  }
  for (const bin of bins.values()) groups.push(bin.parts);
  return groups.map((parts, index) => ({ runId, pipeline: p.name, index, parts }));
}

export async function plan(event: PlanEvent, deps: PlannerDeps): Promise<RunState> {
  const request = validateRequest(event, deps.pipelines);
  const runId = assertRunId(event.runId);
  const p = deps.pipelines.get(request.pipeline) as Pipeline;
  const { store, config } = deps;
  const candidates = await resolveInputs(request, p, deps);
  const inputs = await notYetLoaded(candidates, p, deps, request.trigger === 'schedule');
  const planned: PlannedObject[] = [];
  for (const o of inputs) {
    let columns: readonly string[] | undefined;
    try {
      columns = await inspect(o, p, deps);
    } catch (error) {
      if (error instanceof InputError) {
        const refused: RefusedEntry = { key: o.key, version: o.version, runId, reason: error.message };
        await store.putJson(config.workingBucket, layout.refused(p.name, o.key), refused);
      }
      throw error;
    }
    planned.push(columns ? { ...o, columns } : o);
  }
  const chunkSize = config.chunkSizeOverride ?? p.processing.chunkSize;
  const chunks = splitIntoChunks(planned, p, chunkSize, runId);
  const manifest = { bucket: config.workingBucket, key: layout.manifest(p.name, runId) };
  await store.putJson(manifest.bucket, manifest.key, chunks);
  await store.putJson(
    config.workingBucket,
    `${layout.runFolder(p.name, runId)}inputs.json`,
    inputs satisfies RunInputs,
  );
  const statements = setupStatements(p, config);
  const hash = setupHash(statements);
  const setupDone = (await store.head(config.workingBucket, layout.setupMarker(p.name, hash))) !== undefined;
  const record: RunRecord = {
    id: runId,
    pipeline: p.name,
    trigger: request.trigger,
    status: 'RUNNING',
    startedAt: event.startedAt,
    stoppedAt: null,
    inputKeys: inputs.map((o) => o.key),
    chunks: chunks.length,
  };
  await store.putJson(config.workingBucket, layout.runRecord(p.name, runId), record);
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
    setup: setupDone ? [] : statements,
    setupHash: hash,
  };
}
