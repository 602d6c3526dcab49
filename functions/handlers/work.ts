import type { Chunk, ChunkSummary } from '../contracts.ts';
import { RequestError } from '../errors.ts';
import { chunkSummary, processChunk } from '../worker/worker.ts';
import { config, pipelines, store } from './shared.ts';

/**
 * Work state (one Distributed Map item): parse, validate and stage one chunk. Returns a
 * few counts only: the full ChunkResult is in the run's folder, and every child's output
 * ends up in the Map Run's results.
 */
export async function handler(chunk: Chunk): Promise<ChunkSummary> {
  const pipeline = pipelines.get(chunk?.pipeline);
  if (!pipeline || !Array.isArray(chunk.parts)) {
    throw new RequestError(`not a chunk of a known pipeline: ${JSON.stringify(chunk).slice(0, 200)}`);
  }
  return chunkSummary(await processChunk(chunk, { store, config, pipeline }));
}
