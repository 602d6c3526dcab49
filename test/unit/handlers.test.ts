/**
 * What the Lambda handlers return and accept at the state machine's edges: the Work
 * handler's output goes into the Map Run's results (so it must stay a few bytes), and
 * RecordFailure reads the error where the ASL's RecordFailure state puts it.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Chunk, ChunkFailure, ChunkResult } from '../../functions/contracts.ts';
import { InputError } from '../../functions/errors.ts';
import { MAX_MESSAGE_CHARS } from '../../functions/run/failure-message.ts';
import { recordFailure } from '../../functions/run/record-failure.ts';
import { layout } from '../../functions/storage/layout.ts';
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

/** What the mocked worker does: return `bigResult`, or throw `failWith`. */
const work = vi.hoisted(() => ({ failWith: undefined as Error | undefined }));

vi.mock('../../functions/worker/worker.ts', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../functions/worker/worker.ts')>()),
  processChunk: async () => {
    if (work.failWith) throw work.failWith;
    return bigResult;
  },
}));

/** The Work handler built by its factory on an in-memory store, so its error file can be read back. */
async function workHandler() {
  const { createHandler } = await import('../../functions/handlers/work.ts');
  const store = new MemoryStore();
  const config = testConfig();
  return { store, config, handler: createHandler({ store, config, pipelines, clock: () => new Date(FIXED_TIME) }) };
}
const FIXED_TIME = '2024-03-04T20:01:00.000Z';

describe('the Work handler', () => {
  it('returns a ChunkSummary of a few bytes, not the whole ChunkResult', async () => {
    const { handler } = await workHandler();
    const chunk: Chunk = { runId: 'r', pipeline: 'access-logs', index: 7, parts: [] };
    const out = await handler(chunk);
    expect(out).toEqual({ index: 7, rowsRead: 1000, rowsStaged: 990, rowsRejected: 10 });
    expect(JSON.stringify(out).length).toBeLessThan(100);
  });
});

describe('the Work handler when the chunk fails', () => {
  const chunk: Chunk = {
    runId: 'r-bomb',
    pipeline: 'access-logs',
    index: 3,
    parts: [{ key: 'access-logs/bomb.csv.gz', version: 'e1', size: 900, start: 0, end: 900, compression: 'gzip' }],
  };

  it('rethrows the same error type with a plain, bounded message and no stack frames', async () => {
    const { handler } = await workHandler();
    // A message as a gzip bomb made one: hundreds of KB of NUL bytes, and a stack with absolute paths.
    work.failWith = new InputError(`s3://sluice-input/access-logs/bomb.csv.gz: bad line ${'\0'.repeat(300_000)} end`);
    try {
      const thrown = await handler(chunk, { awsRequestId: 'req-1' }).then(
        () => undefined,
        (error: unknown) => error as Error,
      );
      expect(thrown?.name).toBe('Sluice.InputError');
      expect(thrown?.message.length).toBeLessThanOrEqual(MAX_MESSAGE_CHARS);
      expect(thrown?.message).not.toContain('\0');
      expect(thrown?.message).toContain('s3://sluice-input/access-logs/bomb.csv.gz: bad line \\x00 (×300000) end');
      expect(thrown?.stack).toBe(`Sluice.InputError: ${thrown?.message}`);
    } finally {
      work.failWith = undefined;
    }
  });

  it("leaves the chunk's error (type, plain message, parts, request id, time) in the run folder", async () => {
    const { handler, store, config } = await workHandler();
    work.failWith = new TypeError("Cannot read properties of undefined (reading 'x')");
    try {
      await expect(handler(chunk, { awsRequestId: 'req-2' })).rejects.toThrow(TypeError);
    } finally {
      work.failWith = undefined;
    }
    const failure = await store.getJson<ChunkFailure>(
      config.workingBucket,
      layout.chunkError('access-logs', 'r-bomb', 3),
    );
    expect(failure).toEqual({
      index: 3,
      errorType: 'TypeError',
      message: "Cannot read properties of undefined (reading 'x')",
      parts: [{ key: 'access-logs/bomb.csv.gz', start: 0, end: 900 }],
      requestId: 'req-2',
      failedAt: FIXED_TIME,
      startedAt: FIXED_TIME,
      finishedAt: FIXED_TIME,
      attempt: 1,
    });
  });

  it('counts the tries of a chunk in its run: the error says which try failed', async () => {
    const { handler, store, config } = await workHandler();
    work.failWith = new InputError('bad');
    try {
      await expect(handler(chunk)).rejects.toThrow('bad');
      await expect(handler(chunk)).rejects.toThrow('bad');
    } finally {
      work.failWith = undefined;
    }
    const failure = await store.getJson<ChunkFailure>(
      config.workingBucket,
      layout.chunkError('access-logs', 'r-bomb', 3),
    );
    expect(failure?.attempt).toBe(2);
  });
});

