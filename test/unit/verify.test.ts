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
    const sqlOf = (step: string) => result.statements.filter((x) => x.step === step).map((x) => x.sql);
    expect(sqlOf('load')).toHaveLength(2);
    expect(sqlOf('load')[0]).toMatch(/run_id"? = 'run-9'/);
    expect(sqlOf('derive')).toHaveLength(1);
    expect(sqlOf('derive')[0]).toContain("DATE '2024-03-01', DATE '2024-03-02', DATE '2024-03-03'");
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
    expect(result.statements.filter((x) => x.step === 'load')).toEqual([]);
    expect(result.statements.find((x) => x.step === 'derive')?.sql).toContain("DATE '2024-03-04'");
  });

  it('returns the statements in order: setup DDL, loads, derives, then maintenance on a scheduled run only', async () => {
    // The steps in statement order, runs of one step collapsed: each step must come in one block.
    const steps = (r: { statements: readonly { step: string }[] }) =>
      r.statements.map((x) => x.step).filter((step, i, all) => i === 0 || all[i - 1] !== step);
    // An upload's run: its setup DDL (from Plan), loads and derives; no maintenance.
    const upload = await planAndWork(text, 2000);
    for (const chunk of upload.chunks) {
      await processChunk(chunk, { store: upload.store, config: upload.config, pipeline: accessLogs });
    }
    const deps = { store: upload.store, config: upload.config, pipelines, today: () => '2024-03-05' };
    const first = await verify(upload.state, deps);
    expect(upload.state.setup.length).toBeGreaterThan(0);
    expect(steps(first)).toEqual(['setup', 'load', 'derive']);
    expect(first.statements.slice(0, upload.state.setup.length).map((x) => x.sql)).toEqual(upload.state.setup);
    expect(first.statements.every((x) => typeof x.sql === 'string' && x.sql.length > 0)).toBe(true);
    // A scheduled run whose setup already ran: loads and derives, then OPTIMIZE and VACUUM.
    const scheduled = await planAndWork(text, 2000, 'schedule');
    for (const chunk of scheduled.chunks) {
      await processChunk(chunk, { store: scheduled.store, config: scheduled.config, pipeline: accessLogs });
    }
    const second = await verify(
      { ...scheduled.state, setup: [] },
      { ...deps, store: scheduled.store, config: scheduled.config },
    );
    expect(steps(second)).toEqual(['load', 'derive', 'maintain']);
    const maintain = second.statements.filter((x) => x.step === 'maintain').map((x) => x.sql);
    expect(maintain.some((sql) => sql.startsWith('OPTIMIZE'))).toBe(true);
    expect(maintain.some((sql) => sql.startsWith('VACUUM'))).toBe(true);
  });

  it('names the files with the most rejects, their counts and first reject, when too many rows are rejected', async () => {
    const store = new MemoryStore();
    const config = testConfig({ chunkSizeOverride: 2000 });
    const bad = (n: number) => Array.from({ length: n }, (_, i) => logRow(i, { status: 'OK' }));
    const good = (n: number) => Array.from({ length: n }, (_, i) => logRow(1000 + i));
    store.put(config.inputBucket, 'access-logs/mostly-bad.csv', [HEADER, ...good(2), ...bad(30)].join('\n'));
    store.put(config.inputBucket, 'access-logs/some-bad.csv', [HEADER, ...good(8), ...bad(4)].join('\n'));
    const state = await plan(
      {
        request: {
          pipeline: 'access-logs',
          trigger: 'manual',
          keys: ['access-logs/mostly-bad.csv', 'access-logs/some-bad.csv'],
        },
        runId: 'run-rejects',
        startedAt: '2024-03-05T00:00:00Z',
      },
      { store, config, pipelines },
    );
    const chunks = (await store.getJson<Chunk[]>(config.workingBucket, state.manifest.key)) ?? [];
    for (const chunk of chunks) await processChunk(chunk, { store, config, pipeline: accessLogs });
    const error = await verify(state, { store, config, pipelines, today: () => '2024-03-05' }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.name).toBe('Sluice.VerifyError');
    expect(error?.message).toMatch(/^34 of 44 rows \(77\.3%\) were rejected, more than pipeline access-logs allows/);
    // The files, most rejects first, each with its count and where its first reject is.
    expect(error?.message).toContain(
      'Most rejects: access-logs/mostly-bad.csv: 30 rejected (first at line 4, column status:',
    );
    expect(error?.message).toContain('access-logs/some-bad.csv: 4 rejected (first at line 10, column status:');
    expect(error?.message).toMatch(/raise rejects\.maxShare/);
    expect(error?.message).not.toMatch(/^run /);
  });
});
