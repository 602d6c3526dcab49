/**
 * The warehouse SQL of a pipeline, in Athena's dialect (Trino + Iceberg). The state
 * machine sends these statements to Athena; the embedded runtime sends the same text
 * to DuckDB through `runtime/dialect.ts`. Identifiers come from the validated
 * definition and are always quoted (a column may be called `date`, `user`, `order` or
 * `timestamp`); every value from a file name or an event goes through `literal`.
 *
 * Athena quotes identifiers two ways: DDL (CREATE TABLE, CREATE EXTERNAL TABLE, ALTER
 * TABLE ADD COLUMNS, VACUUM) is parsed by Hive's grammar and takes backticks; DML (SELECT,
 * MERGE, INSERT, OPTIMIZE) is Trino's and takes double quotes. "To escape reserved keywords
 * in DDL statements, enclose them in backticks (`). To escape reserved keywords in SQL
 * SELECT statements and in queries on views, enclose them in double quotes"
 * (https://docs.aws.amazon.com/athena/latest/ug/reserved-words.html). Every identifier
 * below goes through {@link quoteIdentifier} or {@link quoteDdlIdentifier}, and nowhere else.
 */
import { createHash } from 'node:crypto';
import { type Column, LINEAGE_COLUMNS, type Pipeline } from './definition.ts';

export interface Locations {
  readonly warehouseBucket: string;
  readonly workingBucket: string;
}

/** Columns of the rejects table, `<table>_rejects`. */
export const REJECT_COLUMNS = [
  ...LINEAGE_COLUMNS,
  { name: 'line_number', type: 'bigint' },
  { name: 'column_name', type: 'string' },
  { name: 'reason', type: 'string' },
  { name: 'raw_line', type: 'string' },
  { name: 'run_id', type: 'string' },
] as const satisfies readonly Column[];

/** Athena writes at most 100 partitions per INSERT/MERGE; loads are split into day batches of this size. */
export const MAX_DAYS_PER_STATEMENT = 100;

/** A SQL string literal. */
export function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** An identifier in Athena DML (SELECT, MERGE, INSERT, OPTIMIZE) and in DuckDB: double quotes, `"` doubled. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** An identifier in Athena DDL (CREATE [EXTERNAL] TABLE, ALTER TABLE, VACUUM): backticks, `` ` `` doubled. */
export function quoteDdlIdentifier(name: string): string {
  return `\`${name.replaceAll('`', '``')}\``;
}

const q = quoteIdentifier;
const qd = quoteDdlIdentifier;

/** Athena DDL spells integer `int` (DML says `integer`); DuckDB accepts both. */
export function ddlType(c: Column): string {
  if (c.type === 'integer') return 'int';
  if (c.type === 'decimal') return `decimal(${c.precision}, ${c.scale})`;
  return c.type;
}
/** `name type, ...` for DDL. */
const ddlColumnList = (columns: readonly Column[]) => columns.map((c) => `${qd(c.name)} ${ddlType(c)}`).join(', ');
const names = (columns: readonly Column[]) => columns.map((c) => q(c.name)).join(', ');
const prefixed = (alias: string, columns: readonly Column[]) => columns.map((c) => `${alias}.${q(c.name)}`).join(', ');

export const tableNames = (p: Pipeline) => ({
  main: p.table.name,
  rejects: `${p.table.name}_rejects`,
  staging: `${p.table.name}_staging`,
  rejectsStaging: `${p.table.name}_rejects_staging`,
});

/** Columns of the main table and of its staging files: the table's own, then lineage. */
export const loadedColumns = (p: Pipeline): readonly Column[] => [...p.table.columns, ...LINEAGE_COLUMNS];

/** Columns of the rejects staging files (the run id is their partition). */
const rejectsStagingColumns = (): readonly Column[] => REJECT_COLUMNS.filter((c) => c.name !== 'run_id');

/** Where each table keeps its files. */
const tableLocations = (p: Pipeline, at: Locations) => {
  const t = tableNames(p);
  const warehouse = (table: string) => `s3://${at.warehouseBucket}/${table}/`;
  return {
    warehouse,
    staging: `s3://${at.workingBucket}/staging/${p.name}/`,
    rejectsStaging: `s3://${at.workingBucket}/rejects/${p.name}/`,
    main: warehouse(t.main),
  };
};

function icebergTable(name: string, columns: readonly Column[], location: string, partitionDay?: string): string {
  return [
    `CREATE TABLE IF NOT EXISTS ${qd(name)} (${ddlColumnList(columns)})`,
    ...(partitionDay ? [`PARTITIONED BY (day(${qd(partitionDay)}))`] : []),
    `LOCATION ${literal(location)}`,
    `TBLPROPERTIES ('table_type'='ICEBERG', 'format'='parquet', 'write_compression'='zstd')`,
  ].join('\n');
}

function stagingTable(name: string, columns: readonly Column[], location: string): string {
  return [
    `CREATE EXTERNAL TABLE IF NOT EXISTS ${qd(name)} (${ddlColumnList(columns)})`,
    `PARTITIONED BY (${qd('run_id')} string)`,
    'STORED AS PARQUET',
    `LOCATION ${literal(location)}`,
    "TBLPROPERTIES ('projection.enabled'='true', 'projection.run_id.type'='injected',",
    `  'storage.location.template'=${literal(`${location}run_id=\${run_id}/`)})`,
  ].join('\n');
}

