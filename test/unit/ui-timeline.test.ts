/**
 * What the run page derives from the chunk files and the history: bars in worker slots, retries
 * and failures, throughput, and the Load map's statements with their times.
 */
import type { HistoryEvent } from '@aws-sdk/client-sfn';
import { describe, expect, it } from 'vitest';
import { chunkBars, throughput } from '../../ui/data.ts';
import { historyFacts } from '../../ui/history.ts';

const at = (ms: number) => new Date(Date.UTC(2024, 2, 1, 0, 0, 0, ms)).toISOString();
const result = (index: number, from: number, to: number, extra: Record<string, unknown> = {}) => ({
  index,
  rowsRead: 1000,
  rowsRejected: 0,
  parts: [{ key: `in/${index}.csv`, start: 0, lines: 1000 }],
  startedAt: at(from),
  finishedAt: at(to),
  ...extra,
});

describe('chunkBars', () => {
  it('puts overlapping chunks in different worker slots and reuses a slot once it is free', () => {
    const results = new Map([
      [0, result(0, 0, 1000)],
      [1, result(1, 100, 900)],
      [2, result(2, 1000, 1500)],
    ]);
    const { bars, timing } = chunkBars(3, { results, errors: new Map() }, [], 'SUCCEEDED');
    expect(timing).toBe('chunk files');
    expect(bars.map((b) => [b.index, b.slot, b.status])).toEqual([
      [0, 0, 'SUCCEEDED'],
      [1, 1, 'SUCCEEDED'],
      [2, 0, 'SUCCEEDED'],
    ]);
  });

  it('marks a failed chunk with its error, a retried one with its attempt, and a planned chunk that never ran', () => {
    const results = new Map([[0, result(0, 0, 500, { attempt: 3 })]]);
    const errors = new Map([
      [
        1,
        {
          index: 1,
          errorType: 'Sluice.InputError',
          message: 'bad gzip',
          parts: [],
          startedAt: at(0),
          failedAt: at(50),
        },
      ],
    ]);
    const { bars } = chunkBars(3, { results, errors }, [], 'FAILED');
    expect(bars[0]).toMatchObject({ status: 'SUCCEEDED', attempt: 3 });
    expect(bars[1]).toMatchObject({ status: 'FAILED', error: 'bad gzip', finishedAt: at(50) });
    expect(bars[2]).toMatchObject({ status: 'NOT RUN', startedAt: null });
  });

  it("falls back to the map's child executions in start order when the chunk files have no times", () => {
    const results = new Map([[0, { index: 0, rowsRead: 5, parts: [] }]]);
    const children = [{ startDate: new Date(at(10)), stopDate: new Date(at(20)), status: 'SUCCEEDED' }];
    const { bars, timing } = chunkBars(1, { results, errors: new Map() }, children, 'SUCCEEDED');
    expect(timing).toBe('child executions');
    expect(bars[0]).toMatchObject({ startedAt: at(10), finishedAt: at(20) });
  });
});

describe('throughput', () => {
  it("spreads each chunk's rows over its time: two chunks at once read twice as fast", () => {
    const { bars } = chunkBars(
      2,
      {
        results: new Map([
          [0, result(0, 0, 1000)],
          [1, result(1, 0, 1000)],
        ]),
        errors: new Map(),
      },
      [],
      'SUCCEEDED',
    );
    const points = throughput(bars);
    expect(points.length).toBeGreaterThan(1);
    expect(points.every((p) => p.rowsPerSecond === 2000)).toBe(true);
  });
});

describe('historyFacts', () => {
  const event = (type: string, ms: number, details: Record<string, unknown> = {}): HistoryEvent =>
    ({ type, timestamp: new Date(at(ms)), ...details }) as HistoryEvent;

  it("reads the Plan output, each Load statement's SQL and time, and the state that failed", () => {
    const statement = { step: 'load', sql: 'MERGE INTO "t" ...' };
    const facts = historyFacts([
      event('TaskStateEntered', 0, { stateEnteredEventDetails: { name: 'Plan' } }),
      event('TaskStateExited', 10, {
        stateExitedEventDetails: {
          name: 'Plan',
          output: JSON.stringify({ chunks: 4, inputs: 1, bytes: 99, maxConcurrency: 50 }),
        },
      }),
      event('MapStateEntered', 20, { stateEnteredEventDetails: { name: 'Load' } }),
      event('MapIterationStarted', 20, { mapIterationStartedEventDetails: { name: 'Load', index: 0 } }),
      event('ParallelStateEntered', 21, {
        stateEnteredEventDetails: { name: 'Statement', input: JSON.stringify(statement) },
      }),
      event('MapIterationSucceeded', 320, { mapIterationSucceededEventDetails: { name: 'Load', index: 0 } }),
      event('MapStateExited', 321, { stateExitedEventDetails: { name: 'Load' } }),
      event('TaskStateEntered', 330, { stateEnteredEventDetails: { name: 'Finish' } }),
      event('TaskFailed', 340, { taskFailedEventDetails: { error: 'Sluice.VerifyError', cause: 'rows lost' } }),
      event('PassStateEntered', 350, { stateEnteredEventDetails: { name: 'FailureDefaults' } }),
    ]);
    expect(facts.plan).toEqual({ chunks: 4, inputs: 1, bytes: 99, maxConcurrency: 50 });
    expect(facts.statements).toEqual([{ ...statement, startedAt: at(20), ms: 300, status: 'SUCCEEDED' }]);
    expect(facts.failed).toEqual({ state: 'Finish', error: 'Sluice.VerifyError', cause: 'rows lost' });
  });

  it('forgets a failure that a retry of the same state got past', () => {
    const facts = historyFacts([
      event('TaskStateEntered', 0, { stateEnteredEventDetails: { name: 'Verify' } }),
      event('TaskFailed', 1, { taskFailedEventDetails: { error: 'Lambda.ServiceException', cause: 'throttled' } }),
      event('TaskSucceeded', 2),
      event('TaskStateExited', 3, { stateExitedEventDetails: { name: 'Verify' } }),
      event('TaskStateEntered', 4, { stateEnteredEventDetails: { name: 'Finish' } }),
    ]);
    expect(facts.failed).toBeNull();
  });
});
