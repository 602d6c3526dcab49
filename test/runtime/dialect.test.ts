import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import { parsePipeline } from '../../functions/pipeline/definition.ts';
import { setupStatementsFor, tableShapes } from '../../functions/pipeline/evolution.ts';
import {
  deriveStatements,
  loadStatements,
  maintenanceStatements,
  setupStatements,
} from '../../functions/pipeline/sql.ts';
import {
  backticksToDoubleQuotes,
  DialectError,
  partitionFilter,
  referencesTable,
  translate,
  withAddedColumns,
} from '../../runtime/dialect.ts';
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
      sql: 'CREATE TABLE IF NOT EXISTS "access_logs" ("event_time" timestamp, "status" int, "path" string, "source_offset" bigint)',
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

describe('dialect: quoting, evolution and maintenance statements', () => {
  it('turns backticked identifiers into double-quoted ones, leaving literals alone', () => {
    expect(backticksToDoubleQuotes('SELECT `order`, \'a `b`\', "c`d" FROM `we``ird`')).toBe(
      'SELECT "order", \'a `b`\', "c`d" FROM "we`ird"',
    );
  });

  it('reads backticked DDL, and quotes every identifier it writes for DuckDB', () => {
    const sql =
      "CREATE TABLE IF NOT EXISTS `order` (`date` date, `user` string) PARTITIONED BY (day(`date`)) LOCATION 's3://b/order/' TBLPROPERTIES ('table_type'='ICEBERG')";

    expect(translate(sql)).toEqual({
      kind: 'sql',
      sql: 'CREATE TABLE IF NOT EXISTS "order" ("date" date, "user" string)',
    });
  });

  it('turns ALTER TABLE ADD COLUMNS into one idempotent ADD COLUMN per column', () => {
    expect(translate('ALTER TABLE `order` ADD COLUMNS (`user` string, `amount` decimal(10, 2))')).toEqual({
      kind: 'add-columns',
      name: 'order',
      columns: [
        { name: 'user', type: 'string' },
        { name: 'amount', type: 'decimal(10, 2)' },
      ],
      sql: 'ALTER TABLE "order" ADD COLUMN IF NOT EXISTS "user" string;\nALTER TABLE "order" ADD COLUMN IF NOT EXISTS "amount" decimal(10, 2)',
    });
  });

  it('appends added columns to an external table once, for the warehouse to record', () => {
    const staging =
      translate(`CREATE EXTERNAL TABLE IF NOT EXISTS \`t_staging\` (\`a\` int) PARTITIONED BY (\`run_id\` string)
STORED AS PARQUET LOCATION 's3://b/t/'`);
    const alter = translate('ALTER TABLE `t_staging` ADD COLUMNS (`b` string, `a` int)');
    if (staging.kind !== 'external-table' || alter.kind !== 'add-columns') throw new Error('unexpected translation');

    expect(withAddedColumns(staging, alter).columns).toEqual([
      { name: 'a', type: 'int' },
      { name: 'b', type: 'string' },
    ]);
    expect(withAddedColumns(withAddedColumns(staging, alter), alter)).toEqual(withAddedColumns(staging, alter));
  });

  it('checks OPTIMIZE against the table without compacting anything, and passes VACUUM to DuckDB', () => {
    expect(translate(`OPTIMIZE "t" REWRITE DATA USING BIN_PACK WHERE "ts" >= TIMESTAMP '2024-03-01 00:00:00'`)).toEqual(
      {
        kind: 'sql',
        sql: `SELECT NULL FROM "t" WHERE "ts" >= TIMESTAMP '2024-03-01 00:00:00' LIMIT 0`,
      },
    );
    expect(translate('OPTIMIZE "t" REWRITE DATA USING BIN_PACK')).toEqual({
      kind: 'sql',
      sql: 'SELECT NULL FROM "t" LIMIT 0',
    });
    expect(translate('VACUUM `t`')).toEqual({ kind: 'sql', sql: 'VACUUM "t"' });
  });

  it('finds a quoted run_id filter', () => {
    expect(partitionFilter(`SELECT * FROM s WHERE "run_id" = 'r-1'`, 'run_id')).toBe('r-1');
  });
});

