import { describe, expect, it } from 'vitest';
import type { Chunk } from '../../functions/contracts.ts';
import { InputError, RequestError } from '../../functions/errors.ts';
import { markLoaded } from '../../functions/ledger/ledger.ts';
import { tableShapes } from '../../functions/pipeline/evolution.ts';
import {
  decodeEventKey,
  MAX_CHUNK_JSON_BYTES,
  MAX_PARTS_PER_CHUNK,
  plan,
  splitIntoChunks,
} from '../../functions/planning/planner.ts';
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

  it('caps each bin-packed chunk: 5,000 small objects make manifest items under the cap, with no columns (each part is read with its own header)', () => {
    const columns = HEADER.split(',');
    const objects = Array.from({ length: 5000 }, (_, i) => ({
      ...object(`access-logs/2024/03/01/host-${String(i).padStart(5, '0')}/events-part-${i}.csv`, 300),
      version: 'd41d8cd98f00b204e9800998ecf8427e',
      columns,
    }));
    const chunks = splitIntoChunks(objects, accessLogs, 64 * 1024 * 1024, 'run-with-a-long-name-0123456789');
    expect(chunks.flatMap((c) => c.parts.map((p) => p.key))).toEqual(objects.map((o) => o.key));
    for (const chunk of chunks) {
      expect(Buffer.byteLength(JSON.stringify(chunk))).toBeLessThanOrEqual(MAX_CHUNK_JSON_BYTES);
      expect(chunk.parts.length).toBeLessThanOrEqual(MAX_PARTS_PER_CHUNK);
      expect(chunk.columns).toBeUndefined();
      expect(chunk.parts.every((p) => p.columns === undefined)).toBe(true);
    }
    // Well under the 256 KiB Step Functions allows a child's input.
    expect(MAX_CHUNK_JSON_BYTES).toBeLessThanOrEqual((256 * 1024) / 2);
  });

  it('keeps each gzip and zstd object alone (a corrupt one fails its chunk), and packs plain ones', () => {
    const chunks = splitIntoChunks(
      [
        object('access-logs/a.csv.gz', 300),
        object('access-logs/b.csv.zst', 300),
        object('access-logs/c.csv', 300),
        object('access-logs/d.csv.gz', 5000),
        object('access-logs/e.csv', 300),
      ],
      accessLogs,
      1000,
      'r1',
    );
    expect(chunks.map((c) => c.parts.map((p) => [p.key, p.start, p.end, p.compression]))).toEqual([
      [['access-logs/a.csv.gz', 0, 300, 'gzip']],
      [['access-logs/b.csv.zst', 0, 300, 'zstd']],
      [['access-logs/d.csv.gz', 0, 5000, 'gzip']],
      [
        ['access-logs/c.csv', 0, 300, 'none'],
        ['access-logs/e.csv', 0, 300, 'none'],
      ],
    ]);
  });

  it('refuses an object whose own part cannot fit in a manifest item, naming it', () => {
    const columns = Array.from({ length: 20_000 }, (_, i) => `column_number_${i}`);
    expect(() =>
      splitIntoChunks([{ ...object('access-logs/wide.csv', 100), columns }], accessLogs, 1000, 'r1'),
    ).toThrow(/input object access-logs\/wide\.csv cannot be planned: .*header of 20000 columns/);
    expect(() =>
      splitIntoChunks([{ ...object('access-logs/wide.csv', 100), columns }], accessLogs, 1000, 'r1'),
    ).toThrow(InputError);
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
    await markLoaded(store, 'sluice-working', 'access-logs', a ? [a] : [], 'old', 'x');
    const state = await plan(
      { request: { pipeline: 'access-logs', trigger: 'schedule' }, runId: 'r4', startedAt: 'x' },
      deps,
    );
    expect(state.inputs).toBe(1);
    const manifest = await store.getJson<Chunk[]>('sluice-working', state.manifest.key);
    expect(new Set(manifest?.flatMap((c) => c.parts.map((p) => p.key)))).toEqual(new Set(['access-logs/b.csv']));
  });
});

