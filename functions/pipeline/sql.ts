/**
 * The warehouse SQL of a pipeline, in Athena's dialect (Trino + Iceberg). The state
 * machine sends these statements to Athena; the embedded runtime sends the same text
 * to DuckDB through `runtime/dialect.ts`. Identifiers come from the validated
 * definition; every value from a file name or an event goes through `literal`.
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

/** Athena DDL spells integer `int` (DML says `integer`); DuckDB accepts both. */
function ddlType(c: Column): string {
  if (c.type === 'integer') return 'int';
  if (c.type === 'decimal') return `decimal(${c.precision}, ${c.scale})`;
  return c.type;
}
const columnList = (columns: readonly Column[]) => columns.map((c) => `${c.name} ${ddlType(c)}`).join(', ');
const names = (columns: readonly Column[]) => columns.map((c) => c.name).join(', ');
const prefixed = (alias: string, columns: readonly Column[]) => columns.map((c) => `${alias}.${c.name}`).join(', ');

export const tableNames = (p: Pipeline) => ({
  main: p.table.name,
  rejects: `${p.table.name}_rejects`,
  staging: `${p.table.name}_staging`,
  rejectsStaging: `${p.table.name}_rejects_staging`,
});

/** Columns of the main table and of its staging files: the table's own, then lineage. */
export const loadedColumns = (p: Pipeline): readonly Column[] => [...p.table.columns, ...LINEAGE_COLUMNS];

function icebergTable(name: string, columns: readonly Column[], location: string, partitionBy?: string): string {
  return [
    `CREATE TABLE IF NOT EXISTS ${name} (${columnList(columns)})`,
    ...(partitionBy ? [`PARTITIONED BY (${partitionBy})`] : []),
    `LOCATION ${literal(location)}`,
    `TBLPROPERTIES ('table_type'='ICEBERG', 'format'='parquet', 'write_compression'='zstd')`,
  ].join('\n');
}

function stagingTable(name: string, columns: readonly Column[], location: string): string {
  return [
    `CREATE EXTERNAL TABLE IF NOT EXISTS ${name} (${columnList(columns)})`,
    'PARTITIONED BY (run_id string)',
    'STORED AS PARQUET',
    `LOCATION ${literal(location)}`,
    "TBLPROPERTIES ('projection.enabled'='true', 'projection.run_id.type'='injected',",
    `  'storage.location.template'=${literal(`${location}run_id=\${run_id}/`)})`,
  ].join('\n');
}

/** DDL for every table of the pipeline; idempotent (`IF NOT EXISTS`). */
export function setupStatements(p: Pipeline, at: Locations): string[] {
  const t = tableNames(p);
  const warehouse = (table: string) => `s3://${at.warehouseBucket}/${table}/`;
  return [
    icebergTable(t.main, loadedColumns(p), warehouse(t.main), `day(${p.table.partitionDay})`),
    icebergTable(t.rejects, REJECT_COLUMNS, warehouse(t.rejects)),
    ...p.derived.map((d) => icebergTable(d.name, d.columns, warehouse(d.name))),
    stagingTable(t.staging, loadedColumns(p), `s3://${at.workingBucket}/staging/${p.name}/`),
    stagingTable(
      t.rejectsStaging,
      REJECT_COLUMNS.filter((c) => c.name !== 'run_id'),
      `s3://${at.workingBucket}/rejects/${p.name}/`,
    ),
  ];
}

/** Identifies a version of the DDL, so that a changed definition runs its setup again. */
export function setupHash(statements: readonly string[]): string {
  return createHash('sha256').update(statements.join(';\n')).digest('hex').slice(0, 16);
}

const dateLiterals = (days: readonly string[]) => days.map((d) => `DATE ${literal(d)}`).join(', ');

function batches<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

const lineageMatch =
  't.source_key = s.source_key AND t.source_version = s.source_version AND t.source_offset = s.source_offset';

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
    for (const batch of batches(days, MAX_DAYS_PER_STATEMENT)) {
      statements.push(
        [
          `MERGE INTO ${t.main} AS t`,
          `USING (SELECT ${names(columns)} FROM ${t.staging}`,
          `  WHERE run_id = ${literal(runId)} AND CAST(${p.table.partitionDay} AS DATE) IN (${dateLiterals(batch)})) AS s`,
          `ON (${lineageMatch})`,
          `WHEN NOT MATCHED THEN INSERT (${names(columns)}) VALUES (${prefixed('s', columns)})`,
        ].join('\n'),
      );
    }
  }
  if (hasRejects) {
    statements.push(
      [
        `MERGE INTO ${t.rejects} AS t`,
        `USING (SELECT ${names(REJECT_COLUMNS)} FROM ${t.rejectsStaging} WHERE run_id = ${literal(runId)}) AS s`,
        `ON (${lineageMatch})`,
        `WHEN NOT MATCHED THEN INSERT (${names(REJECT_COLUMNS)}) VALUES (${prefixed('s', REJECT_COLUMNS)})`,
      ].join('\n'),
    );
  }
  return statements;
}

/** One atomic MERGE per derived table and batch of days: readers never see a half-rebuilt day. */
export function deriveStatements(p: Pipeline, days: readonly string[]): string[] {
  return p.derived.flatMap((d) => {
    const values = d.columns.filter((c) => !d.key.includes(c.name));
    return batches(days, MAX_DAYS_PER_STATEMENT).map((batch) =>
      [
        `MERGE INTO ${d.name} AS t`,
        `USING (${d.sql.trim().replaceAll('{{days}}', dateLiterals(batch))}) AS s`,
        `ON (${d.key.map((k) => `t.${k} = s.${k}`).join(' AND ')})`,
        ...(values.length > 0
          ? [`WHEN MATCHED THEN UPDATE SET ${values.map((c) => `${c.name} = s.${c.name}`).join(', ')}`]
          : []),
        `WHEN NOT MATCHED THEN INSERT (${names(d.columns)}) VALUES (${prefixed('s', d.columns)})`,
      ].join('\n'),
    );
  });
}
