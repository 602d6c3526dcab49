/**
 * What a user reads while a run goes on (the progress line, a pure function of the Map run's
 * counts) and in `sluice logs` (a chunk's status from its files, the events as lines).
 */
import { describe, expect, it } from 'vitest';
import { chunkLog, eventLines } from '../../cli/logs.ts';
import { renderRunProgress, roughDuration } from '../../cli/progress.ts';
import type { ChunkFailure, ChunkResult } from '../../functions/contracts.ts';

describe('the progress line of a run', () => {
  it('shows chunks ended of the total, the failed and running ones, rows, MB/s and the time left', () => {
    const line = renderRunProgress({
      total: 40,
      succeeded: 9,
      failed: 1,
      running: 4,
      rows: 1_234_567,
      bytes: 400_000_000,
      elapsedMs: 20_000,
    });
    // 10 of 40 chunks ended: a quarter of the bar, a quarter of 400 MB in 20 s, three times 20 s to go.
    expect(line).toBe(
      '[######------------------] 10/40 chunks (1 failed, 4 running), 1,234,567 rows, 5.0 MB/s, ETA 1 min 00 s',
    );
  });

  it('leaves out what is not known yet: no rate and no ETA before a chunk ends, no rows before a result is read', () => {
    expect(renderRunProgress({ total: 12, succeeded: 0, failed: 0, running: 8, elapsedMs: 1_500 })).toBe(
      '[------------------------] 0/12 chunks (8 running)',
    );
  });

  it('is full and without an ETA when every chunk ended', () => {
    expect(
      renderRunProgress({
        total: 3,
        succeeded: 3,
        failed: 0,
        running: 0,
        rows: 30,
        bytes: 3_000_000,
        elapsedMs: 2_000,
      }),
    ).toBe('[########################] 3/3 chunks, 30 rows, 1.5 MB/s');
  });

  it('has no bar in plain lines (not a terminal), with the share in percent', () => {
    expect(renderRunProgress({ total: 7, succeeded: 2, failed: 0, running: 5, elapsedMs: 4_000 }, { bar: false })).toBe(
      '2/7 chunks (28%) (5 running), ETA 10 s',
    );
  });

  it('says durations at a glance', () => {
    expect([0, 42_400, 185_000, 7_620_000].map(roughDuration)).toEqual(['0 s', '42 s', '3 min 05 s', '2 h 07 min']);
  });
});

const result = (attempt: number): ChunkResult => ({
  index: 4,
  rowsRead: 10,
  rowsStaged: 9,
  rowsRejected: 1,
  days: [],
  parts: [],
  stagingKey: null,
  rejectsKey: null,
  startedAt: '2024-03-04T20:00:00.000Z',
  finishedAt: '2024-03-04T20:00:02.500Z',
  attempt,
});

const failure = (attempt: number): ChunkFailure => ({
  index: 4,
  errorType: 'Sluice.TransientError',
  message: 'SlowDown',
  parts: [{ key: 'access-logs/a.csv', start: 0, end: 100 }],
  failedAt: '2024-03-04T19:59:59.000Z',
  startedAt: '2024-03-04T19:59:58.000Z',
  finishedAt: '2024-03-04T19:59:59.000Z',
  attempt,
});

describe("a chunk's log", () => {
  it('is SUCCEEDED after a retry: two tries, the timings of the one that worked, the error of the one that failed', () => {
    const log = chunkLog(
      4,
      { result: result(2), failure: failure(1), attempt: { index: 4, attempt: 2, startedAt: '' } },
      false,
    );
    expect(log).toMatchObject({ status: 'SUCCEEDED', attempts: 2, ms: 2500, rowsRead: 10 });
    expect(log.error).toMatchObject({ type: 'Sluice.TransientError', attempt: 1 });
  });

  it('is FAILED with its error when no try wrote a result, and RUNNING while a later try goes on', () => {
    expect(chunkLog(4, { failure: failure(3) }, false)).toMatchObject({ status: 'FAILED', attempts: 3, ms: 1000 });
    const later = { index: 4, attempt: 2, startedAt: '2024-03-04T20:00:01.000Z' };
    expect(chunkLog(4, { failure: failure(1), attempt: later }, true)).toMatchObject({
      status: 'RUNNING',
      attempts: 2,
    });
  });

  it('is NO RESULT when the run ended and the try left nothing (a timeout, a crash)', () => {
    const marker = { index: 4, attempt: 1, startedAt: '2024-03-04T20:00:01.000Z' };
    expect(chunkLog(4, { attempt: marker }, false)).toMatchObject({ status: 'NO RESULT', attempts: 1, ms: null });
  });
});

describe('the events of `sluice logs`', () => {
  it('shows a task scheduled again after a failure as its retry, and leaves out the routine events', () => {
    const lines = eventLines([
      { at: '2024-03-04T20:00:00.000Z', type: 'TaskStateEntered', state: 'Verify' },
      { at: '2024-03-04T20:00:00.001Z', type: 'TaskScheduled', state: 'Verify' },
      { at: '2024-03-04T20:00:00.002Z', type: 'TaskStarted', state: 'Verify' },
      {
        at: '2024-03-04T20:00:01.000Z',
        type: 'TaskFailed',
        state: 'Verify',
        error: 'Sluice.TransientError',
        cause: 'SlowDown',
      },
      { at: '2024-03-04T20:00:03.000Z', type: 'TaskScheduled', state: 'Verify' },
      { at: '2024-03-04T20:00:04.000Z', type: 'TaskSucceeded', state: 'Verify' },
      { at: '2024-03-04T20:00:04.001Z', type: 'TaskStateExited', state: 'Verify' },
    ]);
    expect(lines).toEqual([
      '20:00:00.000  TaskStateEntered Verify',
      '20:00:01.000  TaskFailed Verify  Sluice.TransientError: SlowDown',
      '20:00:03.000  retry 1 of Verify',
      '20:00:04.001  TaskStateExited Verify',
    ]);
  });
});
