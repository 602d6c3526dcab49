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
/** The lineage of table alias `a` equals that of alias `b`. */
const sameLineage = (a: string, b: string) =>
  LINEAGE_COLUMNS.map((c) => `${a}.${q(c.name)} = ${b}.${q(c.name)}`).join(' AND ');
/** The column that says whether a source row of a replacing MERGE is inserted or deletes its match. */
const OP = q('sluice_op');
const keyList = (keys: readonly string[]) => keys.map(literal).join(', ');

/** Rows of an object already in the table that a load replaces: the key, and the days its rows are on. */
export interface ReplacedRows {
  readonly key: string;
  /** The days of the rows in the table (from the ledger), or null when unknown (then no partition predicate). */
  readonly days: readonly string[] | null;
}

/** How a load treats the rows already in the table (see docs/loads.md). */
export interface LoadOptions {
  /** Keys whose staged rows are not loaded: superseded, deleted, or with a failed chunk. */
  readonly exclude?: readonly string[];
  /**
   * Keys whose rows in the table that this run did not stage are deleted in the same MERGE: a new
   * version replaces the old one's rows (and rejects), a reload replaces the same version's rows.
   */
  readonly replace?: readonly ReplacedRows[];
  /** A reload: staged rows already in the table (same lineage) are updated, so a changed transform applies. */
  readonly reload?: boolean;
}

/**
 * MERGE statements that load one run's staging into the tables. Keyed on lineage, so
 * running them twice adds nothing. Split by day so each writes at most 100 partitions.
 *
 * With `replace`, the source of each MERGE is the staged rows (`sluice_op = 'insert'`) UNION ALL
 * the rows of the replaced keys already in the table that this run did not stage (`'delete'`):
 * `WHEN MATCHED AND delete THEN DELETE ... WHEN NOT MATCHED AND insert THEN INSERT`, so the old
 * rows go and the new ones come in one commit per table, and a reader sees all of one or the
 * other (https://docs.aws.amazon.com/athena/latest/ug/merge-into-statement.html: "A single
 * statement can combine update, delete, and insert actions"; "MERGE INTO is transactional").
 * The anti-join on lineage keeps every target row matched by at most one source row, which
 * Athena requires ("A user error is raised when a single target table row matches more than
 * one source row"). A replacement spanning more than 100 days is split like any load, and is
 * then atomic per batch of days.
 */
