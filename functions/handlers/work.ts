import type { Chunk, ChunkAttempt, ChunkFailure, ChunkSummary } from '../contracts.ts';
import { RequestError } from '../errors.ts';
import { chunkMeasures, observe } from '../observability.ts';
import { excerpt, toPlainError } from '../run/failure-message.ts';
import { assertRunId, layout } from '../storage/layout.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { chunkSummary, processChunk } from '../worker/worker.ts';
import { clockOf, type Handler, type HandlerDeps, onFirstCall } from './shared.ts';

/**
 * Work state (one Distributed Map item): parse, validate and stage one chunk. Returns a
 * few counts only: the full ChunkResult is in the run's folder, and every child's output
 * ends up in the Map Run's results.
 *
 * A chunk that fails leaves its error in the run folder (`errors/<index>.json`: type, plain
 * message, parts) before the error goes on to the state machine, plain and bounded: on AWS
 * the Distributed Map's cause is generic ("The specified tolerated failure threshold was
 * exceeded"), so RecordFailure reads the chunks' errors from there.
 */
export const createHandler = (deps: HandlerDeps): Handler<Chunk, ChunkSummary> => {
  const { store, config, pipelines } = deps;
  const clock = clockOf(deps);
  // On Lambda: log lines with the run and chunk, and the chunk's rows, bytes and duration as metrics.
  return observe(deps.telemetry, { step: 'work', measure: chunkMeasures }, async (chunk, context) => {
    const pipeline = pipelines.get(chunk?.pipeline);
    if (!pipeline || !Array.isArray(chunk.parts)) {
      throw toPlainError(
        new RequestError(`not a chunk of a known pipeline: ${excerpt(JSON.stringify(chunk) ?? '', 200)}`),
      );
    }
    const startedAt = clock();
    const attempt = countAttempt(store, config.workingBucket, chunk, startedAt);
    try {
      const timed = stampingResult(store, config.workingBucket, chunk, { startedAt, attempt, clock });
      const result = await processChunk(chunk, { store: timed, config, pipeline });
      await attempt; // the marker is written before Lambda freezes the environment
      return chunkSummary(result);
    } catch (error) {
      const plain = toPlainError(error);
      const timing = { startedAt, attempt: await attempt };
      await recordChunkFailure(store, config.workingBucket, chunk, plain, context?.awsRequestId, clock(), timing);
      throw plain;
    }
  });
};

export const handler = onFirstCall(createHandler);

/** Writes the chunk's error for RecordFailure. Best effort: the chunk's own error is what the state machine must see. */
async function recordChunkFailure(
  objects: ObjectStore,
  bucket: string,
  chunk: Chunk,
  error: Error,
  requestId: string | undefined,
  failedAt: Date,
  timing: { readonly startedAt: Date; readonly attempt: number | undefined },
): Promise<void> {
  try {
    const failure: ChunkFailure = {
      index: chunk.index,
      errorType: error.name,
      message: error.message,
      parts: chunk.parts.map((p) => ({ key: p.key, start: p.start, end: p.end })),
      ...(requestId ? { requestId } : {}),
      failedAt: failedAt.toISOString(),
      startedAt: timing.startedAt.toISOString(),
      finishedAt: failedAt.toISOString(),
      ...(timing.attempt !== undefined ? { attempt: timing.attempt } : {}),
    };
    await objects.putJson(bucket, layout.chunkError(chunk.pipeline, assertRunId(chunk.runId), chunk.index), failure);
  } catch (writeError) {
    console.error(`could not record the error of chunk ${chunk.index}: ${toPlainError(writeError).message}`);
  }
}

/**
 * Counts this try of the chunk in its marker (one GET, one PUT of a few bytes, while the chunk is
 * processed) and resolves with its number. Best effort: undefined when the marker cannot be read or
 * written, never a failure of the chunk. Tries of one chunk never overlap (the Work state retries
 * after the previous try ended), so the read and the write need no condition.
 */
function countAttempt(store: ObjectStore, bucket: string, chunk: Chunk, startedAt: Date): Promise<number | undefined> {
  const count = async () => {
    const key = layout.chunkAttempt(chunk.pipeline, assertRunId(chunk.runId), chunk.index);
    const previous = await store.getJson<ChunkAttempt>(bucket, key);
    const attempt = (typeof previous?.attempt === 'number' ? previous.attempt : 0) + 1;
    const marker: ChunkAttempt = { index: chunk.index, attempt, startedAt: startedAt.toISOString() };
    await store.putJson(bucket, key, marker);
    return attempt;
  };
  return count().catch(() => undefined);
}

/**
 * The store the worker writes through, with the chunk's result stamped as it is written: when this
 * try started, when the result was written, and the try's number. No extra request.
 */
function stampingResult(
  store: ObjectStore,
  bucket: string,
  chunk: Chunk,
  timing: { readonly startedAt: Date; readonly attempt: Promise<number | undefined>; readonly clock: () => Date },
): ObjectStore {
  const resultKey = layout.chunkResult(chunk.pipeline, chunk.runId, chunk.index);
  const putJson: ObjectStore['putJson'] = async (putBucket, key, value) => {
    if (putBucket !== bucket || key !== resultKey || typeof value !== 'object' || value === null) {
      return store.putJson(putBucket, key, value);
    }
    const attempt = await timing.attempt;
    const stamped = {
      ...value,
      startedAt: timing.startedAt.toISOString(),
      finishedAt: timing.clock().toISOString(),
      ...(attempt !== undefined ? { attempt } : {}),
    };
    return store.putJson(putBucket, key, stamped);
  };
  return new Proxy(store, {
    get(target, property) {
      if (property === 'putJson') return putJson;
      const member = Reflect.get(target, property, target);
      return typeof member === 'function' ? member.bind(target) : member;
    },
  });
}
