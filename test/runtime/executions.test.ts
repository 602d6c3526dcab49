import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type ExecutionRecord, ExecutionStore, newExecutionName } from '../../runtime/executions.ts';

const record = (overrides: Partial<ExecutionRecord>): ExecutionRecord => ({
  id: newExecutionName('access-logs'),
  pipeline: 'access-logs',
  trigger: 'object',
  status: 'SUCCEEDED',
  startedAt: '2026-11-25T10:00:00.000Z',
  stoppedAt: '2026-11-25T10:00:05.000Z',
  input: {},
  output: { chunks: 2, rowsRead: 10, rowsLoaded: 9, rowsRejected: 1 },
  error: null,
  cause: null,
  pid: process.pid,
  ...overrides,
});

describe('execution history', () => {
  it('names executions <pipeline>-<UTC time>-<6 random>, valid as Step Functions names', () => {
    const name = newExecutionName('access-logs', new Date('2026-11-25T20:00:01.123Z'));

    expect(name).toMatch(/^access-logs-20261125T200001Z-[a-z0-9]{6}$/);
  });

  it('lists runs newest first with the counts of the run record', () => {
    const store = new ExecutionStore(mkdtempSync(join(tmpdir(), 'executions-')));
    store.write(record({ id: 'older', startedAt: '2026-11-25T09:00:00.000Z' }));
    store.write(record({ id: 'newer' }));

    const rows = store.listRuns();

    expect(rows.map((r) => r.id)).toEqual(['newer', 'older']);
    expect(rows[0]).toMatchObject({ chunks: 2, rowsRead: 10, rowsLoaded: 9, rowsRejected: 1 });
  });

  it('shows a run whose runtime process died as FAILED, saying so', () => {
    const store = new ExecutionStore(mkdtempSync(join(tmpdir(), 'executions-')));
    store.write(record({ id: 'orphan', status: 'RUNNING', stoppedAt: null, output: null, pid: 2 ** 22 + 1 }));

    const [row] = store.listRuns();

    expect(row).toMatchObject({ status: 'FAILED', error: 'Sluice.RuntimeExited', chunks: null });
    expect(row?.cause).toContain('exited before the execution finished');
  });

  it("shows a failure by its plain message, with the cause readable: never Lambda's JSON and stack trace", () => {
    const store = new ExecutionStore(mkdtempSync(join(tmpdir(), 'executions-')));
    const cause = JSON.stringify({
      errorType: 'Sluice.InputError',
      errorMessage: `s3://sluice-input/access-logs/x.csv: bad line ${'\u0000'.repeat(100_000)}`,
      trace: ['Sluice.InputError: ...', '    at checkHeader (/work/main/functions/worker/header.ts:32:9)'],
    });
    store.write(record({ id: 'failed', status: 'FAILED', output: null, error: 'Sluice.InputError', cause }));
    // A run whose RecordFailure ran keeps the run record's message and details.
    store.write(
      record({
        id: 'recorded',
        startedAt: '2026-11-25T09:00:00.000Z',
        status: 'FAILED',
        output: null,
        error: 'States.ExceedToleratedFailureThreshold',
        cause: 'The specified tolerated failure threshold was exceeded',
        message: 'In access-logs/y.csv (bytes 0–10): the line at byte 3 is longer than 1048576 bytes.',
        details: { errorType: 'Sluice.InputError', requestId: 'req-1' },
      }),
    );

    const [failed, recorded] = store.listRuns();

    expect(failed?.message).toBe('s3://sluice-input/access-logs/x.csv: bad line \\x00 (×100000).');
    expect(failed?.cause).toBe('s3://sluice-input/access-logs/x.csv: bad line \\x00 (×100000)');
    expect(JSON.stringify(failed)).not.toMatch(/trace|checkHeader|\/work\/main|\\u0000/);
    expect(recorded).toMatchObject({
      message: 'In access-logs/y.csv (bytes 0–10): the line at byte 3 is longer than 1048576 bytes.',
      details: { errorType: 'Sluice.InputError', requestId: 'req-1' },
    });
  });
});