export function loadStatements(
  p: Pipeline,
  runId: string,
  days: readonly string[],
  hasStaged: boolean,
  hasRejects: boolean,
  options: LoadOptions = {},
): string[] {
  const t = tableNames(p);
  const columns = loadedColumns(p);
  const statements: string[] = [];
  const exclude = options.exclude ?? [];
  const replace = options.replace ?? [];
  const replacing = replace.length > 0 || options.reload === true;
  const run = literal(runId);
  const excluded = exclude.length > 0 ? ` AND NOT (${q('source_key')} IN (${keyList(exclude)}))` : '';
  const stagedDays = hasStaged ? checkDays(days) : [];
  const oldDays = replace.flatMap((r) => r.days ?? []);
  const unknownDays = replace.some((r) => r.days === null);
  const replacedOn = (batch: readonly string[] | null) => {
    const keys = replace.filter((r) => r.days === null || batch === null || r.days.some((d) => batch.includes(d)));
    if (keys.length === 0) return undefined;
    return [
      `  UNION ALL`,
      `  SELECT ${prefixed('o', columns)}, 'delete' AS ${OP} FROM ${q(t.main)} AS o`,
      `  WHERE o.${q('source_key')} IN (${keyList(keys.map((r) => r.key))})${batch ? ` AND ${partitionPredicate(p, batch, 'o')}` : ''}`,
      `    AND NOT EXISTS (SELECT 1 FROM ${q(t.staging)} AS n WHERE n.${q('run_id')} = ${run} AND ${sameLineage('n', 'o')})`,
    ].join('\n');
  };
  const mainBatches: (readonly string[] | null)[] = unknownDays
    ? [null]
    : batches(checkDays([...stagedDays, ...oldDays]), MAX_DAYS_PER_STATEMENT);
  for (const batch of replacing ? mainBatches : batches(stagedDays, MAX_DAYS_PER_STATEMENT)) {
    const staged = batch ? batch.filter((d) => stagedDays.includes(d)) : stagedDays;
    const deletes = replacing ? replacedOn(batch) : undefined;
    if (staged.length === 0 && !deletes) continue;
    const source =
      staged.length > 0
        ? `SELECT ${names(columns)}${replacing ? `, 'insert' AS ${OP}` : ''} FROM ${q(t.staging)}\n` +
          `  WHERE ${q('run_id')} = ${run} AND CAST(${q(p.table.partitionDay)} AS DATE) IN (${dateLiterals(staged)})${excluded}`
        : undefined;
    const union = [source, deletes]
      .filter((part): part is string => part !== undefined)
      .join('\n')
      .replace(/^ {2}UNION ALL\n/, '');
    statements.push(
      [
        `MERGE INTO ${q(t.main)} AS t`,
        `USING (${union}) AS s`,
        // The partition predicate on the target lets the engine read only the days loaded:
        // the join reads the target's lineage columns, and without it every load would read
        // them for the whole table (cost and the workgroup's bytes-scanned cutoff grow with
        // it). In a MERGE only the ON clause is pushed down to the target's scan, not the
        // WHEN conditions (https://github.com/apache/iceberg/issues/3607). It cannot drop a
        // match: a target row that matches a source row on lineage (key, version, offset)
        // is the same input line, transformed the same way, so it is on the same day, which
        // is one of the days of this batch; a replaced row is selected on the batch's days.
        `ON (${lineageMatch}${batch ? ` AND ${partitionPredicate(p, batch, 't')}` : ''})`,
        ...(replacing ? mergeActions(p.table.columns, columns, options.reload === true) : []),
        ...(!replacing ? [`WHEN NOT MATCHED THEN INSERT (${names(columns)}) VALUES (${prefixed('s', columns)})`] : []),
      ].join('\n'),
    );
  }
  if (hasRejects || replacing) {
    // The rejects table is not partitioned, so there is no predicate to prune it with: this
    // MERGE reads the lineage columns of every rejected row so far. It grows with rejected
    // rows only, which rejects.maxShare bounds per run. (Verify leaves the excluded keys out
    // of the run's rejects file, so no filter is needed here.)
    const source = `SELECT ${names(REJECT_COLUMNS)}${replacing ? `, 'insert' AS ${OP}` : ''} FROM ${q(t.rejectsStaging)} WHERE ${q('run_id')} = ${run}`;
    const deletes =
      replacing && replace.length > 0
        ? [
            `  UNION ALL`,
            `  SELECT ${prefixed('o', REJECT_COLUMNS)}, 'delete' AS ${OP} FROM ${q(t.rejects)} AS o`,
            `  WHERE o.${q('source_key')} IN (${keyList(replace.map((r) => r.key))})`,
            `    AND NOT EXISTS (SELECT 1 FROM ${q(t.rejectsStaging)} AS n WHERE n.${q('run_id')} = ${run} AND ${sameLineage('n', 'o')})`,
          ].join('\n')
        : undefined;
    const rejectValues = REJECT_COLUMNS.filter((c) => !LINEAGE_COLUMNS.some((l) => l.name === c.name));
    statements.push(
      [
        `MERGE INTO ${q(t.rejects)} AS t`,
        `USING (${source}${deletes ? `\n${deletes}` : ''}) AS s`,
        `ON (${lineageMatch})`,
        ...(replacing
          ? mergeActions(rejectValues, REJECT_COLUMNS, options.reload === true)
          : [`WHEN NOT MATCHED THEN INSERT (${names(REJECT_COLUMNS)}) VALUES (${prefixed('s', REJECT_COLUMNS)})`]),
      ].join('\n'),
    );
  }
  return statements;
}

/** The WHEN clauses of a replacing MERGE: delete the replaced rows, insert the staged ones (a reload updates them). */
function mergeActions(values: readonly Column[], columns: readonly Column[], reload: boolean): string[] {
  return [
    `WHEN MATCHED AND s.${OP} = 'delete' THEN DELETE`,
    ...(reload && values.length > 0
      ? [`WHEN MATCHED THEN UPDATE SET ${values.map((c) => `${q(c.name)} = s.${q(c.name)}`).join(', ')}`]
      : []),
    `WHEN NOT MATCHED AND s.${OP} = 'insert' THEN INSERT (${names(columns)}) VALUES (${prefixed('s', columns)})`,
  ];
}

