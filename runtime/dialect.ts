/**
 * Athena (Trino + Iceberg + Hive DDL) to DuckDB: every difference between the SQL the state
 * machine sends to Athena and what the local warehouse runs is translated here, and only here.
 * Statements that need no translation pass through unchanged; anything this module cannot
 * translate faithfully is rejected with an error that names the clause, rather than guessed.
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

export type Translated = ExternalTable | DuckDbStatement;

export class DialectError extends Error {
  override name = 'Sluice.DialectError';
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

const CREATE =
  /^\s*CREATE\s+(EXTERNAL\s+)?TABLE\s+(IF\s+NOT\s+EXISTS\s+)?((?:[A-Za-z_][A-Za-z0-9_]*\.)?(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`|"[^"]+"))\s*\(/i;

/**
 * Translates one Athena statement.
 * - `CREATE TABLE ... PARTITIONED BY (day(ts)) LOCATION ... TBLPROPERTIES ('table_type'='ICEBERG')`:
 *   a DuckDB table with the same columns. Iceberg partitioning, location and properties are
 *   storage details with no DuckDB counterpart; a table that is not Iceberg is rejected.
 * - `CREATE EXTERNAL TABLE ... LOCATION 's3://...'`: an {@link ExternalTable} for the warehouse.
 * - Everything else (MERGE, SELECT, INSERT...) is DuckDB-compatible as generated and passes
 *   through: DuckDB 1.5 runs Trino's `MERGE INTO t USING (...) AS s ON (...) WHEN [NOT] MATCHED`.
 */
export function translate(statement: string): Translated {
  const sql = statement.trim().replace(/;\s*$/, '');
  const create = CREATE.exec(sql);
  if (!create?.[3]) return { kind: 'sql', sql };
  const external = Boolean(create[1]);
  const ifNotExists = Boolean(create[2]);
  const name = unquoteIdentifier(create[3].includes('.') ? (create[3].split('.').pop() ?? '') : create[3]);
  const open = create[0].length - 1;
  const close = matchingParen(sql, open);
  const columns = parseColumns(sql.slice(open + 1, close - 1));
  const clauses = parseClauses(sql.slice(close));
  const columnList = columns.map((c) => `${c.name} ${c.type}`).join(', ');

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
  return { kind: 'sql', sql: `CREATE TABLE ${ifNotExists ? 'IF NOT EXISTS ' : ''}${name} (${columnList})` };
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
  const pattern = new RegExp(`(?:^|[^A-Za-z0-9_])${column}\\s*=\\s*'((?:[^']|'')*)'`, 'gi');
  for (const match of sql.matchAll(pattern)) values.add((match[1] ?? '').replaceAll("''", "'"));
  return values.size === 1 ? [...values][0] : undefined;
}
