/**
 * A small in-process stand-in for the Athena API, over the local warehouse: the state machine
 * calls it through `arn:aws:states:::aws-sdk:athena:startQueryExecution`, `...:getQueryExecution`
 * and `...:stopQueryExecution`, exactly as it calls Athena on AWS, so the ASL's polling loop
 * (start, Wait, get, Choice) is the code that runs locally too. Its methods take and return the
 * shapes of the AWS SDK's StartQueryExecution / GetQueryExecution / StopQueryExecution (without
 * `$metadata`), so a later change can serve the same registry as the Athena HTTP API.
 *
 * As Athena does, StartQueryExecution returns an id at once and the query runs in the background.
 * Queries run one at a time, in the order they were started (the DuckDB file has one writer).
 * GetQueryExecution reports QUEUED, RUNNING, then SUCCEEDED, FAILED (StateChangeReason: the
 * engine's message) or CANCELLED. Athena reports an Iceberg commit conflict as a FAILED query
 * whose reason contains `ICEBERG_COMMIT_ERROR`; the local engine's message is kept as it is, so
 * a run function that fails that way reaches the ASL's Choice unchanged.
 *
 * Constructed with `query` (rather than `run`), the registry keeps each SUCCEEDED query's result
 * for GetQueryResults (the Athena HTTP API, `athena-api.ts`), shaped as Athena shapes it
 * ({@link athenaResults}), and ListQueryExecutions lists the queries newest first. Results are
 * kept for the last {@link DEFAULT_RESULTS_KEPT} queries and up to {@link DEFAULT_RESULT_BYTES_KEPT}
 * (estimated) in all, oldest dropped first; the newest result is always kept, however large.
 * A dropped result's GetQueryResults fails with InvalidRequestException saying so.
 * https://docs.aws.amazon.com/athena/latest/APIReference/API_GetQueryExecution.html
 * https://docs.aws.amazon.com/athena/latest/APIReference/API_QueryExecutionStatus.html
 * https://docs.aws.amazon.com/athena/latest/APIReference/API_GetQueryResults.html
 * https://docs.aws.amazon.com/athena/latest/APIReference/API_ListQueryExecutions.html
 *
 * Iceberg's optimistic concurrency, as Athena reports it: a statement that writes an Iceberg table
 * (MERGE, INSERT, DELETE, UPDATE, OPTIMIZE) and was submitted before another write to the same table
 * committed fails, FAILED with `ICEBERG_COMMIT_ERROR: Failed to commit Iceberg update to table ...`,
 * and changes nothing: the later of two overlapping commits loses, as on Athena
 * (https://repost.aws/knowledge-center/athena-iceberg-table-error). The local engine runs one
 * statement at a time, so "overlapping" is judged from the submission: the table's commits since
 * StartQueryExecution. With fault injection (`runtime/faults.ts`, `commit-conflict=<rate>`) a write
 * also fails that way at that rate, so that the state machine's retry path runs. Commits are
 * counted in this process (the lease, functions/lease/, serializes runs across processes).
 */
import { randomUUID } from 'node:crypto';
import {
  type DuckDBResultReader,
  type DuckDBType,
  DuckDBTypeId,
  type DuckDBValue,
  ResultReturnType,
} from '@duckdb/node-api';
import { type Faults, faults as processFaults } from './faults.ts';

export type QueryState = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

/** Athena's StatementType: DDL, DML or UTILITY. */
export type StatementType = 'DDL' | 'DML' | 'UTILITY';

export interface StartQueryExecutionInput {
  readonly QueryString?: string;
  readonly WorkGroup?: string;
  readonly QueryExecutionContext?: { readonly Database?: string; readonly Catalog?: string };
  readonly ClientRequestToken?: string;
}

export interface QueryExecutionStatus {
  readonly State: QueryState;
  /** Only for FAILED and CANCELLED queries. */
  readonly StateChangeReason?: string;
  readonly SubmissionDateTime: string;
  readonly CompletionDateTime?: string;
}

export interface QueryExecution {
  readonly QueryExecutionId: string;
  readonly Query: string;
  readonly StatementType: StatementType;
  readonly WorkGroup: string;
  readonly QueryExecutionContext: { readonly Database?: string; readonly Catalog?: string };
  readonly Status: QueryExecutionStatus;
}

