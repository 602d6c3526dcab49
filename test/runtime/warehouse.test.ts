import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalWarehouse, WarehouseQueryError } from '../../runtime/warehouse.ts';
import { startTestS3, type TestS3 } from './helpers.ts';

let t: TestS3;
let warehouse: LocalWarehouse;

const STAGING = `CREATE EXTERNAL TABLE IF NOT EXISTS events_staging (id bigint, name string)
PARTITIONED BY (run_id string)
STORED AS PARQUET
LOCATION 's3://sluice-working/staging/events/'
TBLPROPERTIES ('projection.enabled'='true', 'projection.run_id.type'='injected',
  'storage.location.template'='s3://sluice-working/staging/events/run_id=\${run_id}/')`;
const TABLE = `CREATE TABLE IF NOT EXISTS events (id bigint, name string)
PARTITIONED BY (bucket(4, id))
LOCATION 's3://sluice-warehouse/events/'
TBLPROPERTIES ('table_type'='ICEBERG')`;
const merge = (runId: string) => `MERGE INTO events AS t
USING (SELECT id, name FROM events_staging WHERE run_id = '${runId}') AS s
ON (t.id = s.id)
WHEN MATCHED THEN UPDATE SET name = s.name
WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, s.name)`;

/** Writes Parquet with DuckDB and uploads it where a worker would stage it. */
async function stage(runId: string, file: string, rows: [number, string][]) {
  const local = join(t.dir, `${runId}-${file}`);
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  const values = rows.map(([id, name]) => `(${id}::BIGINT, '${name}')`).join(', ');
  await c.run(`COPY (SELECT * FROM (VALUES ${values}) AS v(id, name)) TO '${local}' (FORMAT parquet)`);
  c.closeSync();
  db.closeSync();
  await t.s3.send(
    new PutObjectCommand({
      Bucket: 'sluice-working',
      Key: `staging/events/run_id=${runId}/${file}`,
      Body: readFileSync(local),
    }),
  );
}

beforeAll(async () => {
  t = await startTestS3();
  warehouse = new LocalWarehouse({ file: join(t.dir, 'warehouse.duckdb'), s3: t.s3, tmpDir: join(t.dir, 'tmp') });
  await warehouse.execute(TABLE);
  await warehouse.execute(STAGING);
});
afterAll(() => t.close());

describe('local warehouse', () => {
  it('serves an external table with no objects as an empty view with its columns and run_id', async () => {
    const rows = await warehouse.query("SELECT * FROM events_staging WHERE run_id = 'none'");

    expect(rows).toEqual([]);
    await expect(warehouse.query('SELECT id, name, run_id FROM events_staging')).resolves.toEqual([]);
  });

  it('MERGEs only the run_id partition the statement selects, and a replay adds nothing', async () => {
    await stage('run-a', '00000.parquet', [
      [1, 'one'],
      [2, 'two'],
    ]);
    await stage('run-a', '00001.parquet', [[3, 'three']]);
    await stage('run-b', '00000.parquet', [[4, 'four']]);
    // Not Parquet: the MERGE fails if the warehouse downloads partitions it does not need.
    const garbage = { Bucket: 'sluice-working', Key: 'staging/events/run_id=run-c/00000.parquet' };
    await t.s3.send(new PutObjectCommand({ ...garbage, Body: 'not parquet' }));

    await warehouse.execute(merge('run-a'));
    await warehouse.execute(merge('run-a'));
    await t.s3.send(new DeleteObjectCommand(garbage));

    expect(await warehouse.query('SELECT id, name FROM events ORDER BY id')).toEqual([
      { id: 1, name: 'one' },
      { id: 2, name: 'two' },
      { id: 3, name: 'three' },
    ]);
  });

  it('reads every partition, with run_id as a string column, when the query does not filter on it', async () => {
    const rows = await warehouse.query(
      'SELECT run_id, count(*) AS n FROM events_staging GROUP BY run_id ORDER BY run_id',
    );

    expect(rows).toEqual([
      { run_id: 'run-a', n: 3 },
      { run_id: 'run-b', n: 1 },
    ]);
  });

  it('returns JSON-safe values: dates and timestamps as ISO strings, big integers as numbers or strings', async () => {
    const [row] = await warehouse.query(
      "SELECT DATE '2026-11-20' AS d, TIMESTAMP '2026-11-20 10:15:00' AS ts, 42::BIGINT AS n, 9007199254740993::BIGINT AS big",
    );

    expect(row).toEqual({ d: '2026-11-20', ts: '2026-11-20T10:15:00', n: 42, big: '9007199254740993' });
  });

  it('fails a bad statement with the DuckDB message', async () => {
    await expect(warehouse.query('SELECT * FROM missing_table')).rejects.toThrow(WarehouseQueryError);
    await expect(warehouse.query('SELECT * FROM missing_table')).rejects.toThrow(/missing_table/);
  });

  it('waits for another process that holds the database file', async () => {
    const file = join(t.dir, 'warehouse.duckdb');
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { DuckDBInstance } from '@duckdb/node-api';
         const db = await DuckDBInstance.create(${JSON.stringify(file)});
         console.log('locked');
         setTimeout(() => { db.closeSync(); process.exit(0); }, 1500);`,
      ],
      { cwd: join(import.meta.dirname, '../..'), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    const started = Date.now();

    const rows = await warehouse.query('SELECT count(*) AS n FROM events');

    expect(rows).toEqual([{ n: 3 }]);
    expect(Date.now() - started).toBeGreaterThan(500);
  });
});
