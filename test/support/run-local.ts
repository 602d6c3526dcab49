import type { Chunk } from '../../functions/contracts.ts';
import type { Pipeline } from '../../functions/pipeline/definition.ts';
import { plan } from '../../functions/planning/planner.ts';
import { verify } from '../../functions/run/verify.ts';
import { layout } from '../../functions/storage/layout.ts';
import { processChunk } from '../../functions/worker/worker.ts';
import { testConfig } from './fixtures.ts';
import { MemoryStore } from './memory-store.ts';
import { readParquet } from './parquet.ts';

/**
 * Plans, works and verifies one object with the domain code and an in-memory store:
 * the path a run takes, without the state machine. Returns staged rows and numbered rejects.
 */
export async function runObject(p: Pipeline, key: string, body: Buffer | string, chunkSize = 1 << 20) {
  const store = new MemoryStore();
  const config = testConfig({ chunkSizeOverride: chunkSize });
  store.put(config.inputBucket, key, body);
  const pipelines = new Map([[p.name, p]]);
  const state = await plan(
    {
      request: { pipeline: p.name, trigger: 'object', bucket: config.inputBucket, key },
      runId: 'run-t',
      startedAt: 'x',
    },
    { store, config, pipelines },
  );
  const chunks = (await store.getJson<Chunk[]>(config.workingBucket, state.manifest.key)) ?? [];
  const staged: Record<string, unknown>[] = [];
  for (const chunk of chunks) {
    const r = await processChunk(chunk, { store, config, pipeline: p });
    if (r.stagingKey)
      staged.push(...(await readParquet(store.body(config.workingBucket, r.stagingKey), config.tmpDir)));
  }
  const result = await verify(state, { store, config, pipelines, today: () => '2024-06-01' });
  const rejects = await readParquet(store.body(config.workingBucket, layout.rejects(p.name, 'run-t')), config.tmpDir);
  staged.sort((a, b) => Number(a.source_offset) - Number(b.source_offset));
  return { state, chunks, staged, rejects, summary: result.summary };
}