/** The Athena API as the state machine's aws-sdk integration calls it. */
export interface AthenaApi {
  startQueryExecution(input: StartQueryExecutionInput): Promise<{ QueryExecutionId: string }>;
  getQueryExecution(input: { QueryExecutionId?: string }): Promise<{ QueryExecution: QueryExecution }>;
  stopQueryExecution(input: { QueryExecutionId?: string }): Promise<Record<string, never>>;
}

/** One column of a result, as Athena's ResultSetMetadata.ColumnInfo describes it. */
export interface ColumnInfo {
  readonly CatalogName: string;
  readonly SchemaName: string;
  readonly TableName: string;
  readonly Name: string;
  readonly Label: string;
  /** Athena's (Trino's) type name: varchar, integer, bigint, double, boolean, date, timestamp, decimal, array, map, row... */
  readonly Type: string;
  readonly Precision: number;
  readonly Scale: number;
  readonly Nullable: 'NOT_NULL' | 'NULLABLE' | 'UNKNOWN';
  readonly CaseSensitive: boolean;
}

/** A statement's whole result, as the registry keeps it for GetQueryResults. */
export interface QueryResults {
  readonly columns: readonly ColumnInfo[];
  /** Each value as Athena prints it in VarCharValue; `null` for SQL NULL. */
  readonly rows: readonly (readonly (string | null)[])[];
  /** Rows written by INSERT INTO, UPDATE, DELETE, MERGE or CREATE TABLE AS SELECT. */
  readonly updateCount?: number;
}

export interface GetQueryResultsInput {
  readonly QueryExecutionId?: string;
  /** 1 to 1000 rows, the header row included. @default 1000 */
  readonly MaxResults?: number;
  readonly NextToken?: string;
}

/** A value: no `VarCharValue` for NULL. */
export interface Datum {
  readonly VarCharValue?: string;
}

export interface GetQueryResultsOutput {
  readonly UpdateCount: number;
  readonly ResultSet: {
    readonly Rows: { readonly Data: Datum[] }[];
    readonly ResultSetMetadata: { readonly ColumnInfo: ColumnInfo[] };
  };
  readonly NextToken?: string;
}

export interface ListQueryExecutionsInput {
  readonly WorkGroup?: string;
  /** 0 to 50. @default 50 */
  readonly MaxResults?: number;
  readonly NextToken?: string;
}

/** Athena's error for a bad request (unknown query id, missing QueryString); the integration names it `Athena.InvalidRequestException`. */
export class AthenaInvalidRequestError extends Error {
  override name = 'Athena.InvalidRequestException';
}

/** How many results the registry keeps by default (the newest queries'). */
export const DEFAULT_RESULTS_KEPT = 100;
/** How large the kept results may be in all by default (estimated from their values). */
export const DEFAULT_RESULT_BYTES_KEPT = 64 * 1024 * 1024;

interface LocalAthenaCommonOptions {
  /** @default 'primary' (Athena's default workgroup) */
  readonly defaultWorkGroup?: string;
  /** @default {@link DEFAULT_RESULTS_KEPT} */
  readonly resultsKept?: number;
  /** @default {@link DEFAULT_RESULT_BYTES_KEPT} */
  readonly resultBytesKept?: number;
  /** The faults to inject (`commit-conflict`), read at each statement. @default the process's (`SLUICE_FAULTS`) */
  readonly faults?: () => Faults;
}

export type LocalAthenaOptions = LocalAthenaCommonOptions &
  (
    | {
        /** Runs one statement; rejects with the engine's message when it fails. Its result is not kept. */
        readonly run: (sql: string) => Promise<void>;
        readonly query?: undefined;
      }
    | {
        /** Runs one statement and returns its result (e.g. `warehouse.read(sql, athenaResults)`), kept for GetQueryResults. */
        readonly query: (sql: string) => Promise<QueryResults>;
        readonly run?: undefined;
      }
  );

interface Entry {
  execution: Omit<QueryExecution, 'Status'>;
  state: QueryState;
  reason?: string;
  submitted: string;
  completed?: string;
  /** StopQueryExecution while RUNNING: the statement cannot be interrupted; it ends CANCELLED. */
  stopRequested: boolean;
  /** A SUCCEEDED query's result, while the registry keeps it. */
  results?: QueryResults;
  /** The result was dropped to keep the registry within its bounds. */
  resultsDropped?: boolean;
  /** The Iceberg table the statement writes, and how many commits that table had when it was submitted. */
  writes?: { readonly table: string; readonly basis: number };
}