describe("Lambda's handler (the factory applied to the function's environment)", () => {
  beforeEach(() => vi.resetModules());
  afterEach(() => vi.unstubAllEnvs());

  it('names a missing setting, plainly, on the first call', async () => {
    vi.stubEnv('SLUICE_INPUT_BUCKET', 'sluice-input');
    vi.stubEnv('SLUICE_WORKING_BUCKET', '');
    const { handler } = await import('../../functions/handlers/plan.ts');

    const event = { request: { pipeline: 'access-logs', trigger: 'schedule' }, runId: 'r', startedAt: 'x' } as const;
    const thrown = await handler(event).then(
      () => undefined,
      (error: unknown) => error as Error,
    );

    expect(thrown?.name).toBe('Sluice.ConfigError');
    expect(thrown?.message).toMatch(/setting SLUICE_WORKING_BUCKET is missing/);
    expect(thrown?.stack).toBe(`Sluice.ConfigError: ${thrown?.message}`);
  });

  it('reads the pipelines the environment names, once', async () => {
    vi.stubEnv('SLUICE_INPUT_BUCKET', 'sluice-input');
    vi.stubEnv('SLUICE_WORKING_BUCKET', 'sluice-working');
    vi.stubEnv('SLUICE_WAREHOUSE_BUCKET', 'sluice-warehouse');
    vi.stubEnv('SLUICE_PIPELINES_DIR', join(import.meta.dirname, '../../pipelines'));
    const { handler } = await import('../../functions/handlers/work.ts');
    const shared = await import('../../functions/handlers/shared.ts');

    const out = await handler({ runId: 'r', pipeline: 'access-logs', index: 7, parts: [] });
    // Settings changed after the first call are not read again (as on Lambda, where they cannot change).
    vi.stubEnv('SLUICE_PIPELINES_DIR', '/nowhere');

    expect(out).toEqual({ index: 7, rowsRead: 1000, rowsStaged: 990, rowsRejected: 10 });
    expect(shared.fromEnvironment().pipelines.has('access-logs')).toBe(true);
    await expect(handler({ runId: 'r', pipeline: 'no-such-pipeline', index: 1, parts: [] })).rejects.toThrow(
      /not a chunk of a known pipeline/,
    );
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
    // Issue 7 added the plain message and the details to the error; error and cause are as before.
    expect(lambda.error).toMatchObject({ error: 'Sluice.InputError', cause: 'bad header', message: 'bad header.' });
    const bare = await recordFailure({ run: { pipeline: 'access-logs' }, runId: 'r2', startedAt: 'x' }, deps());
    expect(bare.error).toMatchObject({ error: 'Unknown', cause: '' });
    expect(bare.error?.message).toMatch(/failed without saying why/);
    const noCause = await recordFailure({ error: { Error: 'States.Timeout' }, runId: 'r3', startedAt: 'x' }, deps());
    expect(noCause).toMatchObject({ pipeline: 'unknown', error: { error: 'States.Timeout', cause: '' } });
  });

  it("names the failed chunk's file and error when the Distributed Map's cause is AWS's generic one", async () => {
    const d = deps();
    const bucket = d.config.workingBucket;
    const failure = (index: number, message: string): ChunkFailure => ({
      index,
      errorType: 'Sluice.InputError',
      message,
      parts: [{ key: `access-logs/part-${index}.csv`, start: 0, end: 1000 }],
      requestId: `req-${index}`,
      failedAt: '2024-03-04T20:01:00Z',
    });
    await d.store.putJson(
      bucket,
      layout.chunkError('access-logs', 'map-1', 2),
      failure(2, 'the line at byte 90 is longer than 1048576 bytes'),
    );
    // Chunk 0 failed once, was retried and succeeded: its error file is not a failure of the run.
    await d.store.putJson(bucket, layout.chunkError('access-logs', 'map-1', 0), failure(0, 'SlowDown'));
    await d.store.putJson(bucket, layout.chunkResult('access-logs', 'map-1', 0), bigResult);
    const record = await recordFailure(
      {
        run: { pipeline: 'access-logs', trigger: 'object' },
        error: {
          Error: 'States.ExceedToleratedFailureThreshold',
          Cause: 'The specified tolerated failure threshold was exceeded',
        },
        runId: 'map-1',
        startedAt: '2024-03-04T20:00:00Z',
      },
      d,
    );
    expect(record.error?.message).toBe(
      'In access-logs/part-2.csv (bytes 0–1000): the line at byte 90 is longer than 1048576 bytes.',
    );
    expect(record.error?.details).toMatchObject({
      errorType: 'Sluice.InputError',
      stateError: 'States.ExceedToleratedFailureThreshold',
      requestId: 'req-2',
      chunks: [{ index: 2, parts: [{ key: 'access-logs/part-2.csv', start: 0, end: 1000 }] }],
    });
    const stored = await d.store.getJson<{ error?: { message?: string } }>(
      bucket,
      layout.runRecord('access-logs', 'map-1'),
    );
    expect(stored?.error?.message).toBe(record.error?.message);
  });

  it('keeps the record small and readable whatever the cause holds (a stack trace, NUL bytes)', async () => {
    const lambda = JSON.stringify({
      errorType: 'Error',
      errorMessage: `Invalid Input Error: line 2 ${'\u0000'.repeat(400_000)}`,
      trace: ['Error: x', '    at spool (/var/task/functions/worker/worker.ts:192:23)'],
    });
    const record = await recordFailure(
      { run: { pipeline: 'access-logs' }, error: { Error: 'Error', Cause: lambda }, runId: 'big-1', startedAt: 'x' },
      deps(),
    );
    expect(JSON.stringify(record).length).toBeLessThan(4000);
    expect(record.error?.message?.length).toBeLessThanOrEqual(MAX_MESSAGE_CHARS);
    expect(record.error?.message).toContain('\\x00 (×400000)');
    expect(JSON.stringify(record)).not.toMatch(/\/var\/task|at spool|\\u0000/);
  });
});
