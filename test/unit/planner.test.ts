import { describe, expect, it } from 'vitest';
import type { Chunk } from '../../functions/contracts.ts';
import { InputError, RequestError } from '../../functions/errors.ts';
import { decodeEventKey, plan, splitIntoChunks } from '../../functions/planning/planner.ts';
import { layout } from '../../functions/storage/layout.ts';
import { accessLogs, HEADER, logRow, pipelines, testConfig } from '../support/fixtures.ts';
import { MemoryStore } from '../support/memory-store.ts';

const object = (key: string, size: number) => ({ key, size, version: `v-${key}` });

describe('splitIntoChunks', () => {
  it('cuts a large object into byte ranges that cover it exactly once', () => {
    const chunks = splitIntoChunks([object('access-logs/big.csv', 2500)], accessLogs, 1000, 'r1');
    expect(chunks.map((c) => c.parts.map((p) => [p.start, p.end]))).toEqual([
      [[0, 1000]],
      [[1000, 2000]],
      [[2000, 2500]],
    ]);
  });

  it('keeps gzip objects whole and bin-packs small objects up to the chunk size', () => {
    const chunks = splitIntoChunks(
      [
        object('access-logs/a.csv', 400),
        object('access-logs/b.csv', 500),
        object('access-logs/c.csv.gz', 5000),
        object('access-logs/d.csv', 300),
      ],
      accessLogs,
      1000,
      'r1',
    );
    expect(chunks.map((c) => c.parts.map((p) => `${p.key}:${p.compression}`))).toEqual([
      ['access-logs/c.csv.gz:gzip'],
      ['access-logs/a.csv:none', 'access-logs/b.csv:none'],
      ['access-logs/d.csv:none'],
    ]);
  });

  it('plans no chunk for an empty object', () => {
    expect(splitIntoChunks([object('access-logs/empty.csv', 0)], accessLogs, 1000, 'r1')).toEqual([]);
  });
});

describe('plan', () => {
  const setup = () => {
    const store = new MemoryStore();
    const config = testConfig({ chunkSizeOverride: 1024 });
    return { store, config, deps: { store, config, pipelines } };
  };
  const csv = [HEADER, ...Array.from({ length: 100 }, (_, i) => logRow(i))].join('\n');

  it('writes the manifest to S3 and returns only a summary', async () => {
    const { store, deps } = setup();
    store.put('sluice-input', 'access-logs/day1.csv', csv);
    const state = await plan(
      {
        request: { pipeline: 'access-logs', trigger: 'object', bucket: 'sluice-input', key: 'access-logs/day1.csv' },
        runId: 'run-1',
        startedAt: '2024-03-04T00:00:00Z',
      },
      deps,
    );
    const manifest = await store.getJson<Chunk[]>('sluice-working', layout.manifest('access-logs', 'run-1'));
    expect(state.chunks).toBe(Math.ceil(Buffer.byteLength(csv) / 1024));
    expect(manifest).toHaveLength(state.chunks);
    expect(state.setup.length).toBeGreaterThan(0);
    expect(JSON.stringify(state).length).toBeLessThan(8000);
  });

  it('fails a file whose header does not match, naming the file and the expected header', async () => {
    const { store, deps } = setup();
    store.put('sluice-input', 'access-logs/wrong.csv', 'when,who,what\n1,2,3\n');
    await expect(
      plan(
        {
          request: { pipeline: 'access-logs', trigger: 'object', bucket: 'sluice-input', key: 'access-logs/wrong.csv' },
          runId: 'r2',
          startedAt: 'x',
        },
        deps,
      ),
    ).rejects.toThrow(
      /s3:\/\/sluice-input\/access-logs\/wrong.csv is not a CSV file of pipeline access-logs: line 1 should be the header "event_time,user_id/,
    );
  });

  it('refuses an object outside the input bucket or prefix, and an unknown pipeline', async () => {
    const { store, deps } = setup();
    store.put('sluice-input', 'other/x.csv', csv);
    const run = (request: object) => plan({ request: request as never, runId: 'r3', startedAt: 'x' }, deps);
    await expect(
      run({ pipeline: 'access-logs', trigger: 'object', bucket: 'sluice-input', key: 'other/x.csv' }),
    ).rejects.toThrow(RequestError);
    await expect(
      run({ pipeline: 'access-logs', trigger: 'object', bucket: 'elsewhere', key: 'access-logs/x.csv' }),
    ).rejects.toThrow(RequestError);
    await expect(run({ pipeline: 'nope', trigger: 'schedule' })).rejects.toThrow('unknown pipeline "nope"');
    await expect(
      run({ pipeline: 'access-logs', trigger: 'object', bucket: 'sluice-input', key: 'access-logs/gone.csv' }),
    ).rejects.toThrow(InputError);
  });

  it('skips objects whose version is already loaded on a scheduled run', async () => {
    const { store, deps } = setup();
    store.put('sluice-input', 'access-logs/a.csv', csv);
    store.put('sluice-input', 'access-logs/b.csv', csv.replace('u1', 'u9'));
    const a = await store.head('sluice-input', 'access-logs/a.csv');
    await store.putJson('sluice-working', layout.ledger('access-logs', 'access-logs/a.csv'), {
      key: a?.key,
      version: a?.version,
      runId: 'old',
    });
    const state = await plan(
      { request: { pipeline: 'access-logs', trigger: 'schedule' }, runId: 'r4', startedAt: 'x' },
      deps,
    );
    expect(state.inputs).toBe(1);
    const manifest = await store.getJson<Chunk[]>('sluice-working', state.manifest.key);
    expect(new Set(manifest?.flatMap((c) => c.parts.map((p) => p.key)))).toEqual(new Set(['access-logs/b.csv']));
  });
});

describe('decodeEventKey', () => {
  it('decodes URL-encoded keys as EventBridge sends them', () => {
    expect(decodeEventKey('access-logs/my+file%C3%A9.csv')).toBe('access-logs/my fileé.csv');
  });
});

describe('a refused file', () => {
  it('fails its own run, then scheduled runs skip that version until it changes', async () => {
    const store = new MemoryStore();
    const config = testConfig();
    const deps = { store, config, pipelines };
    const good = [HEADER, logRow(1)].join('\n');
    store.put('sluice-input', 'access-logs/bad.csv', 'name,price\napple,3\n');
    store.put('sluice-input', 'access-logs/good.csv', good);
    const scheduled = (runId: string) =>
      plan({ request: { pipeline: 'access-logs', trigger: 'schedule' }, runId, startedAt: 'x' }, deps);

    await expect(scheduled('night-1')).rejects.toThrow(/access-logs\/bad\.csv is not a CSV file/);
    const next = await scheduled('night-2');
    expect(next.inputs).toBe(1);

    store.put('sluice-input', 'access-logs/bad.csv', good);
    expect((await scheduled('night-3')).inputs).toBe(2);
  });
});
