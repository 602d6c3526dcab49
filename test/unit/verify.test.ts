import { describe, expect, it } from 'vitest';
import type { Chunk, RunState } from '../../functions/contracts.ts';
import { plan } from '../../functions/planning/planner.ts';
import { verify } from '../../functions/run/verify.ts';
import { layout } from '../../functions/storage/layout.ts';
import { processChunk } from '../../functions/worker/worker.ts';
import { accessLogs, HEADER, logRow, pipelines, testConfig } from '../support/fixtures.ts';
import { MemoryStore } from '../support/memory-store.ts';
import { readParquet } from '../support/parquet.ts';

async function planAndWork(text: string, chunkSize: number, trigger: 'object' | 'schedule' = 'object') {
  const store = new MemoryStore();
  const config = testConfig({ chunkSizeOverride: chunkSize });
  store.put(config.inputBucket, 'access-logs/f.csv', text);
  const request =
    trigger === 'object'
      ? ({ pipeline: 'access-logs', trigger, bucket: config.inputBucket, key: 'access-logs/f.csv' } as const)
      : ({ pipeline: 'access-logs', trigger } as const);
  const state = await plan(
    { request, runId: 'run-9', startedAt: '2024-03-05T00:00:00Z' },
    { store, config, pipelines },
  );
  const chunks = (await store.getJson<Chunk[]>(config.workingBucket, state.manifest.key)) ?? [];
  return { store, config, state, chunks };
}

describe('verify', () => {
  const lines = [
    HEADER,
    ...Array.from({ length: 200 }, (_, i) => (i % 50 === 7 ? logRow(i, { status: 'x' }) : logRow(i))),
  ];
  const text = lines.join('\n');

  it('numbers rejected lines within the file across chunks and returns the load and derive SQL', async () => {
    const { store, config, state, chunks } = await planAndWork(text, 2000);
    for (const chunk of chunks) await processChunk(chunk, { store, config, pipeline: accessLogs });
    const result = await verify(state, { store, config, pipelines, today: () => '2024-03-05' });
    expect(result.summary).toMatchObject({ chunks: chunks.length, rowsRead: 200, rowsLoaded: 196, rowsRejected: 4 });
    expect(result.summary.days).toEqual(['2024-03-01', '2024-03-02', '2024-03-03']);
    const rejects = await readParquet(
      store.body(config.workingBucket, layout.rejects('access-logs', 'run-9')),
      config.tmpDir,
    );
    // Data row i is on line i + 2 (line 1 is the header).
    expect(rejects.map((r) => Number(r.line_number))).toEqual([9, 59, 109, 159]);
    expect(rejects.map((r) => r.raw_line)).toEqual([lines[8], lines[58], lines[108], lines[158]]);
    expect(result.load).toHaveLength(2);
    expect(result.load[0]).toContain("run_id = 'run-9'");
    expect(result.derive).toHaveLength(1);
    expect(result.derive[0]).toContain("DATE '2024-03-01', DATE '2024-03-02', DATE '2024-03-03'");
  });

  it('fails when a chunk has no result', async () => {
    const { store, config, state, chunks } = await planAndWork(text, 2000);
    for (const chunk of chunks.slice(1)) await processChunk(chunk, { store, config, pipeline: accessLogs });
    await expect(verify(state, { store, config, pipelines, today: () => '2024-03-05' })).rejects.toThrow(
      /1 of \d+ chunks have no result \(0\)/,
    );
  });

  it('rebuilds yesterday on a scheduled run even when nothing new arrived', async () => {
    const { store, config } = await planAndWork(text, 2000);
    const state: RunState = {
      ...(await plan(
        { request: { pipeline: 'access-logs', trigger: 'schedule' }, runId: 'run-10', startedAt: 'x' },
        { store, config, pipelines },
      )),
      chunks: 0,
    };
    await store.putJson(config.workingBucket, state.manifest.key, []);
    const result = await verify(state, { store, config, pipelines, today: () => '2024-03-05' });
    expect(result.load).toEqual([]);
    expect(result.derive[0]).toContain("DATE '2024-03-04'");
  });
});
