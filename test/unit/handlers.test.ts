/**
 * What the Lambda handlers return and accept at the state machine's edges: the Work
 * handler's output goes into the Map Run's results (so it must stay a few bytes), and
 * RecordFailure reads the error where the ASL's RecordFailure state puts it.
 */
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import type { Chunk, ChunkResult } from '../../functions/contracts.ts';
import { recordFailure } from '../../functions/run/record-failure.ts';
import { pipelines, testConfig } from '../support/fixtures.ts';
import { MemoryStore } from '../support/memory-store.ts';

/** A chunk result as large as a chunk of 500 parts and 100 days makes it. */
const bigResult: ChunkResult = {
  index: 7,
  rowsRead: 1000,
  rowsStaged: 990,
  rowsRejected: 10,
  days: Array.from({ length: 100 }, (_, i) => `2024-01-${String(1 + (i % 28)).padStart(2, '0')}`),
  parts: Array.from({ length: 500 }, (_, i) => ({
    key: `access-logs/some/long/prefix/file-${i}.csv`,
    start: 0,
    lines: 3,
  })),
  stagingKey: 'staging/access-logs/run_id=r/00007.parquet',
  rejectsKey: 'runs/access-logs/r/rejects/00007.parquet',
};

vi.mock('../../functions/worker/worker.ts', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../functions/worker/worker.ts')>()),
  processChunk: async () => bigResult,
}));

describe('the Work handler', () => {
  it('returns a ChunkSummary of a few bytes, not the whole ChunkResult', async () => {
    vi.stubEnv('SLUICE_INPUT_BUCKET', 'sluice-input');
    vi.stubEnv('SLUICE_WORKING_BUCKET', 'sluice-working');
    vi.stubEnv('SLUICE_WAREHOUSE_BUCKET', 'sluice-warehouse');
    vi.stubEnv('SLUICE_PIPELINES_DIR', join(import.meta.dirname, '../../pipelines'));
    const { handler } = await import('../../functions/handlers/work.ts');
    const chunk: Chunk = { runId: 'r', pipeline: 'access-logs', index: 7, parts: [] };
    const out = await handler(chunk);
    expect(out).toEqual({ index: 7, rowsRead: 1000, rowsStaged: 990, rowsRejected: 10 });
    expect(JSON.stringify(out).length).toBeLessThan(100);
    vi.unstubAllEnvs();
  });
});

describe('recordFailure', () => {
  const deps = () => ({
    store: new MemoryStore(),
    config: testConfig(),
    pipelines,
    now: () => new Date('2024-03-05T00:00:00Z'),
  });

  it('records the error of the RecordFailure payload ({run, error, runId, startedAt})', async () => {
    const d = deps();
    const record = await recordFailure(
      {
        run: { pipeline: 'access-logs', trigger: 'schedule' },
        error: {
          Error: 'Sluice.QueryFailed',
          Cause: 'COLUMN_NOT_FOUND: line 1:8: Column "x" cannot be resolved',
        },
        runId: 'night-1',
        startedAt: '2024-03-04T20:00:00Z',
      },
      d,
    );
    expect(record).toMatchObject({
      status: 'FAILED',
      pipeline: 'access-logs',
      error: { error: 'Sluice.QueryFailed', cause: 'COLUMN_NOT_FOUND: line 1:8: Column "x" cannot be resolved' },
    });
  });

  it('keeps the message of a Lambda error cause, and tolerates a missing error or cause', async () => {
    const lambda = await recordFailure(
      {
        run: { pipeline: 'access-logs' },
        error: {
          Error: 'Sluice.InputError',
          Cause: JSON.stringify({ errorType: 'Sluice.InputError', errorMessage: 'bad header' }),
        },
        runId: 'r1',
        startedAt: 'x',
      },
      deps(),
    );
    expect(lambda.error).toEqual({ error: 'Sluice.InputError', cause: 'bad header' });
    const bare = await recordFailure({ run: { pipeline: 'access-logs' }, runId: 'r2', startedAt: 'x' }, deps());
    expect(bare.error).toEqual({ error: 'Unknown', cause: '' });
    const noCause = await recordFailure({ error: { Error: 'States.Timeout' }, runId: 'r3', startedAt: 'x' }, deps());
    expect(noCause).toMatchObject({ pipeline: 'unknown', error: { error: 'States.Timeout', cause: '' } });
  });
});
