/**
 * Objects read whole (small ones packed together, compressed ones) are checked by the worker
 * as it reads them, not by the planner with one GET each: a wrong header or a compression
 * that is not what the name says refuses the object (a refused marker, the chunk fails
 * naming it), and headers that order the columns differently load side by side in one chunk.
 */
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { Chunk, ChunkResult } from '../../functions/contracts.ts';
import { RefusedInputError } from '../../functions/errors.ts';
import { keyHash, readLedger } from '../../functions/ledger/ledger.ts';
import { plan } from '../../functions/planning/planner.ts';
import { processChunk } from '../../functions/worker/worker.ts';
import { accessLogs, HEADER, logRow, testConfig } from '../support/fixtures.ts';
import { MemoryStore } from '../support/memory-store.ts';
import { readParquet } from '../support/parquet.ts';

const config = testConfig();

/** Plans a scheduled run, then works its chunks one after another (the first failure stops it, as the Map would). */
async function scheduledRun(store: MemoryStore, runId: string, p = accessLogs) {
  const deps = { store, config, pipelines: new Map([[p.name, p]]) };
  const state = await plan({ request: { pipeline: p.name, trigger: 'schedule' }, runId, startedAt: 'x' }, deps);
  const chunks = (await store.getJson<Chunk[]>(config.workingBucket, state.manifest.key)) ?? [];
  const results: ChunkResult[] = [];
  for (const chunk of chunks) results.push(await processChunk(chunk, { store, config, pipeline: p }));
  return { state, chunks, results };
}

async function refusedVersions(store: MemoryStore, keys: string[]) {
  const refused = await readLedger(store, config.workingBucket, 'access-logs', 'refused');
  const out: string[] = [];
  for (const key of keys) {
    const version = (await store.head(config.inputBucket, key))?.version ?? '';
    if (refused.hasHash(keyHash(key), version)) out.push(key);
  }
  return out;
}

/** An access-log line with its first two fields swapped (user_id first). */
const swapped = (line: string) => {
  const [a, b, ...rest] = line.split(',');
  return [b, a, ...rest].join(',');
};

describe('objects read whole are checked by their worker', () => {
  it('plans them without reading them: whole, gzip and zstd objects cost no request at Plan', async () => {
    const store = new MemoryStore();
    const text = `${HEADER}\n${logRow(1)}\n`;
    store.put(config.inputBucket, 'access-logs/a.csv', text);
    store.put(config.inputBucket, 'access-logs/b.csv.gz', gzipSync(text));
    store.put(config.inputBucket, 'access-logs/c.csv.zst', zstdCompressSync(Buffer.from(text)));
    const withZstd = { ...accessLogs, input: { ...accessLogs.input, suffixes: ['.csv', '.csv.gz', '.csv.zst'] } };
    const deps = { store, config, pipelines: new Map([['access-logs', withZstd]]) };
    const state = await plan(
      { request: { pipeline: 'access-logs', trigger: 'schedule' }, runId: 'r1', startedAt: 'x' },
      deps,
    );
    expect(state.inputs).toBe(3);
    expect(store.reads).toEqual([]);
    const { results } = await scheduledRun(store, 'r2', withZstd);
    expect(results.reduce((sum, r) => sum + r.rowsStaged, 0)).toBe(3);
  });

  it('refuses a file whose header does not match, naming the file and the expected header, and marks it refused', async () => {
    const store = new MemoryStore();
    store.put(config.inputBucket, 'access-logs/wrong.csv', 'when,who,what\n1,2,3\n');
    const run = scheduledRun(store, 'r1');
    await expect(run).rejects.toThrow(RefusedInputError);
    await expect(run).rejects.toThrow(
      /^s3:\/\/sluice-input\/access-logs\/wrong.csv is not a CSV file of pipeline access-logs: line 1 should be the header "event_time,user_id/,
    );
    expect(await refusedVersions(store, ['access-logs/wrong.csv'])).toEqual(['access-logs/wrong.csv']);
  });

  it('refuses a gzip file that is not gzip, from its first bytes', async () => {
    const store = new MemoryStore();
    store.put(config.inputBucket, 'access-logs/fake.csv.gz', `${HEADER}\n${logRow(1)}\n`);
    await expect(scheduledRun(store, 'r1')).rejects.toThrow('is named as gzip but its content is not gzip-compressed');
    expect(await refusedVersions(store, ['access-logs/fake.csv.gz'])).toEqual(['access-logs/fake.csv.gz']);
  });

  it('refuses every bad object of a chunk and names the first and how many others; the good ones are not marked', async () => {
    const store = new MemoryStore();
    store.put(config.inputBucket, 'access-logs/1-bad.csv', 'name,price\napple,3\n');
    store.put(config.inputBucket, 'access-logs/2-good.csv', `${HEADER}\n${logRow(1)}\n`);
    store.put(config.inputBucket, 'access-logs/3-bad.csv', 'a;b\n1;2\n');
    const keys = ['access-logs/1-bad.csv', 'access-logs/2-good.csv', 'access-logs/3-bad.csv'];
    await expect(scheduledRun(store, 'r1')).rejects.toThrow(
      /access-logs\/1-bad\.csv is not a CSV file .* \(and 1 more refused objects: access-logs\/3-bad\.csv\)$/,
    );
    expect(await refusedVersions(store, keys)).toEqual(['access-logs/1-bad.csv', 'access-logs/3-bad.csv']);
  });

  it('fails its own run, then scheduled runs skip that version until it changes', async () => {
    const store = new MemoryStore();
    const good = `${HEADER}\n${logRow(1)}\n`;
    store.put(config.inputBucket, 'access-logs/bad.csv', 'name,price\napple,3\n');
    store.put(config.inputBucket, 'access-logs/good.csv', good);

    await expect(scheduledRun(store, 'night-1')).rejects.toThrow(/access-logs\/bad\.csv is not a CSV file/);
    const next = await scheduledRun(store, 'night-2');
    expect(next.state.inputs).toBe(1);
    expect(next.results.map((r) => r.rowsStaged)).toEqual([1]);

    store.put(config.inputBucket, 'access-logs/bad.csv', good);
    expect((await scheduledRun(store, 'night-3')).state.inputs).toBe(2);
  });
});