/**
 * A pipeline whose table and columns are SQL keywords (defect 8): the table `order`, the
 * columns date, user, order and timestamp, partitioned by `timestamp`.
 */
const KEYWORDS = `
name: keywords
input: { prefix: keywords/, suffixes: [.csv] }
schema:
  - { name: date, type: date }
  - { name: user, type: string }
  - { name: order, type: integer }
  - { name: timestamp, type: timestamp }
table:
  name: order
  columns:
    - { name: date, type: date }
    - { name: user, type: string }
    - { name: order, type: integer }
    - { name: timestamp, type: timestamp }
  partitionDay: timestamp
derived:
  - name: user
    key: [date, user]
    columns:
      - { name: date, type: date }
      - { name: user, type: string }
      - { name: order, type: bigint }
    sql: |
      SELECT CAST("timestamp" AS DATE) AS "date", "user", sum("order") AS "order"
      FROM "order" WHERE CAST("timestamp" AS DATE) IN ({{days}})
      GROUP BY CAST("timestamp" AS DATE), "user"
`;
const keywords = parsePipeline(KEYWORDS, 'keywords.yaml');
/** The same pipeline, with a column `referrer` appended to its table (and its input). */
const keywordsWithReferrer = parsePipeline(
  KEYWORDS.replace(
    '  - { name: timestamp, type: timestamp }\ntable:',
    '  - { name: timestamp, type: timestamp }\n  - { name: referrer, type: string }\ntable:',
  ).replace(
    '    - { name: timestamp, type: timestamp }\n  partitionDay',
    '    - { name: timestamp, type: timestamp }\n    - { name: referrer, type: string }\n  partitionDay',
  ),
  'keywords.yaml',
);

/**
 * Runs Athena statements on an in-memory DuckDB through `translate`, as the local warehouse
 * does; an external (staging) table becomes a plain DuckDB table with its partition column,
 * which the test fills as the workers' Parquet would.
 */