/**
 * DDL that creates every table of the pipeline; idempotent (`IF NOT EXISTS`), and so it
 * changes nothing in a table that exists. A changed definition is applied by
 * `setupStatementsFor` in `evolution.ts`, which adds `ALTER TABLE ... ADD COLUMNS`.
 */
export function setupStatements(p: Pipeline, at: Locations): string[] {
  const t = tableNames(p);
  const where = tableLocations(p, at);
  return [
    icebergTable(t.main, loadedColumns(p), where.main, p.table.partitionDay),
    icebergTable(t.rejects, REJECT_COLUMNS, where.warehouse(t.rejects)),
    ...p.derived.map((d) => icebergTable(d.name, d.columns, where.warehouse(d.name))),
    stagingTable(t.staging, loadedColumns(p), where.staging),
    stagingTable(t.rejectsStaging, rejectsStagingColumns(), where.rejectsStaging),
  ];
}

/** `ALTER TABLE t ADD COLUMNS (...)`: Athena DDL, for Iceberg and Hive tables alike. */
export function addColumnsStatement(table: string, columns: readonly Column[]): string {
  return `ALTER TABLE ${qd(table)} ADD COLUMNS (${ddlColumnList(columns)})`;
}

/** Identifies a version of the DDL, so that a changed definition runs its setup again. */
export function setupHash(statements: readonly string[]): string {
  return createHash('sha256').update(statements.join(';\n')).digest('hex').slice(0, 16);
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

function checkDays(days: readonly string[]): string[] {
  for (const day of days) {
    if (!DAY.test(day) || Number.isNaN(Date.parse(`${day}T00:00:00Z`))) {
      throw new RangeError(`"${day}" is not a day (YYYY-MM-DD) of a load`);
    }
  }
  return [...new Set(days)].sort();
}

const nextDay = (day: string) => {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
};

const dateLiterals = (days: readonly string[]) => days.map((d) => `DATE ${literal(d)}`).join(', ');

/** Runs of consecutive days, as half-open ranges `[first, day after last)`. */
function dayRanges(days: readonly string[]): { from: string; to: string }[] {
  const ranges: { from: string; to: string }[] = [];
  for (const day of checkDays(days)) {
    const last = ranges.at(-1);
    if (last && last.to === day) last.to = nextDay(day);
    else ranges.push({ from: day, to: nextDay(day) });
  }
  return ranges;
}

/**
 * A predicate that keeps the rows of the pipeline's partition column on `days`, written so
 * that Iceberg can prune the table's `day(column)` partitions: half-open timestamp ranges
 * (one per run of consecutive days) for a timestamp column, an IN list for a date column.
 * (A `CAST(column AS DATE) IN (...)` is the same filter, but a cast of the column is not a
 * predicate partition pruning can use.) `alias` qualifies the column, e.g. `t`.
 */
export function partitionPredicate(p: Pipeline, days: readonly string[], alias?: string): string {
  const column = p.table.columns.find((c) => c.name === p.table.partitionDay);
  const name = alias ? `${alias}.${q(p.table.partitionDay)}` : q(p.table.partitionDay);
  if (days.length === 0) throw new RangeError(`a partition predicate of table ${p.table.name} needs at least one day`);
  if (column?.type === 'date') return `${name} IN (${dateLiterals(checkDays(days))})`;
  if (column?.type !== 'timestamp') {
    throw new RangeError(
      `table ${p.table.name}: partitionDay ${p.table.partitionDay} must be a date or a timestamp column`,
    );
  }
  const ranges = dayRanges(days).map(
    (r) =>
      `${name} >= TIMESTAMP ${literal(`${r.from} 00:00:00`)} AND ${name} < TIMESTAMP ${literal(`${r.to} 00:00:00`)}`,
  );
  return ranges.length === 1 ? `(${ranges[0]})` : `(${ranges.map((r) => `(${r})`).join(' OR ')})`;
}

function batches<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

const lineageMatch = LINEAGE_COLUMNS.map((c) => `t.${q(c.name)} = s.${q(c.name)}`).join(' AND ');

/**
 * MERGE statements that load one run's staging into the tables. Keyed on lineage, so
 * running them twice adds nothing. Split by day so each writes at most 100 partitions.
 */
export function loadStatements(
  p: Pipeline,
  runId: string,
  days: readonly string[],
  hasStaged: boolean,
  hasRejects: boolean,
): string[] {
  const t = tableNames(p);
  const columns = loadedColumns(p);
  const statements: string[] = [];
  if (hasStaged) {
    for (const batch of batches(checkDays(days), MAX_DAYS_PER_STATEMENT)) {
      statements.push(
        [
          `MERGE INTO ${q(t.main)} AS t`,
          `USING (SELECT ${names(columns)} FROM ${q(t.staging)}`,
          `  WHERE ${q('run_id')} = ${literal(runId)} AND CAST(${q(p.table.partitionDay)} AS DATE) IN (${dateLiterals(batch)})) AS s`,
          // The partition predicate on the target lets the engine read only the days loaded:
          // the join reads the target's lineage columns, and without it every load would read
          // them for the whole table (cost and the workgroup's bytes-scanned cutoff grow with
          // it). In a MERGE only the ON clause is pushed down to the target's scan, not the
          // WHEN conditions (https://github.com/apache/iceberg/issues/3607). It cannot drop a
          // match: a target row that matches a source row on lineage (key, version, offset)
          // is the same input line, transformed the same way, so it is on the same day, which
          // is one of the days of this batch.
          `ON (${lineageMatch} AND ${partitionPredicate(p, batch, 't')})`,
          `WHEN NOT MATCHED THEN INSERT (${names(columns)}) VALUES (${prefixed('s', columns)})`,
        ].join('\n'),
      );
    }
  }
  if (hasRejects) {
    // The rejects table is not partitioned, so there is no predicate to prune it with: this
    // MERGE reads the lineage columns of every rejected row so far. It grows with rejected
    // rows only, which rejects.maxShare bounds per run.
    statements.push(
      [
        `MERGE INTO ${q(t.rejects)} AS t`,
        `USING (SELECT ${names(REJECT_COLUMNS)} FROM ${q(t.rejectsStaging)} WHERE ${q('run_id')} = ${literal(runId)}) AS s`,
        `ON (${lineageMatch})`,
        `WHEN NOT MATCHED THEN INSERT (${names(REJECT_COLUMNS)}) VALUES (${prefixed('s', REJECT_COLUMNS)})`,
      ].join('\n'),
    );
  }
  return statements;
}

/**
 * One atomic MERGE per derived table and batch of days: readers never see a half-rebuilt day.
 * The key match is null-safe (`IS NOT DISTINCT FROM`, in Trino and DuckDB alike): with `=`, a
 * NULL key never matches, so each rebuild would insert its row again.
 */
export function deriveStatements(p: Pipeline, days: readonly string[]): string[] {
  return p.derived.flatMap((d) => {
    const values = d.columns.filter((c) => !d.key.includes(c.name));
    return batches(checkDays(days), MAX_DAYS_PER_STATEMENT).map((batch) =>
      [
        `MERGE INTO ${q(d.name)} AS t`,
        `USING (${d.sql.trim().replaceAll('{{days}}', dateLiterals(batch))}) AS s`,
        `ON (${d.key.map((k) => `t.${q(k)} IS NOT DISTINCT FROM s.${q(k)}`).join(' AND ')})`,
        ...(values.length > 0
          ? [`WHEN MATCHED THEN UPDATE SET ${values.map((c) => `${q(c.name)} = s.${q(c.name)}`).join(', ')}`]
          : []),
        `WHEN NOT MATCHED THEN INSERT (${names(d.columns)}) VALUES (${prefixed('s', d.columns)})`,
      ].join('\n'),
    );
  });
}

/**
 * Table maintenance for a scheduled run, after its loads: every load and rebuild commits
 * new small files (and a MERGE that updates rows, delete files), which slow reads down
 * and pile up forever unless compacted and expired.
 * - `OPTIMIZE t REWRITE DATA USING BIN_PACK [WHERE predicate]` rewrites small files and
 *   files with deletes into larger ones; "only partition columns are allowed in the WHERE
 *   clause predicate" and it is billed by the data it reads
 *   (https://docs.aws.amazon.com/athena/latest/ug/optimize-statement.html). The main table
 *   is compacted for `days` only (the days this run loaded or rebuilt), with the same
 *   day-aligned predicate on its partition column as the loads; the rejects and derived
 *   tables are small and not partitioned, so they are compacted whole.
 * - `VACUUM t` expires snapshots older than the table's `vacuum_max_snapshot_age_seconds`
 *   (5 days by default) and removes the files only they used, and orphan files
 *   (https://docs.aws.amazon.com/athena/latest/ug/vacuum-statement.html). Its limits: it
 *   needs s3:DeleteObject on the table's location or it "succeeds" without deleting
 *   anything; it deletes a bounded number of files per run, so a long backlog takes several
 *   scheduled runs; time travel to expired snapshots is gone. Its table name takes
 *   backticks: the page says double quotes do not work there.
 * Each OPTIMIZE covers at most {@link MAX_DAYS_PER_STATEMENT} days, like the loads.
 */
export function maintenanceStatements(p: Pipeline, days: readonly string[]): string[] {
  const t = tableNames(p);
  const optimize = (table: string, where?: string) =>
    `OPTIMIZE ${q(table)} REWRITE DATA USING BIN_PACK${where ? ` WHERE ${where}` : ''}`;
  const icebergTables = [t.main, t.rejects, ...p.derived.map((d) => d.name)];
  return [
    ...batches(checkDays(days), MAX_DAYS_PER_STATEMENT).map((batch) => optimize(t.main, partitionPredicate(p, batch))),
    ...icebergTables.slice(1).map((table) => optimize(table)),
    ...icebergTables.map((table) => `VACUUM ${qd(table)}`),
  ];
}
