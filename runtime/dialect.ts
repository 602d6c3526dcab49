/**
 * Athena (Trino + Iceberg + Hive DDL) to DuckDB: every difference between the SQL the state
 * machine sends to Athena and what the local warehouse runs is translated here, and only here.
 * Statements that need no translation pass through unchanged; anything this module cannot
 * translate faithfully is rejected with an error that names the clause, rather than guessed.
 *
 * Athena DDL quotes identifiers with backticks, its DML with double quotes
 * (https://docs.aws.amazon.com/athena/latest/ug/reserved-words.html); DuckDB knows only
 * double quotes, so every backticked identifier becomes a double-quoted one first, and the
 * DuckDB statements written here quote every identifier too.
 */

export interface ColumnDefinition {
  readonly name: string;
  readonly type: string;
}

/** `CREATE EXTERNAL TABLE`: the local warehouse records it and serves it as a view over the Parquet under `location`. */
export interface ExternalTable {
  readonly kind: 'external-table';
  readonly name: string;
  /** `s3://bucket/prefix/` */
  readonly location: string;
  readonly columns: readonly ColumnDefinition[];
  /** Hive partition columns (`PARTITIONED BY (run_id string)`): folders `run_id=<value>/` under the location. */
  readonly partitions: readonly ColumnDefinition[];
  readonly ifNotExists: boolean;
}

/** Any other statement, in DuckDB's dialect. */
export interface DuckDbStatement {
  readonly kind: 'sql';
  readonly sql: string;
}

/**
 * `ALTER TABLE t ADD COLUMNS (...)`. `sql` adds them to a DuckDB table, one
 * `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` per column, so a replay is harmless. When `name`
 * is an external table of the warehouse (a staging table), the warehouse must instead add
 * `columns` to the columns it records for that table: it is not a DuckDB table.
 */
export interface AddColumns {
  readonly kind: 'add-columns';
  readonly name: string;
  readonly columns: readonly ColumnDefinition[];
  readonly sql: string;
}

export type Translated = ExternalTable | DuckDbStatement | AddColumns;

export class DialectError extends Error {
  override name = 'Sluice.DialectError';
}

/** A DuckDB identifier: double quotes, `"` doubled. */
export const quoteDuckDb = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * Rewrites every backticked identifier (Athena DDL) as a double-quoted one (DuckDB), leaving
 * string literals and double-quoted identifiers as they are.
 */
