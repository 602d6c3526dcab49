import type { Chunk, ChunkResult } from '../contracts.ts';
import { RequestError } from '../errors.ts';
import { processChunk } from '../worker/worker.ts';
import { config, pipelines, store } from './shared.ts';

/** Work state (one Distributed Map item): parse, validate and stage one chunk. */
export async function handler(chunk: Chunk): Promise<ChunkResult> {
  const pipeline = pipelines.get(chunk?.pipeline);
  if (!pipeline || !Array.isArray(chunk.parts)) {
    throw new RequestError(`not a chunk of a known pipeline: ${JSON.stringify(chunk).slice(0, 200)}`);
  }
  return processChunk(chunk, { store, config, pipeline });
}