describe('inspection', () => {
  it('reads the header of an object it cuts into ranges, once, and every range carries its columns', async () => {
    const store = new MemoryStore();
    const config = testConfig({ chunkSizeOverride: 100_000 });
    const rows = Array.from({ length: 20_000 }, (_, i) => logRow(i)).join('\n');
    store.put(config.inputBucket, 'access-logs/big.csv', `${HEADER}\n${rows}\n`);
    store.put(config.inputBucket, 'access-logs/small.csv', `${HEADER}\n${logRow(1)}\n`);
    const state = await plan(
      { request: { pipeline: 'access-logs', trigger: 'schedule' }, runId: 'r1', startedAt: 'x' },
      { store, config, pipelines },
    );
    expect(state.inputs).toBe(2);
    expect(store.reads).toEqual([
      {
        key: 'access-logs/big.csv',
        start: 0,
        end: 64 * 1024,
        ifMatch: (await store.head(config.inputBucket, 'access-logs/big.csv'))?.version,
      },
    ]);
    const manifest = (await store.getJson<Chunk[]>(config.workingBucket, state.manifest.key)) ?? [];
    const cut = manifest.filter((c) => c.parts[0]?.key === 'access-logs/big.csv');
    expect(cut.length).toBeGreaterThan(10);
    expect(cut.every((c) => c.columns?.join(',') === HEADER)).toBe(true);
  });

  it('refuses an object it cuts whose header does not match, before any worker starts', async () => {
    const store = new MemoryStore();
    const config = testConfig({ chunkSizeOverride: 10 });
    store.put(config.inputBucket, 'access-logs/wrong.csv', 'when,who,what\n1,2,3\n');
    await expect(
      plan(
        { request: { pipeline: 'access-logs', trigger: 'schedule' }, runId: 'r1', startedAt: 'x' },
        { store, config, pipelines },
      ),
    ).rejects.toThrow(
      /s3:\/\/sluice-input\/access-logs\/wrong.csv is not a CSV file of pipeline access-logs: line 1 should be the header "event_time,user_id/,
    );
  });
});

describe('decodeEventKey', () => {
  it('decodes URL-encoded keys as EventBridge sends them', () => {
    expect(decodeEventKey('access-logs/my+file%C3%A9.csv')).toBe('access-logs/my fileé.csv');
  });
});

describe('plan: tables whose definition changed since their setup', () => {
  const schedule = (deps: Parameters<typeof plan>[1], runId: string) =>
    plan({ request: { pipeline: 'access-logs', trigger: 'schedule' }, runId, startedAt: 'x' }, deps);
  const withApplied = (drop: (columns: { name: string; type: string }[]) => { name: string; type: string }[]) => {
    const store = new MemoryStore();
    const config = testConfig();
    const shapes = tableShapes(accessLogs);
    const main = shapes.tables[0];
    if (!main) throw new Error('no main table');
    const applied = { ...shapes, tables: [{ ...main, columns: drop([...main.columns]) }, ...shapes.tables.slice(1)] };
    store.put(config.workingBucket, layout.appliedTables('access-logs'), JSON.stringify(applied));
    return { store, deps: { store, config, pipelines } };
  };

  it('adds the columns appended to the definition with ALTER TABLE ... ADD COLUMNS', async () => {
    const { deps } = withApplied((columns) => columns.slice(0, -1));

    const state = await schedule(deps, 'r-evolve');

    expect(state.setup.some((sql) => /^ALTER TABLE `access_logs` ADD COLUMNS \(`country` string\)/.test(sql))).toBe(
      true,
    );
  });

  it('refuses any other change, naming the table and the column', async () => {
    const { deps } = withApplied((columns) => columns.map((c) => (c.name === 'status' ? { ...c, type: 'bigint' } : c)));

    await expect(schedule(deps, 'r-retype')).rejects.toThrow(/access_logs.*status/);
  });

  it('runs no setup once the shapes recorded by Finish match the definition', async () => {
    const { store, deps } = withApplied((columns) => columns);
    const first = await schedule(deps, 'r-first');
    store.put(deps.config.workingBucket, layout.setupMarker('access-logs', first.setupHash), '{}');

    expect((await schedule(deps, 'r-second')).setup).toEqual([]);
  });
});