const DDL = /^(CREATE|ALTER|DROP|MSCK|COMMENT)\b/i;
const UTILITY = /^(SHOW|DESCRIBE|EXPLAIN|USE)\b/i;

const WRITE =
  /^(?:MERGE\s+INTO|INSERT\s+INTO|DELETE\s+FROM|UPDATE|OPTIMIZE)\s+((?:"(?:[^"]|"")+"|`[^`]+`|[A-Za-z_]\w*)(?:\s*\.\s*(?:"(?:[^"]|"")+"|`[^`]+`|[A-Za-z_]\w*))*)/i;
const NAME_PART = /"(?:[^"]|"")+"|`[^`]+`|[A-Za-z_]\w*/g;

/**
 * The table a statement commits to as an Iceberg write (MERGE INTO, INSERT INTO, DELETE FROM,
 * UPDATE, OPTIMIZE), lower-case and without its database; undefined for anything else.
 */
export function writtenTable(sql: string): string | undefined {
  const start = sql.replace(/^(\s+|--[^\n]*\n?|\/\*[\s\S]*?\*\/)+/, '');
  const name = WRITE.exec(start)?.[1];
  const last = name?.match(NAME_PART)?.at(-1);
  if (!last) return undefined;
  const unquoted = last.startsWith('"') ? last.slice(1, -1).replaceAll('""', '"') : last.replace(/^`|`$/g, '');
  return unquoted.toLowerCase();
}

/** Athena's StatementType of a statement (comments and parentheses at the start are skipped). */
function statementType(sql: string): StatementType {
  const start = sql.replace(/^(\s+|--[^\n]*\n?|\/\*[\s\S]*?\*\/|\()+/, '');
  if (DDL.test(start)) return 'DDL';
  if (UTILITY.test(start)) return 'UTILITY';
  return 'DML';
}

export class LocalAthena implements AthenaApi {
  private readonly options: LocalAthenaOptions;
  private readonly queries = new Map<string, Entry>();
  private readonly tokens = new Map<string, string>();
  /** The queries run one after another, in start order. */
  private queue: Promise<void> = Promise.resolve();
  /** Commits per Iceberg table (the written statements that succeeded), for the commit-conflict check. */
  private readonly commits = new Map<string, number>();
  /** The entries whose results are kept, oldest first, with their estimated sizes. */
  private readonly kept = new Map<Entry, number>();
  private keptBytes = 0;

  constructor(options: LocalAthenaOptions) {
    this.options = options;
  }

  async startQueryExecution(input: StartQueryExecutionInput): Promise<{ QueryExecutionId: string }> {
    const query = input.QueryString;
    if (typeof query !== 'string' || query.trim() === '') {
      throw new AthenaInvalidRequestError('StartQueryExecution: QueryString is required and must not be empty.');
    }
    // Athena's ClientRequestToken makes a retried start idempotent: the same token, the same query.
    const known = input.ClientRequestToken ? this.tokens.get(input.ClientRequestToken) : undefined;
    if (known) return { QueryExecutionId: known };
    const id = randomUUID();
    if (input.ClientRequestToken) this.tokens.set(input.ClientRequestToken, id);
    const entry: Entry = {
      execution: {
        QueryExecutionId: id,
        Query: query,
        StatementType: statementType(query),
        WorkGroup: input.WorkGroup ?? this.options.defaultWorkGroup ?? 'primary',
        QueryExecutionContext: { ...(input.QueryExecutionContext ?? {}) },
      },
      state: 'QUEUED',
      submitted: new Date().toISOString(),
      stopRequested: false,
    };
    const table = writtenTable(query);
    if (table !== undefined) entry.writes = { table, basis: this.commits.get(table) ?? 0 };
    this.queries.set(id, entry);
    this.queue = this.queue.then(() => this.runEntry(entry));
    return { QueryExecutionId: id };
  }

  async getQueryExecution(input: { QueryExecutionId?: string }): Promise<{ QueryExecution: QueryExecution }> {
    const entry = this.entry('GetQueryExecution', input.QueryExecutionId);
    const status: QueryExecutionStatus = {
      State: entry.state,
      ...(entry.reason !== undefined && (entry.state === 'FAILED' || entry.state === 'CANCELLED')
        ? { StateChangeReason: entry.reason }
        : {}),
      SubmissionDateTime: entry.submitted,
      ...(entry.completed ? { CompletionDateTime: entry.completed } : {}),
    };
    return { QueryExecution: { ...structuredClone(entry.execution), Status: status } };
  }

  async stopQueryExecution(input: { QueryExecutionId?: string }): Promise<Record<string, never>> {
    const entry = this.entry('StopQueryExecution', input.QueryExecutionId);
    if (entry.state === 'QUEUED') {
      this.finish(entry, 'CANCELLED', 'Query was cancelled by StopQueryExecution before it started.');
    } else if (entry.state === 'RUNNING') {
      entry.stopRequested = true;
    }
    return {};
  }

  /**
   * A SUCCEEDED query's rows, a page at a time: the first page starts with the header row (the
   * column names) when the statement returns rows (not for DDL and utility statements such as
   * SHOW, as on Athena), and the header counts toward MaxResults.
   */
  async getQueryResults(input: GetQueryResultsInput): Promise<GetQueryResultsOutput> {
    const entry = this.entry('GetQueryResults', input.QueryExecutionId);
    const max = input.MaxResults ?? 1000;
    if (!Number.isInteger(max) || max < 1 || max > 1000) {
      throw new AthenaInvalidRequestError(
        `1 validation error detected: Value '${max}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 1000`,
      );
    }
    if (entry.state !== 'SUCCEEDED') {
      if (entry.state === 'QUEUED' || entry.state === 'RUNNING') {
        throw new AthenaInvalidRequestError(`Query has not yet finished. Current state: ${entry.state}`);
      }
      throw new AthenaInvalidRequestError(entry.reason ?? `Query did not succeed. Final state: ${entry.state}`);
    }
    const results = entry.results;
    if (!results) {
      throw new AthenaInvalidRequestError(
        entry.resultsDropped
          ? `The results of query ${entry.execution.QueryExecutionId} are no longer kept: the local Athena keeps the results of the last ${this.options.resultsKept ?? DEFAULT_RESULTS_KEPT} queries, up to ${Math.round((this.options.resultBytesKept ?? DEFAULT_RESULT_BYTES_KEPT) / 1024 / 1024)} MiB. Run the query again.`
          : `The results of query ${entry.execution.QueryExecutionId} are not kept by this local Athena (it runs statements without reading their rows).`,
      );
    }
    const header = entry.execution.StatementType === 'DML' && results.columns.length > 0;
    const start = input.NextToken === undefined ? 0 : this.pageStart(entry, input.NextToken, results.rows.length);
    const rows: { Data: Datum[] }[] = [];
    if (start === 0 && header) rows.push({ Data: results.columns.map((c) => ({ VarCharValue: c.Name })) });
    const end = Math.min(results.rows.length, start + max - rows.length);
    for (const row of results.rows.slice(start, end)) {
      rows.push({ Data: row.map((value) => (value === null ? {} : { VarCharValue: value })) });
    }
    return {
      UpdateCount: results.updateCount ?? 0,
      ResultSet: { Rows: rows, ResultSetMetadata: { ColumnInfo: results.columns.map((c) => ({ ...c })) } },
      ...(end < results.rows.length ? { NextToken: pageToken(entry.execution.QueryExecutionId, end) } : {}),
    };
  }

  /** The ids of the workgroup's queries (default: the default workgroup), newest first, a page at a time. */
  async listQueryExecutions(
    input: ListQueryExecutionsInput,
  ): Promise<{ QueryExecutionIds: string[]; NextToken?: string }> {
    const max = input.MaxResults ?? 50;
    if (!Number.isInteger(max) || max < 0 || max > 50) {
      throw new AthenaInvalidRequestError(
        `1 validation error detected: Value '${max}' at 'maxResults' failed to satisfy constraint: Member must have value between 0 and 50`,
      );
    }
    const workGroup = input.WorkGroup ?? this.options.defaultWorkGroup ?? 'primary';
    const ids = [...this.queries.values()]
      .filter((entry) => entry.execution.WorkGroup === workGroup)
      .map((entry) => entry.execution.QueryExecutionId)
      .reverse();
    let start = 0;
    if (input.NextToken !== undefined) {
      // The token names the last id returned, so queries started between pages do not shift the pages.
      const after = decodeToken(input.NextToken)?.after;
      const index = typeof after === 'string' ? ids.indexOf(after) : -1;
      if (index < 0) throw new AthenaInvalidRequestError('The NextToken is not valid for ListQueryExecutions.');
      start = index + 1;
    }
    const page = ids.slice(start, start + max);
    const last = page.at(-1);
    return {
      QueryExecutionIds: page,
      ...(last !== undefined && start + page.length < ids.length ? { NextToken: encodeToken({ after: last }) } : {}),
    };
  }

  /** Resolves when every query started so far has ended (for shutdown and tests). */
  async idle(): Promise<void> {
    let seen: Promise<void>;
    do {
      seen = this.queue;
      await seen;
    } while (seen !== this.queue);
  }

  private entry(operation: string, id: string | undefined): Entry {
    const entry = id === undefined ? undefined : this.queries.get(id);
    if (!entry) {
      throw new AthenaInvalidRequestError(
        `${operation}: QueryExecution ${id ?? '(no QueryExecutionId given)'} was not found`,
      );
    }
    return entry;
  }

  private pageStart(entry: Entry, token: string, rows: number): number {
    const decoded = decodeToken(token);
    const offset = decoded?.offset;
    if (decoded?.id !== entry.execution.QueryExecutionId || typeof offset !== 'number' || offset < 0 || offset > rows) {
      throw new AthenaInvalidRequestError('The NextToken is not valid for this query.');
    }
    return offset;
  }

  /** Keeps a result, dropping the oldest ones beyond the bounds (never the newest). */
  private keep(entry: Entry, results: QueryResults): void {
    const size = estimateSize(results);
    entry.results = results;
    this.kept.set(entry, size);
    this.keptBytes += size;
    const maxCount = this.options.resultsKept ?? DEFAULT_RESULTS_KEPT;
    const maxBytes = this.options.resultBytesKept ?? DEFAULT_RESULT_BYTES_KEPT;
    for (const [old, oldSize] of this.kept) {
      if (old === entry || (this.kept.size <= maxCount && this.keptBytes <= maxBytes)) break;
      this.kept.delete(old);
      this.keptBytes -= oldSize;
      delete old.results;
      old.resultsDropped = true;
    }
  }

  private finish(entry: Entry, state: QueryState, reason?: string): void {
    entry.state = state;
    if (reason !== undefined) entry.reason = reason;
    entry.completed = new Date().toISOString();
  }

  /**
   * Athena's reason for a write that loses to a commit made since it was submitted (or that the
   * injected faults make lose); undefined when the statement may commit.
   */
  private commitConflict(entry: Entry): string | undefined {
    const writes = entry.writes;
    if (!writes) return undefined;
    const committed = (this.commits.get(writes.table) ?? 0) !== writes.basis;
    if (!committed && !(this.options.faults ?? processFaults)().roll('commit-conflict', writes.table)) return undefined;
    const database = entry.execution.QueryExecutionContext.Database ?? 'default';
    return (
      `ICEBERG_COMMIT_ERROR: Failed to commit Iceberg update to table: ${database}.${writes.table}: ` +
      (committed
        ? 'another write to the table committed after this query was submitted; nothing was changed, run the query again'
        : 'a commit conflict injected by SLUICE_FAULTS (commit-conflict); nothing was changed, run the query again')
    );
  }

  private async runEntry(entry: Entry): Promise<void> {
    if (entry.state !== 'QUEUED') return;
    entry.state = 'RUNNING';
    const conflict = this.commitConflict(entry);
    if (conflict) {
      this.finish(entry, 'FAILED', conflict);
      return;
    }
    try {
      const results = this.options.query
        ? await this.options.query(entry.execution.Query)
        : await this.options.run(entry.execution.Query);
      if (entry.writes) this.commits.set(entry.writes.table, (this.commits.get(entry.writes.table) ?? 0) + 1);
      if (entry.stopRequested) {
        // The local engine cannot interrupt a statement: it ran to its end, as a late cancel on Athena may.
        this.finish(entry, 'CANCELLED', 'Query was cancelled by StopQueryExecution while it ran.');
      } else {
        if (results) this.keep(entry, results);
        this.finish(entry, 'SUCCEEDED');
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.finish(entry, 'FAILED', message || 'The query failed without a message from the engine.');
    }
  }
}

const encodeToken = (value: Record<string, unknown>) => Buffer.from(JSON.stringify(value)).toString('base64url');

function decodeToken(token: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const pageToken = (id: string, offset: number) => encodeToken({ id, offset });

/** A rough size in memory: two bytes a character plus a slot a value. */
function estimateSize(results: QueryResults): number {
  let size = 256;
  for (const row of results.rows) {
    size += 64;
    for (const value of row) size += 16 + (value === null ? 0 : value.length * 2);
  }
  return size;
}

/** Athena's type name, precision and scale for a DuckDB type (Trino's names, as Athena reports them). */
function athenaType(type: DuckDBType): { name: string; precision: number; scale: number } {
  const of = (name: string, precision = 0, scale = 0) => ({ name, precision, scale });
  switch (type.typeId) {
    case DuckDBTypeId.BOOLEAN:
      return of('boolean');
    case DuckDBTypeId.TINYINT:
      return of('tinyint', 3);
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.UTINYINT:
      return of('smallint', 5);
    case DuckDBTypeId.INTEGER:
    case DuckDBTypeId.USMALLINT:
      return of('integer', 10);
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UINTEGER:
      return of('bigint', 19);
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
    case DuckDBTypeId.BIGNUM:
      return of('decimal', 38);
    case DuckDBTypeId.DECIMAL:
      return of('decimal', type.width, type.scale);
    case DuckDBTypeId.FLOAT:
      return of('float', 7);
    case DuckDBTypeId.DOUBLE:
      return of('double', 17);
    case DuckDBTypeId.DATE:
      return of('date');
    case DuckDBTypeId.TIMESTAMP:
    case DuckDBTypeId.TIMESTAMP_S:
    case DuckDBTypeId.TIMESTAMP_MS:
    case DuckDBTypeId.TIMESTAMP_NS:
      return of('timestamp', 3);
    case DuckDBTypeId.TIMESTAMP_TZ:
      return of('timestamp with time zone', 3);
    case DuckDBTypeId.TIME:
    case DuckDBTypeId.TIME_NS:
      return of('time', 3);
    case DuckDBTypeId.TIME_TZ:
      return of('time with time zone', 3);
    case DuckDBTypeId.INTERVAL:
      return of('interval day to second');
    case DuckDBTypeId.BLOB:
      return of('varbinary', 2147483647);
    case DuckDBTypeId.LIST:
    case DuckDBTypeId.ARRAY:
      return of('array');
    case DuckDBTypeId.MAP:
      return of('map');
    case DuckDBTypeId.STRUCT:
      return of('row');
    case DuckDBTypeId.SQLNULL:
      return of('unknown');
    default:
      return type.alias?.toUpperCase() === 'JSON' ? of('json') : of('varchar', 2147483647);
  }
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** `YYYY-MM-DD HH:MM:SS.fff`, Athena's timestamp(3) as it prints it. */
function timestamp(text: string): string {
  const match = /^(.*\d\d:\d\d:\d\d)(?:\.(\d+))?/.exec(text);
  return match?.[1] ? `${match[1]}.${(match[2] ?? '').padEnd(3, '0').slice(0, 3)}` : text;
}

/** A number as Java's Double.toString prints it (Athena's doubles): `1.5`, `100.0`, `1.0E20`. */
function javaDouble(value: number): string {
  if (!Number.isFinite(value)) return Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity';
  if (value === 0) return Object.is(value, -0) ? '-0.0' : '0.0';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e-3 && magnitude < 1e7) {
    const text = String(value);
    return text.includes('.') ? text : `${text}.0`;
  }
  const [mantissa = '', exponent = '0'] = value.toExponential().split('e');
  return `${mantissa.includes('.') ? mantissa : `${mantissa}.0`}E${Number(exponent)}`;
}

/** The shortest decimal that reads back as the same 32-bit float (a FLOAT arrives widened to a double). */
function float32(value: number): number {
  if (!Number.isFinite(value)) return value;
  for (let digits = 1; digits < 10; digits++) {
    const candidate = Number(value.toPrecision(digits));
    if (Math.fround(candidate) === Math.fround(value)) return candidate;
  }
  return value;
}

/** A value as Athena prints it: arrays `[a, b]`, rows and maps `{k=v, ...}`, varbinary as hex bytes. */
function formatValue(type: DuckDBType, value: DuckDBValue): string {
  if (value === null) return 'null';
  switch (type.typeId) {
    case DuckDBTypeId.FLOAT:
      return javaDouble(float32(Number(value)));
    case DuckDBTypeId.DOUBLE:
      return javaDouble(Number(value));
    case DuckDBTypeId.TIMESTAMP:
    case DuckDBTypeId.TIMESTAMP_S:
    case DuckDBTypeId.TIMESTAMP_MS:
    case DuckDBTypeId.TIMESTAMP_NS:
    case DuckDBTypeId.TIME:
    case DuckDBTypeId.TIME_NS:
      return timestamp(String(value));
    case DuckDBTypeId.TIMESTAMP_TZ: {
      const micros = (value as { micros?: unknown }).micros;
      if (typeof micros !== 'bigint') return String(value);
      const date = new Date(Number(micros / 1000n));
      if (Number.isNaN(date.getTime())) return String(value);
      return `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} ${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.${pad(date.getUTCMilliseconds(), 3)} UTC`;
    }
    case DuckDBTypeId.INTERVAL: {
      const { months, days, micros } = value as { months: number; days: number; micros: bigint };
      if (months !== 0) return `${Math.trunc(months / 12)}-${Math.abs(months % 12)}`;
      const total = Number(micros) / 1000;
      const sign = total < 0 || days < 0 ? '-' : '';
      const ms = Math.abs(total);
      const clock = `${pad(Math.floor(ms / 3_600_000))}:${pad(Math.floor(ms / 60_000) % 60)}:${pad(Math.floor(ms / 1000) % 60)}.${pad(Math.floor(ms % 1000), 3)}`;
      return `${sign}${Math.abs(days)} ${clock}`;
    }
    case DuckDBTypeId.BLOB: {
      const bytes = (value as { bytes?: Uint8Array }).bytes ?? new Uint8Array();
      return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    }
    case DuckDBTypeId.LIST:
    case DuckDBTypeId.ARRAY: {
      const items = (value as { items: readonly DuckDBValue[] }).items;
      return `[${items.map((item) => formatValue(type.valueType, item)).join(', ')}]`;
    }
    case DuckDBTypeId.STRUCT: {
      const entries = (value as { entries: Readonly<Record<string, DuckDBValue>> }).entries;
      return `{${type.entryNames.map((name, i) => `${name}=${formatValue(type.entryTypes[i] ?? type, entries[name] ?? null)}`).join(', ')}}`;
    }
    case DuckDBTypeId.MAP: {
      const entries = (value as { entries: { key: DuckDBValue; value: DuckDBValue }[] }).entries;
      return `{${entries.map((e) => `${formatValue(type.keyType, e.key)}=${formatValue(type.valueType, e.value)}`).join(', ')}}`;
    }
    default:
      return String(value);
  }
}

/**
 * A DuckDB result as Athena's GetQueryResults reports it: Athena's column types, each value as
 * Athena prints it (dates `YYYY-MM-DD`, timestamps `YYYY-MM-DD HH:MM:SS.fff`, doubles as Java
 * prints them), and the rows written by INSERT, UPDATE, DELETE, MERGE or CTAS as UpdateCount,
 * with no columns, as Athena answers those statements. For `warehouse.read(sql, athenaResults)`.
 */
export function athenaResults(reader: DuckDBResultReader | undefined): QueryResults {
  if (!reader) return { columns: [], rows: [] };
  if (reader.returnType !== ResultReturnType.QUERY_RESULT) {
    // DuckDB answers INSERT, UPDATE, DELETE, MERGE (changed rows) and CREATE TABLE AS (nothing) with a `Count` row.
    const count = reader.columnNames()[0] === 'Count' ? reader.getRows()[0]?.[0] : undefined;
    if (count !== undefined && count !== null) return { columns: [], rows: [], updateCount: Number(count) };
    return reader.returnType === ResultReturnType.CHANGED_ROWS
      ? { columns: [], rows: [], updateCount: reader.rowsChanged }
      : { columns: [], rows: [] };
  }
  const types = reader.columnTypes();
  const columns: ColumnInfo[] = reader.columnNames().map((name, i) => {
    const type = athenaType(types[i] ?? types[0] ?? ({ typeId: DuckDBTypeId.VARCHAR } as DuckDBType));
    return {
      CatalogName: 'hive',
      SchemaName: '',
      TableName: '',
      Name: name,
      Label: name,
      Type: type.name,
      Precision: type.precision,
      Scale: type.scale,
      Nullable: 'UNKNOWN',
      CaseSensitive: type.name === 'varchar' || type.name === 'json',
    };
  });
  const rows = reader.getRows().map((row) =>
    row.map((value, i) => {
      const type = types[i];
      return value === null || value === undefined || !type ? null : formatValue(type, value);
    }),
  );
  return { columns, rows };
}
