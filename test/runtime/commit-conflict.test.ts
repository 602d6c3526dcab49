/**
 * The local Athena fails the later of two overlapping commits to one table as Iceberg does
 * (FAILED, ICEBERG_COMMIT_ERROR, nothing changed), and injects that failure at the rate
 * `commit-conflict` asks for. Over a real local warehouse (DuckDB file).
 */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { athenaResults, LocalAthena, writtenTable } from '../../runtime/athena.ts';
import { parseFaults } from '../../runtime/faults.ts';
import { LocalWarehouse } from '../../runtime/warehouse.ts';
import { startTestS3, type TestS3 } from './helpers.ts';

let t: TestS3;
let warehouse: LocalWarehouse;
beforeAll(async () => {
  t = await startTestS3();
  warehouse = new LocalWarehouse({ file: join(t.dir, 'warehouse.duckdb'), s3: t.s3, tmpDir: join(t.dir, 'tmp') });
  for (const [table, columns] of [
    ['events', 'id bigint, note string'],
    ['other', 'id bigint'],
  ]) {
    await warehouse.execute(
      `CREATE TABLE IF NOT EXISTS ${table} (${columns}) LOCATION 's3://sluice-warehouse/${table}/' TBLPROPERTIES ('table_type'='ICEBERG')`,
    );
  }
});
afterAll(() => t.close());

const noFaults = () => parseFaults('');
const athenaOver = (faults = noFaults) =>
  new LocalAthena({ query: (sql) => warehouse.read(sql, athenaResults), faults });

const ctx = { QueryExecutionContext: { Database: 'sluice' } };

async function status(athena: LocalAthena, id: string) {
  await athena.idle();
  return (await athena.getQueryExecution({ QueryExecutionId: id })).QueryExecution.Status;
}

const merge = (id: number) =>
  `MERGE INTO "events" AS t USING (SELECT ${id} AS id, 'row ${id}' AS note) AS s ON (t.id = s.id) WHEN NOT MATCHED THEN INSERT (id, note) VALUES (s.id, s.note)`;

describe('commit conflicts in the local warehouse', () => {
  it('fails the later of two writes to one table submitted before the first committed, and changes nothing', async () => {
    const athena = athenaOver();

    const first = await athena.startQueryExecution({ QueryString: merge(1), ...ctx });
    const second = await athena.startQueryExecution({ QueryString: merge(2), ...ctx });

    expect(await status(athena, first.QueryExecutionId)).toMatchObject({ State: 'SUCCEEDED' });
    const lost = await status(athena, second.QueryExecutionId);
    expect(lost).toMatchObject({ State: 'FAILED' });
    expect(lost.StateChangeReason).toMatch(
      /^ICEBERG_COMMIT_ERROR: Failed to commit Iceberg update to table: sluice\.events/,
    );
    expect(await warehouse.query('SELECT id FROM events ORDER BY id')).toEqual([{ id: 1 }]);

    // Submitted again after the commit (the state machine's retry), it succeeds.
    const again = await athena.startQueryExecution({ QueryString: merge(2), ...ctx });
    expect(await status(athena, again.QueryExecutionId)).toMatchObject({ State: 'SUCCEEDED' });
    expect(await warehouse.query('SELECT id FROM events ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it('lets overlapping writes to different tables, and reads, all succeed', async () => {
    const athena = athenaOver();

    const ids = [
      await athena.startQueryExecution({ QueryString: merge(3), ...ctx }),
      await athena.startQueryExecution({ QueryString: 'INSERT INTO other VALUES (1)', ...ctx }),
      await athena.startQueryExecution({ QueryString: 'SELECT count(*) FROM events', ...ctx }),
    ];

    for (const { QueryExecutionId } of ids) {
      expect(await status(athena, QueryExecutionId)).toMatchObject({ State: 'SUCCEEDED' });
    }
  });

  it('injects a commit conflict when SLUICE_FAULTS asks for one, and changes nothing', async () => {
    const injected = parseFaults('commit-conflict=1,seed=1');
    const athena = athenaOver(() => injected);

    const { QueryExecutionId } = await athena.startQueryExecution({ QueryString: merge(9), ...ctx });

    const failed = await status(athena, QueryExecutionId);
    expect(failed).toMatchObject({ State: 'FAILED' });
    expect(failed.StateChangeReason).toContain('ICEBERG_COMMIT_ERROR');
    expect(injected.counts()['commit-conflict']).toBe(1);
    expect(await warehouse.query('SELECT count(*) AS n FROM events WHERE id = 9')).toEqual([{ n: 0 }]);
  });

  it('names the table each write statement commits to', () => {
    expect(writtenTable('MERGE INTO "access_logs" AS t USING x')).toBe('access_logs');
    expect(writtenTable('  -- load\nINSERT INTO sluice.Daily_Traffic SELECT 1')).toBe('daily_traffic');
    expect(writtenTable('DELETE FROM "a""b" WHERE 1=1')).toBe('a"b');
    expect(writtenTable('OPTIMIZE "access_logs" REWRITE DATA USING BIN_PACK')).toBe('access_logs');
    expect(writtenTable('SELECT * FROM access_logs')).toBeUndefined();
    expect(writtenTable('CREATE TABLE IF NOT EXISTS t (a int)')).toBeUndefined();
  });
});
