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
 * https://docs.aws.amazon.com/athena/latest/APIReference/API_GetQueryExecution.html
 * https://docs.aws.amazon.com/athena/latest/APIReference/API_QueryExecutionStatus.html
 */
import { randomUUID } from 'node:crypto';

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

/** Athena's error for a bad request (unknown query id, missing QueryString); the integration names it `Athena.InvalidRequestException`. */
export class AthenaInvalidRequestError extends Error {
  override name = 'Athena.InvalidRequestException';
}

export interface LocalAthenaOptions {
  /** Runs one statement; rejects with the engine's message when it fails. */
  readonly run: (sql: string) => Promise<void>;
  /** @default 'primary' (Athena's default workgroup) */
  readonly defaultWorkGroup?: string;
}

interface Entry {
  execution: Omit<QueryExecution, 'Status'>;
  state: QueryState;
  reason?: string;
  submitted: string;
  completed?: string;
  /** StopQueryExecution while RUNNING: the statement cannot be interrupted; it ends CANCELLED. */
  stopRequested: boolean;
}

const DDL = /^(CREATE|ALTER|DROP|MSCK|COMMENT)\b/i;
const UTILITY = /^(SHOW|DESCRIBE|EXPLAIN|USE)\b/i;

/** Athena's StatementType of a statement (comments and parentheses at the start are skipped). */
export function statementType(sql: string): StatementType {
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

  private finish(entry: Entry, state: QueryState, reason?: string): void {
    entry.state = state;
    if (reason !== undefined) entry.reason = reason;
    entry.completed = new Date().toISOString();
  }

  private async runEntry(entry: Entry): Promise<void> {
    if (entry.state !== 'QUEUED') return;
    entry.state = 'RUNNING';
    try {
      await this.options.run(entry.execution.Query);
      if (entry.stopRequested) {
        // The local engine cannot interrupt a statement: it ran to its end, as a late cancel on Athena may.
        this.finish(entry, 'CANCELLED', 'Query was cancelled by StopQueryExecution while it ran.');
      } else {
        this.finish(entry, 'SUCCEEDED');
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.finish(entry, 'FAILED', message || 'The query failed without a message from the engine.');
    }
  }
}
