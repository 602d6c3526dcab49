import { describe, expect, it } from 'vitest';
import { setupStatements } from '../../functions/pipeline/sql.ts';
import { DialectError, partitionFilter, referencesTable, translate } from '../../runtime/dialect.ts';
import { accessLogs } from '../support/fixtures.ts';

const locations = { warehouseBucket: 'sluice-warehouse', workingBucket: 'sluice-working' };

describe('dialect: Athena DDL to DuckDB', () => {
  it('turns an Iceberg CREATE TABLE into a plain DuckDB table with the same columns', () => {
    const sql = `CREATE TABLE IF NOT EXISTS access_logs (event_time timestamp, status int, path string, source_offset bigint)
PARTITIONED BY (day(event_time))
LOCATION 's3://sluice-warehouse/access_logs/'
TBLPROPERTIES ('table_type'='ICEBERG', 'format'='parquet', 'write_compression'='zstd')`;

    expect(translate(sql)).toEqual({
      kind: 'sql',
      sql: 'CREATE TABLE IF NOT EXISTS access_logs (event_time timestamp, status int, path string, source_offset bigint)',
    });
  });

  it('records an external staging table with its location, columns and run_id partition', () => {
    const sql = `CREATE EXTERNAL TABLE IF NOT EXISTS access_logs_staging (event_time timestamp, path string)
PARTITIONED BY (run_id string)
STORED AS PARQUET
LOCATION 's3://sluice-working/staging/access-logs/'
TBLPROPERTIES ('projection.enabled'='true', 'projection.run_id.type'='injected',
  'storage.location.template'='s3://sluice-working/staging/access-logs/run_id=\${run_id}/')`;

    expect(translate(sql)).toEqual({
      kind: 'external-table',
      name: 'access_logs_staging',
      location: 's3://sluice-working/staging/access-logs/',
      columns: [
        { name: 'event_time', type: 'timestamp' },
        { name: 'path', type: 'string' },
      ],
      partitions: [{ name: 'run_id', type: 'string' }],
      ifNotExists: true,
    });
  });

  it("translates every setup statement of the access-logs pipeline (the lead's SQL generator)", () => {
    const kinds = setupStatements(accessLogs, locations).map((s) => translate(s).kind);

    expect(kinds).toEqual(['sql', 'sql', 'sql', 'external-table', 'external-table']);
  });

  it('passes MERGE and SELECT through unchanged (DuckDB 1.5 runs Trino MERGE)', () => {
    const merge =
      "MERGE INTO t AS t USING (SELECT * FROM s WHERE run_id = 'r') AS s ON (t.k = s.k) WHEN NOT MATCHED THEN INSERT (k) VALUES (s.k)";

    expect(translate(`${merge};`)).toEqual({ kind: 'sql', sql: merge });
  });

  it('refuses what it cannot translate faithfully, naming it', () => {
    expect(() => translate("CREATE TABLE t (a int) LOCATION 's3://b/t/'")).toThrow(/only Iceberg tables/);
    expect(() => translate("CREATE EXTERNAL TABLE t (a int) STORED AS TEXTFILE LOCATION 's3://b/t/'")).toThrow(
      DialectError,
    );
    expect(() => translate("CREATE TABLE t (a array<int>) TBLPROPERTIES ('table_type'='ICEBERG')")).toThrow(
      /complex column type/,
    );
  });
});

describe('dialect: what a statement reads', () => {
  it('finds table references outside string literals only', () => {
    expect(referencesTable('SELECT * FROM access_logs_staging WHERE x = 1', 'access_logs_staging')).toBe(true);
    expect(referencesTable("SELECT 'access_logs_staging' AS name", 'access_logs_staging')).toBe(false);
    expect(referencesTable('SELECT * FROM access_logs_staging_old', 'access_logs_staging')).toBe(false);
  });

  it('extracts a single run_id filter, and none when OR could widen it', () => {
    expect(partitionFilter("SELECT * FROM s WHERE run_id = 'r-1' AND x > 0", 'run_id')).toBe('r-1');
    expect(partitionFilter("SELECT * FROM s WHERE run_id = 'a' OR run_id = 'b'", 'run_id')).toBeUndefined();
    expect(partitionFilter('SELECT * FROM s', 'run_id')).toBeUndefined();
  });
});
