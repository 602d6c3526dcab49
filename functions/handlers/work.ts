import type { Chunk, ChunkFailure, ChunkSummary } from '../contracts.ts';
import { RequestError } from '../errors.ts';
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
  return async (chunk, context) => {
    const pipeline = pipelines.get(chunk?.pipeline);
    if (!pipeline || !Array.isArray(chunk.parts)) {
      throw toPlainError(
        new RequestError(`not a chunk of a known pipeline: ${excerpt(JSON.stringify(chunk) ?? '', 200)}`),
      );
    }
    try {
      return chunkSummary(await processChunk(chunk, { store, config, pipeline }));
    } catch (error) {
      const plain = toPlainError(error);
      await recordChunkFailure(store, config.workingBucket, chunk, plain, context?.awsRequestId, clock());
      throw plain;
    }
  };
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
): Promise<void> {
  try {
    const failure: ChunkFailure = {
      index: chunk.index,
      errorType: error.name,
      message: error.message,
      parts: chunk.parts.map((p) => ({ key: p.key, start: p.start, end: p.end })),
      ...(requestId ? { requestId } : {}),
      failedAt: failedAt.toISOString(),
    };
    await objects.putJson(bucket, layout.chunkError(chunk.pipeline, assertRunId(chunk.runId), chunk.index), failure);
  } catch (writeError) {
    console.error(`could not record the error of chunk ${chunk.index}: ${toPlainError(writeError).message}`);
  }
}
