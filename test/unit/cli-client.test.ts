/**
 * The CLI's reading of Step Functions histories (steps of `sluice runs <run>`) and its read-only
 * check of `sluice query`, on the shapes AWS documents
 * (https://docs.aws.amazon.com/step-functions/latest/apireference/API_HistoryEvent.html).
 */
import type { HistoryEvent } from '@aws-sdk/client-sfn';
import { describe, expect, it } from 'vitest';
import { isReadOnlyStatement, stepsFromHistory } from '../../cli/client.ts';

let clock = 0;
const at = (type: string, name?: string): HistoryEvent => {
  clock += 1000;
  const event: HistoryEvent = { type: type as HistoryEvent['type'], id: clock / 1000, timestamp: new Date(clock) };
  if (name && type.endsWith('Entered')) event.stateEnteredEventDetails = { name };
  if (name && type.endsWith('Exited')) event.stateExitedEventDetails = { name };
  return event;
};

describe('stepsFromHistory', () => {
  it('reads top-level states, skips the states inside Map iterations and Parallel branches', () => {
    const steps = stepsFromHistory(
      [
        at('ExecutionStarted'),
        at('TaskStateEntered', 'Plan'),
        at('TaskScheduled'),
        at('TaskFailed'),
        at('TaskScheduled'),
        at('TaskSucceeded'),
        at('TaskStateExited', 'Plan'),
        at('MapStateEntered', 'Load'),
        at('MapStateStarted'),
        at('MapIterationStarted'),
        at('ParallelStateEntered', 'Statement'),
        at('ParallelStateStarted'),
        at('TaskStateEntered', 'StartQuery'),
        at('TaskStateExited', 'StartQuery'),
        at('ParallelStateSucceeded'),
        at('ParallelStateExited', 'Statement'),
        at('MapIterationSucceeded'),
        at('MapStateSucceeded'),
        at('MapStateExited', 'Load'),
        at('SucceedStateEntered', 'Done'),
        at('SucceedStateExited', 'Done'),
        at('ExecutionSucceeded'),
      ],
      'SUCCEEDED',
    );
    expect(steps.map((s) => [s.name, s.status, s.times])).toEqual([
      ['Plan', 'SUCCEEDED', 1],
      ['Load', 'SUCCEEDED', 1],
      ['Done', 'SUCCEEDED', 1],
    ]);
    expect(steps[0]?.ms).toBe(5000);
  });

  it('marks a state CAUGHT when it failed and the execution went on, FAILED where the execution ended', () => {
    const exited = stepsFromHistory(
      [
        at('MapStateEntered', 'Process'),
        at('MapRunStarted'),
        at('MapRunFailed'),
        at('MapStateFailed'),
        at('MapStateExited', 'Process'),
        at('TaskStateEntered', 'RecordFailure'),
        at('TaskStateExited', 'RecordFailure'),
        at('FailStateEntered', 'Failed'),
        at('ExecutionFailed'),
      ],
      'FAILED',
    );
    // AWS may leave a caught state without an exit event: the next state entered closes it.
    const notExited = stepsFromHistory(
      [at('TaskStateEntered', 'Plan'), at('TaskFailed'), at('PassStateEntered', 'Next'), at('ExecutionFailed')],
      'FAILED',
    );
    expect(exited.map((s) => [s.name, s.status])).toEqual([
      ['Process', 'CAUGHT'],
      ['RecordFailure', 'SUCCEEDED'],
      ['Failed', 'FAILED'],
    ]);
    expect(notExited.map((s) => [s.name, s.status])).toEqual([
      ['Plan', 'CAUGHT'],
      ['Next', 'FAILED'],
    ]);
  });

  it('leaves the state in progress RUNNING while the execution runs', () => {
    const steps = stepsFromHistory([at('TaskStateEntered', 'Plan')], 'RUNNING');
    expect(steps).toEqual([{ name: 'Plan', status: 'RUNNING', ms: 0, times: 1 }]);
  });
});

describe('isReadOnlyStatement', () => {
  it.each([
    'SELECT 1',
    '  select * from access_logs',
    '-- a comment\nSELECT 1',
    '/* c */ (SELECT 1)',
    'WITH d AS (SELECT 1 AS a) SELECT * FROM d',
    "WITH d AS (SELECT 'insert' AS a) SELECT * FROM d",
    'SHOW TABLES',
    'DESCRIBE access_logs',
    'EXPLAIN SELECT 1',
    'VALUES (1)',
  ])('reads: %s', (sql) => expect(isReadOnlyStatement(sql)).toBe(true));

  it.each([
    "INSERT INTO access_logs (path) VALUES ('/x')",
    'DELETE FROM access_logs',
    'MERGE INTO t USING s ON (true) WHEN MATCHED THEN DELETE',
    'CREATE TABLE notes AS SELECT 1 AS a',
    'DROP TABLE access_logs',
    "COPY (SELECT 1) TO 'x.csv'",
    'WITH d AS (SELECT 1) INSERT INTO t SELECT * FROM d',
    'OPTIMIZE access_logs REWRITE DATA USING BIN_PACK',
    'VACUUM access_logs',
    '',
  ])('writes (or is not known to only read): %s', (sql) => expect(isReadOnlyStatement(sql)).toBe(false));
});