/**
 * Statements that remove the rows (and rejects) of deleted input objects: one `DELETE` per table
 * (per 100 days of the main table), each one commit
 * (https://docs.aws.amazon.com/athena/latest/ug/delete-statement.html). `days` are the days the
 * rows are on, from the ledger; null when unknown (no partition predicate then).
 */
export function removeStatements(p: Pipeline, keys: readonly string[], days: readonly string[] | null): string[] {
  if (keys.length === 0) return [];
  const t = tableNames(p);
  const ofKeys = `${q('source_key')} IN (${keyList(keys)})`;
  const main =
    days === null
      ? [`DELETE FROM ${q(t.main)} WHERE ${ofKeys}`]
      : batches(checkDays(days), MAX_DAYS_PER_STATEMENT).map(
          (batch) => `DELETE FROM ${q(t.main)} WHERE ${ofKeys} AND ${partitionPredicate(p, batch)}`,
        );
  return [...main, `DELETE FROM ${q(t.rejects)} WHERE ${ofKeys}`];
}

/**
 * The column of a derived table that holds the day its rows are for: its first `date` key
 * column. Rows of a rebuilt day that the rebuild no longer produces are deleted through it.
 */
export function derivedDayColumn(d: Pipeline['derived'][number]): string | undefined {
  return d.key.find((k) => d.columns.find((c) => c.name === k)?.type === 'date');
}

/**
 * One atomic MERGE per derived table and batch of days: readers never see a half-rebuilt day.
 * The key match is null-safe (`IS NOT DISTINCT FROM`, in Trino and DuckDB alike): with `=`, a
 * NULL key never matches, so each rebuild would insert its row again.
 *
 * When the derived table has a `date` key column (see {@link derivedDayColumn}), the rows of
 * the rebuilt days that the rebuild no longer yields (a path whose rows were all replaced or
 * removed) are deleted in the same MERGE: the source adds them with `sluice_op = 'delete'`.
 * Without one, such rows stay (the MERGE only updates and inserts).
 */
export function deriveStatements(p: Pipeline, days: readonly string[]): string[] {
  return p.derived.flatMap((d) => {
    const values = d.columns.filter((c) => !d.key.includes(c.name));
    const dayColumn = derivedDayColumn(d);
    const keyMatch = (a: string, b: string) =>
      d.key.map((k) => `${a}.${q(k)} IS NOT DISTINCT FROM ${b}.${q(k)}`).join(' AND ');
    return batches(checkDays(days), MAX_DAYS_PER_STATEMENT).map((batch) => {
      const sql = d.sql.trim().replaceAll('{{days}}', dateLiterals(batch));
      const fresh = q('sluice_fresh');
      const source = dayColumn
        ? [
            `WITH ${fresh} AS (${sql})`,
            `  SELECT ${names(d.columns)}, 'upsert' AS ${OP} FROM ${fresh}`,
            `  UNION ALL`,
            `  SELECT ${prefixed('o', d.columns)}, 'delete' AS ${OP} FROM ${q(d.name)} AS o`,
            `  WHERE o.${q(dayColumn)} IN (${dateLiterals(batch)}) AND NOT EXISTS (SELECT 1 FROM ${fresh} AS n WHERE ${keyMatch('n', 'o')})`,
          ].join('\n')
        : sql;
      return [
        `MERGE INTO ${q(d.name)} AS t`,
        `USING (${source}) AS s`,
        `ON (${keyMatch('t', 's')})`,
        ...(dayColumn ? [`WHEN MATCHED AND s.${OP} = 'delete' THEN DELETE`] : []),
        ...(values.length > 0
          ? [`WHEN MATCHED THEN UPDATE SET ${values.map((c) => `${q(c.name)} = s.${q(c.name)}`).join(', ')}`]
          : []),
        `WHEN NOT MATCHED${dayColumn ? ` AND s.${OP} = 'upsert'` : ''} THEN INSERT (${names(d.columns)}) VALUES (${prefixed('s', d.columns)})`,
      ].join('\n');
    });
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