async function withDuckDb(work: (run: (statement: string) => Promise<void>, c: DuckDBConnection) => Promise<void>) {
  const instance = await DuckDBInstance.create(':memory:');
  const c = await instance.connect();
  const run = async (statement: string) => {
    const t = translate(statement);
    if (t.kind === 'external-table') {
      const columns = [...t.columns, ...t.partitions].map((col) => `"${col.name}" ${col.type}`).join(', ');
      await c.run(`CREATE TABLE ${t.ifNotExists ? 'IF NOT EXISTS ' : ''}"${t.name}" (${columns})`);
    } else {
      await c.run(t.sql);
    }
  };
  try {
    await work(run, c);
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}

const rows = async (c: DuckDBConnection, sql: string) => (await c.runAndReadAll(sql)).getRowObjectsJson();

/** Stages rows of the keywords pipeline for a run: (day, hour, user, order), with lineage. */
async function stageKeywords(c: DuckDBConnection, runId: string, lines: [string, number, string | null, number][]) {
  const values = lines.map(
    ([day, hour, user, order], i) =>
      `(DATE '${day}', ${user === null ? 'NULL' : `'${user}'`}, ${order}, TIMESTAMP '${day} ${String(hour).padStart(2, '0')}:30:00', 'keywords/a.csv', 'etag-1', ${i * 40}, '${runId}')`,
  );
  await c.run(
    `INSERT INTO "order_staging" ("date", "user", "order", "timestamp", "source_key", "source_version", "source_offset", "run_id") VALUES ${values.join(', ')}`,
  );
}

describe('dialect: the SQL of a pipeline whose names are SQL keywords runs on DuckDB', () => {
  it('sets up, loads and derives; a replayed load adds nothing (defects 6 and 8)', async () => {
    await withDuckDb(async (run, c) => {
      for (const s of setupStatements(keywords, locations)) await run(s);
      await stageKeywords(c, 'r1', [
        ['2024-03-01', 1, 'ann', 2],
        ['2024-03-01', 23, 'ann', 3],
        ['2024-03-02', 0, 'bob', 5],
        ['2024-03-04', 12, 'bob', 7],
      ]);
      const load = loadStatements(keywords, 'r1', ['2024-03-01', '2024-03-02', '2024-03-04'], true, false);
      expect(load[0]).toContain(
        `t."timestamp" >= TIMESTAMP '2024-03-01 00:00:00' AND t."timestamp" < TIMESTAMP '2024-03-03 00:00:00'`,
      );

      for (const s of load) await run(s);
      for (const s of load) await run(s);
      for (const s of deriveStatements(keywords, ['2024-03-01', '2024-03-02', '2024-03-04'])) await run(s);

      expect(await rows(c, 'SELECT count(*)::INTEGER AS n FROM "order"')).toEqual([{ n: 4 }]);
      expect(
        await rows(
          c,
          `SELECT strftime("date", '%Y-%m-%d') AS "date", "user", "order"::INTEGER AS "order" FROM "user" ORDER BY 1, 2`,
        ),
      ).toEqual([
        { date: '2024-03-01', user: 'ann', order: 5 },
        { date: '2024-03-02', user: 'bob', order: 5 },
        { date: '2024-03-04', user: 'bob', order: 7 },
      ]);
    });
  });

  it('rebuilding a day twice whose key is NULL leaves one row (defect 9)', async () => {
    await withDuckDb(async (run, c) => {
      for (const s of setupStatements(keywords, locations)) await run(s);
      await stageKeywords(c, 'r1', [
        ['2024-03-01', 1, null, 2],
        ['2024-03-01', 2, null, 3],
      ]);
      for (const s of loadStatements(keywords, 'r1', ['2024-03-01'], true, false)) await run(s);

      for (const s of deriveStatements(keywords, ['2024-03-01'])) await run(s);
      for (const s of deriveStatements(keywords, ['2024-03-01'])) await run(s);

      expect(await rows(c, 'SELECT "user", "order"::INTEGER AS "order" FROM "user"')).toEqual([
        { user: null, order: 5 },
      ]);
    });
  });

  it('adds a column to an existing table and its staging with ALTER after CREATE; a replay is harmless (defect 7)', async () => {
    await withDuckDb(async (run, c) => {
      for (const s of setupStatements(keywords, locations)) await run(s);
      await stageKeywords(c, 'r1', [['2024-03-01', 1, 'ann', 2]]);
      for (const s of loadStatements(keywords, 'r1', ['2024-03-01'], true, false)) await run(s);

      const evolve = setupStatementsFor(keywordsWithReferrer, locations, tableShapes(keywords));
      for (const s of evolve) await run(s);
      for (const s of evolve) await run(s);
      await c.run(
        `INSERT INTO "order_staging" ("date", "user", "order", "timestamp", "referrer", "source_key", "source_version", "source_offset", "run_id")
         VALUES (DATE '2024-03-02', 'bob', 1, TIMESTAMP '2024-03-02 08:00:00', 'https://example.com/', 'keywords/b.csv', 'etag-2', 0, 'r2')`,
      );
      for (const s of loadStatements(keywordsWithReferrer, 'r2', ['2024-03-02'], true, false)) await run(s);

      expect(evolve.filter((s) => s.startsWith('ALTER'))).toEqual([
        'ALTER TABLE `order` ADD COLUMNS (`referrer` string)',
        'ALTER TABLE `order_staging` ADD COLUMNS (`referrer` string)',
      ]);
      expect(await rows(c, 'SELECT "user", "referrer" FROM "order" ORDER BY "user"')).toEqual([
        { user: 'ann', referrer: null },
        { user: 'bob', referrer: 'https://example.com/' },
      ]);
    });
  });

  it('runs the maintenance statements as checks of the tables and the predicate (defect 9)', async () => {
    await withDuckDb(async (run) => {
      for (const s of setupStatements(keywords, locations)) await run(s);

      for (const s of maintenanceStatements(keywords, ['2024-03-01', '2024-03-02'])) await run(s);

      await expect(run(`OPTIMIZE "order" REWRITE DATA USING BIN_PACK WHERE "missing" > 0`)).rejects.toThrow(/missing/);
    });
  });
});