export function backticksToDoubleQuotes(sql: string): string {
  let out = '';
  for (let i = 0; i < sql.length; ) {
    const c = sql[i];
    if (c === "'" || c === '"') {
      const end = skipQuoted(sql, i);
      out += sql.slice(i, end);
      i = end;
    } else if (c === '`') {
      const end = skipQuoted(sql, i);
      out += quoteDuckDb(sql.slice(i + 1, end - 1).replaceAll('``', '`'));
      i = end;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Skips a quoted literal or identifier starting at `i` (the quote); returns the index after it. */
function skipQuoted(sql: string, i: number): number {
  const quote = sql[i];
  let j = i + 1;
  while (j < sql.length) {
    if (sql[j] === quote) {
      if (sql[j + 1] === quote) j += 2;
      else return j + 1;
    } else j++;
  }
  throw new DialectError(`unterminated ${quote === "'" ? 'string literal' : 'quoted identifier'} in: ${sql}`);
}

/** Index just after the parenthesis matching the one at `open`. */
function matchingParen(sql: string, open: number): number {
  let depth = 0;
  for (let i = open; i < sql.length; ) {
    const c = sql[i];
    if (c === "'" || c === '"') {
      i = skipQuoted(sql, i);
      continue;
    }
    if (c === '(') depth++;
    else if (c === ')') {
      depth--;
      if (depth === 0) return i + 1;
    }
    i++;
  }
  throw new DialectError(`unbalanced parentheses in: ${sql}`);
}

/** Splits on commas that are outside parentheses and quotes. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; ) {
    const c = text[i];
    if (c === "'" || c === '"') {
      i = skipQuoted(text, i);
      continue;
    }
    if (c === '(' || c === '<') depth++;
    else if (c === ')' || c === '>') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
    i++;
  }
  parts.push(text.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p !== '');
}

const unquoteIdentifier = (name: string) =>
  /^[`"].*[`"]$/.test(name) ? name.slice(1, -1).replaceAll('""', '"') : name.toLowerCase();

function parseColumns(list: string): ColumnDefinition[] {
  return splitTopLevel(list).map((definition) => {
    const match = /^([A-Za-z_][A-Za-z0-9_]*|`[^`]+`|"[^"]+")\s+(.+)$/s.exec(definition);
    if (!match?.[1] || !match[2]) throw new DialectError(`cannot read the column definition "${definition}"`);
    return { name: unquoteIdentifier(match[1]), type: duckDbType(match[2].trim()) };
  });
}

/**
 * Athena DDL types to DuckDB types. DuckDB accepts Athena's primitive names (string, int,
 * bigint, double, boolean, date, timestamp, decimal(p,s), varchar(n)...) as they are;
 * Hive's complex type syntax (array<...>, map<...>, struct<...>) is not translated.
 */
export function duckDbType(type: string): string {
  if (/[<>]/.test(type)) throw new DialectError(`the complex column type "${type}" is not supported locally`);
  return type;
}

/** Reads the clauses after a CREATE TABLE's column list: `KEYWORD ... ` up to the next known keyword. */
function parseClauses(rest: string): Map<string, string> {
  const clauses = new Map<string, string>();
  const keyword = /^(PARTITIONED\s+BY|CLUSTERED\s+BY|STORED\s+AS|LOCATION|TBLPROPERTIES|ROW\s+FORMAT|COMMENT|WITH)\b/i;
  let text = rest.trim().replace(/;\s*$/, '');
  while (text !== '') {
    const match = keyword.exec(text);
    if (!match?.[1]) throw new DialectError(`cannot translate the clause "${text.slice(0, 60)}" for DuckDB`);
    const name = match[1].toUpperCase().replace(/\s+/g, ' ');
    text = text.slice(match[0].length).trim();
    let end: number;
    if (text.startsWith('(')) end = matchingParen(text, 0);
    else if (text.startsWith("'")) end = skipQuoted(text, 0);
    else end = /^\S+/.exec(text)?.[0].length ?? 0;
    clauses.set(name, text.slice(0, end));
    text = text.slice(end).trim();
  }
  return clauses;
}

const stringLiteral = (text: string | undefined) =>
  text?.startsWith("'") ? text.slice(1, -1).replaceAll("''", "'") : undefined;

const NAME = '(?:[A-Za-z_][A-Za-z0-9_]*\\.)?(?:[A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")+")';
const CREATE = new RegExp(`^\\s*CREATE\\s+(EXTERNAL\\s+)?TABLE\\s+(IF\\s+NOT\\s+EXISTS\\s+)?(${NAME})\\s*\\(`, 'i');
const ALTER_ADD = new RegExp(`^\\s*ALTER\\s+TABLE\\s+(${NAME})\\s+ADD\\s+COLUMNS\\s*\\(`, 'i');
const OPTIMIZE = new RegExp(
  `^\\s*OPTIMIZE\\s+(${NAME})\\s+REWRITE\\s+DATA\\s+USING\\s+BIN_PACK(?:\\s+WHERE\\s+([\\s\\S]+))?$`,
  'i',
);

/** The table name of `[db.]name`, without the database and unquoted. */
const tableName = (qualified: string) => {
  const parts = /^(?:[A-Za-z_][A-Za-z0-9_]*\.)?(.+)$/s.exec(qualified);
  return unquoteIdentifier(parts?.[1] ?? qualified);
};

/**
 * Translates one Athena statement.
 * - `CREATE TABLE ... PARTITIONED BY (day(ts)) LOCATION ... TBLPROPERTIES ('table_type'='ICEBERG')`:
 *   a DuckDB table with the same columns. Iceberg partitioning, location and properties are
 *   storage details with no DuckDB counterpart; a table that is not Iceberg is rejected.
 * - `CREATE EXTERNAL TABLE ... LOCATION 's3://...'`: an {@link ExternalTable} for the warehouse.
 * - `ALTER TABLE t ADD COLUMNS (...)`: an {@link AddColumns}, one idempotent DuckDB
 *   `ADD COLUMN IF NOT EXISTS` per column (or, for an external table, columns to record).
 * - `OPTIMIZE t REWRITE DATA USING BIN_PACK [WHERE ...]`: a `SELECT ... LIMIT 0` that checks the
 *   table and the predicate and compacts nothing (DuckDB has no Iceberg data files).
 * - `VACUUM t`: DuckDB's own VACUUM, a documented no-op.
 * - Everything else (MERGE, SELECT, INSERT...) is DuckDB-compatible as generated and passes
 *   through: DuckDB 1.5 runs Trino's `MERGE INTO t USING (...) AS s ON (...) WHEN [NOT] MATCHED`,
 *   with `IS NOT DISTINCT FROM` in its ON clause.
 * Backticked identifiers become double-quoted ones in every statement.
 */
export function translate(statement: string): Translated {
  const sql = backticksToDoubleQuotes(statement.trim().replace(/;\s*$/, ''));
  const alter = ALTER_ADD.exec(sql);
  if (alter?.[1]) return addColumns(sql, alter);
  const optimize = OPTIMIZE.exec(sql);
  if (optimize?.[1]) {
    // Nothing to compact: DuckDB keeps a table in its own file, not in Iceberg data files.
    // The statement still checks that the table and the columns of its predicate exist.
    const name = quoteDuckDb(tableName(optimize[1]));
    return { kind: 'sql', sql: `SELECT NULL FROM ${name}${optimize[2] ? ` WHERE ${optimize[2]}` : ''} LIMIT 0` };
  }
  // `VACUUM "t"` passes through to DuckDB's own VACUUM, which is a no-op kept for PostgreSQL
  // compatibility (https://duckdb.org/docs/stable/sql/statements/vacuum) that fails on a
  // missing table: there are no snapshots or orphan files to remove locally.
  const create = CREATE.exec(sql);
  if (!create?.[3]) return { kind: 'sql', sql };
  const external = Boolean(create[1]);
  const ifNotExists = Boolean(create[2]);
  const name = tableName(create[3]);
  const open = create[0].length - 1;
  const close = matchingParen(sql, open);
  const columns = parseColumns(sql.slice(open + 1, close - 1));
  const clauses = parseClauses(sql.slice(close));
  const columnList = columns.map((c) => `${quoteDuckDb(c.name)} ${c.type}`).join(', ');

  if (external) {
    const location = stringLiteral(clauses.get('LOCATION'));
    if (!location?.startsWith('s3://')) {
      throw new DialectError(`external table ${name} needs LOCATION 's3://...'`);
    }
    const stored = clauses.get('STORED AS')?.toUpperCase();
    if (stored !== 'PARQUET') {
      throw new DialectError(
        `external table ${name}: only STORED AS PARQUET is served locally (got ${stored ?? 'none'})`,
      );
    }
    const partitionedBy = clauses.get('PARTITIONED BY');
    const partitions = partitionedBy ? parseColumns(partitionedBy.slice(1, -1)) : [];
    return {
      kind: 'external-table',
      name,
      location: location.endsWith('/') ? location : `${location}/`,
      columns,
      partitions,
      ifNotExists,
    };
  }

  const properties = clauses.get('TBLPROPERTIES') ?? '';
  if (!/'table_type'\s*=\s*'iceberg'/i.test(properties)) {
    throw new DialectError(`table ${name}: only Iceberg tables (TBLPROPERTIES ('table_type'='ICEBERG')) are managed`);
  }
  return {
    kind: 'sql',
    sql: `CREATE TABLE ${ifNotExists ? 'IF NOT EXISTS ' : ''}${quoteDuckDb(name)} (${columnList})`,
  };
}

/** `ALTER TABLE t ADD COLUMNS (a type, ...)`: DuckDB adds one column per statement. */
function addColumns(sql: string, match: RegExpExecArray): AddColumns {
  const name = tableName(match[1] ?? '');
  const open = match[0].length - 1;
  const close = matchingParen(sql, open);
  const rest = sql.slice(close).trim();
  if (rest !== '')
    throw new DialectError(`cannot translate "${rest.slice(0, 60)}" after ALTER TABLE ${name} ADD COLUMNS`);
  const columns = parseColumns(sql.slice(open + 1, close - 1));
  if (columns.length === 0) throw new DialectError(`ALTER TABLE ${name} ADD COLUMNS names no column`);
  return {
    kind: 'add-columns',
    name,
    columns,
    sql: columns
      .map((c) => `ALTER TABLE ${quoteDuckDb(name)} ADD COLUMN IF NOT EXISTS ${quoteDuckDb(c.name)} ${c.type}`)
      .join(';\n'),
  };
}

/**
 * An external table with the columns of an {@link AddColumns} appended (those it does not
 * have yet, so a replay changes nothing): what the warehouse records when the table altered
 * is one of its external tables rather than a DuckDB table.
 */
export function withAddedColumns(table: ExternalTable, change: AddColumns): ExternalTable {
  const names = new Set([...table.columns, ...table.partitions].map((c) => c.name));
  return { ...table, columns: [...table.columns, ...change.columns.filter((c) => !names.has(c.name))] };
}

/** An identifier as it may appear in a statement: a word not preceded by `.` or part of a longer word. */
export function referencesTable(sql: string, table: string): boolean {
  const code = sql.replace(/'(?:[^']|'')*'/g, "''");
  return new RegExp(`(^|[^A-Za-z0-9_.])"?${table}"?($|[^A-Za-z0-9_])`, 'i').test(code);
}

/**
 * The partition value a statement selects with `<column> = '<value>'`, if exactly one: the
 * local warehouse then downloads only that partition (what Athena's partition projection does).
 */
export function partitionFilter(sql: string, column: string): string | undefined {
  // With an OR anywhere, the filter may not restrict this table's rows: read every partition.
  if (/\bOR\b/i.test(sql.replace(/'(?:[^']|'')*'/g, "''"))) return undefined;
  const values = new Set<string>();
  const pattern = new RegExp(`(?:^|[^A-Za-z0-9_])"?${column}"?\\s*=\\s*'((?:[^']|'')*)'`, 'gi');
  for (const match of sql.matchAll(pattern)) values.add((match[1] ?? '').replaceAll("''", "'"));
  return values.size === 1 ? [...values][0] : undefined;
}
