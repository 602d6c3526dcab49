/**
 * The planner: resolves which input objects a run loads, checks that each looks like
 * the pipeline's format, splits them into chunks, and writes the manifest that the
 * Distributed Map reads. It returns a small summary: the chunk list stays in S3.
 */
import { createGunzip } from 'node:zlib';
import type { Config } from '../config.ts';
import type { Chunk, ChunkPart, PlanEvent, RunRecord, RunRequest, RunState } from '../contracts.ts';
import { InputError, RequestError } from '../errors.ts';
import { matchesInput, type Pipeline } from '../pipeline/definition.ts';
import { setupHash, setupStatements } from '../pipeline/sql.ts';
import { assertRunId, layout } from '../storage/layout.ts';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.ts';
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

/** Drops objects whose current version a previous run already loaded. */
async function notYetLoaded(objects: ObjectInfo[], p: Pipeline, deps: PlannerDeps): Promise<ObjectInfo[]> {
  const fresh: ObjectInfo[] = [];
  for (const o of objects) {
    const entry = await deps.store.getJson<LedgerEntry>(deps.config.workingBucket, layout.ledger(p.name, o.key));
    if (entry?.version !== o.version) fresh.push(o);
  }
  return fresh;
}

const isGzip = (key: string) => key.endsWith('.gz');

/** Reads the first line of an object (decompressing gzip) and checks it is the pipeline's header. */
async function checkObjectHeader(o: ObjectInfo, p: Pipeline, deps: PlannerDeps): Promise<void> {
  if (!p.input.header || o.size === 0) return;
  const where = `s3://${deps.config.inputBucket}/${o.key}`;
  let head: Buffer;
  if (isGzip(o.key)) {
    const chunks: Buffer[] = [];
    let total = 0;
    const gunzip = (await deps.store.getStream(deps.config.inputBucket, o.key)).pipe(createGunzip());
    try {
      for await (const b of gunzip as AsyncIterable<Buffer>) {
        chunks.push(b);
        total += b.length;
        if (b.includes(0x0a) || total >= HEADER_PROBE_BYTES) break;
      }
    } catch (error) {
      throw new InputError(`${where} is not a valid gzip file: ${(error as Error).message}`);
    } finally {
      gunzip.destroy();
    }
    head = Buffer.concat(chunks);
  } else {
    head = await deps.store.getBytes(deps.config.inputBucket, o.key, 0, Math.min(o.size, HEADER_PROBE_BYTES));
  }
  const nl = head.indexOf(0x0a);
  let line = head.subarray(0, nl < 0 ? head.length : nl);
  if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
  checkHeader(p, line, where);
}

/**
 * Splits objects into chunks: splittable objects into line-aligned byte ranges of
 * `chunkSize`, compressed or non-splittable ones whole, and small ones bin-packed
 * together up to `chunkSize`. Empty objects produce no chunk.
 */
export function splitIntoChunks(
  objects: readonly ObjectInfo[],
  p: Pipeline,
  chunkSize: number,
  runId: string,
): Chunk[] {
  const groups: ChunkPart[][] = [];
  let bin: ChunkPart[] = [];
  let binBytes = 0;
  const flushBin = () => {
    if (bin.length > 0) groups.push(bin);
    bin = [];
    binBytes = 0;
  };
  for (const o of objects) {
    if (o.size === 0) continue;
    const compression = isGzip(o.key) ? 'gzip' : 'none';
    const whole: ChunkPart = { key: o.key, version: o.version, size: o.size, start: 0, end: o.size, compression };
    if (compression === 'gzip' || !p.input.splittable || o.size > chunkSize) {
      if (compression === 'none' && p.input.splittable) {
        for (let start = 0; start < o.size; start += chunkSize) {
          groups.push([{ ...whole, start, end: Math.min(o.size, start + chunkSize) }]);
        }
      } else {
        groups.push([whole]);
      }
      continue;
    }
    if (binBytes + o.size > chunkSize) flushBin();
    bin.push(whole);
    binBytes += o.size;
  }
  flushBin();
  return groups.map((parts, index) => ({ runId, pipeline: p.name, index, parts }));
}

export async function plan(event: PlanEvent, deps: PlannerDeps): Promise<RunState> {
  const request = validateRequest(event, deps.pipelines);
  const runId = assertRunId(event.runId);
  const p = deps.pipelines.get(request.pipeline) as Pipeline;
  const { store, config } = deps;
  const candidates = await resolveInputs(request, p, deps);
  const inputs = await notYetLoaded(candidates, p, deps);
  for (const o of inputs) await checkObjectHeader(o, p, deps);
  const chunkSize = config.chunkSizeOverride ?? p.processing.chunkSize;
  const chunks = splitIntoChunks(inputs, p, chunkSize, runId);
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