describe('headers in different orders in one chunk', () => {
  it('loads each object by its own header, with the lines and reasons of its own rejects', async () => {
    const store = new MemoryStore();
    const a = [HEADER, logRow(1), logRow(2)];
    const b = [swapped(HEADER), swapped(logRow(3)), swapped(logRow(4, { status: 'abc' })), swapped(logRow(5))];
    store.put(config.inputBucket, 'access-logs/a.csv', `${a.join('\n')}\n`);
    store.put(config.inputBucket, 'access-logs/b.csv', `${b.join('\n')}\n`);
    store.put(config.inputBucket, 'access-logs/c.csv', `${HEADER}\n${logRow(6)}\n`);

    const { chunks, results } = await scheduledRun(store, 'r1');

    expect(chunks).toHaveLength(1);
    expect(results[0]).toMatchObject({ rowsRead: 6, rowsStaged: 5, rowsRejected: 1 });
    expect(results[0]?.parts.map((p) => [p.key, p.lines])).toEqual([
      ['access-logs/a.csv', 3],
      ['access-logs/b.csv', 4],
      ['access-logs/c.csv', 2],
    ]);
    const result = results[0] as ChunkResult;
    const staged = await readParquet(store.body(config.workingBucket, result.stagingKey ?? ''), config.tmpDir);
    const byUser = staged.map((r) => [r.source_key, r.session_id, r.user_id]).sort();
    expect(byUser).toEqual([
      ['access-logs/a.csv', 's1', 'u1'],
      ['access-logs/a.csv', 's2', 'u2'],
      ['access-logs/b.csv', 's3', 'u3'],
      ['access-logs/b.csv', 's5', 'u5'],
      ['access-logs/c.csv', 's6', 'u6'],
    ]);
    const rejects = await readParquet(store.body(config.workingBucket, result.rejectsKey ?? ''), config.tmpDir);
    expect(rejects).toEqual([
      expect.objectContaining({
        source_key: 'access-logs/b.csv',
        local_line: '3',
        column_name: 'status',
        raw_line: b[2],
      }),
    ]);
  });

  it('loads gzip, zstd and plain objects of a run, each by its own header', async () => {
    const store = new MemoryStore();
    const p = { ...accessLogs, input: { ...accessLogs.input, suffixes: ['.csv', '.csv.gz', '.csv.zst'] } };
    store.put(config.inputBucket, 'access-logs/a.csv.gz', gzipSync(`${HEADER}\n${logRow(1)}\n${logRow(2)}\n`));
    store.put(
      config.inputBucket,
      'access-logs/b.csv.zst',
      zstdCompressSync(Buffer.from(`${swapped(HEADER)}\n${swapped(logRow(3))}\n`)),
    );
    store.put(config.inputBucket, 'access-logs/c.csv', `${HEADER}\n${logRow(4)}\n`);

    const { chunks, results } = await scheduledRun(store, 'r1', p);

    expect(chunks.map((c) => c.parts.map((part) => part.compression))).toEqual([['gzip'], ['zstd'], ['none']]);
    const staged = [];
    for (const r of results)
      staged.push(...(await readParquet(store.body(config.workingBucket, r.stagingKey ?? ''), config.tmpDir)));
    expect(staged.map((r) => [r.source_key, r.session_id, r.user_id]).sort()).toEqual([
      ['access-logs/a.csv.gz', 's1', 'u1'],
      ['access-logs/a.csv.gz', 's2', 'u2'],
      ['access-logs/b.csv.zst', 's3', 'u3'],
      ['access-logs/c.csv', 's4', 'u4'],
    ]);
  });
});
