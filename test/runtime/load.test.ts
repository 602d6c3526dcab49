/**
 * The ASL's Load loop (inline Map over the statements → Parallel → StartQuery, WaitForQuery,
 * GetQuery, Choice) run from the real `pipeline.asl.json`, against the local Athena registry
 * over a real local warehouse, with small fake Lambda handlers around it.
 */
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HANDLERS } from '../../functions/catalog.ts';
import type { Statement } from '../../functions/contracts.ts';
import { athenaResults, LocalAthena, type StartQueryExecutionInput } from '../../runtime/athena.ts';
import { execute, type LocalServices, loadDefinition } from '../../runtime/state-machine.ts';
import { LocalWarehouse } from '../../runtime/warehouse.ts';
import { startTestS3, type TestS3 } from './helpers.ts';

const ASL = join(import.meta.dirname, '../../state-machines/pipeline.asl.json');

let t: TestS3;
beforeAll(async () => {
  t = await startTestS3();
});
afterAll(() => t.close());

const newWarehouse = () =>
  new LocalWarehouse({ file: join(mkdtempSync(join(t.dir, 'wh-')), 'w.duckdb'), s3: t.s3, tmpDir: join(t.dir, 'tmp') });

/** Fake Plan (no chunks), Lease, Verify (the given statements), Finish and RecordFailure; the calls are recorded. */
function pipeline(statements: Statement[], athena: LocalAthena) {
  const calls: { name: string; payload: unknown }[] = [];
  const started: StartQueryExecutionInput[] = [];
  const published: string[] = [];
  const services: LocalServices = {
    invokeLambda: async (functionName, payload) => {
      const name = functionName.split(':').pop() ?? '';
      calls.push({ name, payload });
      if (name === HANDLERS.plan.localName) return { chunks: 0 };
      if (name === HANDLERS.verify.localName) return { statements, summary: { chunks: 0 } };
      if (name === HANDLERS.finish.localName) return { status: 'SUCCEEDED' };
      if (name === HANDLERS.lease.localName) return { pipeline: 'access-logs', holder: 'run', expiresAt: '' };
      if (name === HANDLERS.recordFailure.localName)
        return { error: { message: 'the plain message RecordFailure wrote' } };
      throw new Error(`no fake for ${functionName}`);
    },
    athena: {
      startQueryExecution: async (input) => {
        started.push(input);
        return athena.startQueryExecution(input);
      },
      getQueryExecution: (input) => athena.getQueryExecution(input),
      stopQueryExecution: (input) => athena.stopQueryExecution(input),
    },
    publish: async (message) => void published.push(String(message.Message)),
    getObject: async () => '[]',
    putObject: async () => {},
  };
  return { services, calls, started, published };
}

const TABLE = `CREATE TABLE IF NOT EXISTS events (id bigint, name string)
LOCATION 's3://sluice-warehouse/events/'
TBLPROPERTIES ('table_type'='ICEBERG')`;

describe('the Load loop of the ASL, against the local Athena', () => {
  it('runs the statements in order through start / wait / get, with the WaitForQuery wait shortened', async () => {
    const warehouse = newWarehouse();
    const athena = new LocalAthena({ query: (sql) => warehouse.read(sql, athenaResults) });
    const statements: Statement[] = [
      { step: 'setup', sql: TABLE },
      { step: 'load', sql: "INSERT INTO events VALUES (1, 'a'), (2, 'b')" },
      { step: 'derive', sql: "UPDATE events SET name = 'c' WHERE id = 2" },
    ];
    const { services, calls, started } = pipeline(statements, athena);
    const begin = Date.now();

    const outcome = await execute(
      loadDefinition(ASL),
      { pipeline: 'p', trigger: 'test' },
      { name: 'load-1', services },
    );

    expect(outcome).toMatchObject({ status: 'SUCCEEDED', output: { status: 'SUCCEEDED' } });
    expect(started).toEqual(
      statements.map((s) => ({
        QueryString: s.sql,
        WorkGroup: 'sluice',
        QueryExecutionContext: { Database: 'sluice' },
      })),
    );
    expect(await warehouse.query('SELECT id, name FROM events ORDER BY id')).toEqual([
      { id: 1, name: 'a' },
      { id: 2, name: 'c' },
    ]);
    expect(calls.map((c) => c.name)).toEqual([
      'sluice-plan',
      'sluice-lease',
      'sluice-verify',
      'sluice-finish',
      'sluice-lease',
    ]);
    // Three statements at 2 s per Wait on AWS; the override keeps the loop but not the time.
    expect(Date.now() - begin).toBeLessThan(3000);
  });

  it("fails the execution with Sluice.QueryFailed and the engine's message for a broken statement, after recording it", async () => {
    const warehouse = newWarehouse();
    const athena = new LocalAthena({ query: (sql) => warehouse.read(sql, athenaResults) });
    const statements: Statement[] = [
      { step: 'setup', sql: TABLE },
      { step: 'load', sql: 'INSERT INTO no_such_table VALUES (1)' },
      { step: 'derive', sql: "INSERT INTO events VALUES (9, 'never')" },
    ];
    const { services, calls, started, published } = pipeline(statements, athena);

    const outcome = await execute(
      loadDefinition(ASL),
      { pipeline: 'p', trigger: 'test' },
      { name: 'load-2', services },
    );

    expect(outcome.status).toBe('FAILED');
    expect(outcome.error).toBe('Sluice.QueryFailed');
    expect(outcome.cause).toMatch(/no_such_table/);
    expect(outcome.cause).toMatch(/does not exist/);
    // A broken statement is not retried, and the statements after it never start.
    expect(started).toHaveLength(2);
    const recorded = calls.find((c) => c.name === HANDLERS.recordFailure.localName)?.payload as {
      error: { Error: string; Cause: string };
    };
    expect(recorded.error).toEqual({ Error: 'Sluice.QueryFailed', Cause: outcome.cause });
    expect(published[0]).toContain('Sluice.QueryFailed');
  });

  it('retries a statement that failed with ICEBERG_COMMIT_ERROR, and the run succeeds', async () => {
    const warehouse = newWarehouse();
    let conflicts = 0;
    const athena = new LocalAthena({
      query: async (sql) => {
        if (sql.startsWith('INSERT') && conflicts === 0) {
          conflicts++;
          throw new Error(
            'ICEBERG_COMMIT_ERROR: Failed to commit Iceberg update to table sluice.events: Commit failed: ' +
              'Requirement failed: branch main has changed',
          );
        }
        return warehouse.read(sql, athenaResults);
      },
    });
    const statements: Statement[] = [
      { step: 'setup', sql: TABLE },
      { step: 'load', sql: "INSERT INTO events VALUES (1, 'a')" },
    ];
    const { services, started } = pipeline(statements, athena);
    const log: string[] = [];

    const outcome = await execute(
      loadDefinition(ASL),
      { pipeline: 'p', trigger: 'test' },
      // The ASL backs off 5 s (full jitter); only the time is shortened here.
      { name: 'load-3', services, retryIntervalOverrides: { Statement: 10 }, log: (line) => log.push(line) },
    );

    expect(outcome.status).toBe('SUCCEEDED');
    expect(conflicts).toBe(1);
    expect(started.map((s) => s.QueryString)).toEqual([TABLE, statements[1]?.sql, statements[1]?.sql]);
    expect(await warehouse.query('SELECT count(*) AS n FROM events')).toEqual([{ n: 1 }]);
    expect(log.some((line) => line.includes('retry 1 after Sluice.CommitConflict'))).toBe(true);
    expect(log.some((line) => line.includes('execution failed'))).toBe(false);
  });
});
