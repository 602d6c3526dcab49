/**
 * The local analog of ListExecutions / DescribeExecution: one JSON file per execution in
 * `<dir>/executions/<name>.json`, written when it starts and when it stops (atomically, by
 * rename, so another process never reads half a file). Beside it, `<name>.history.jsonl` holds its
 * history events and `map-runs/` its Distributed Map runs (`history.ts`).
 *
 * An execution whose runtime process died cannot finish. Listing shows it, without
 * rewriting the file, as FAILED with error `Sluice.RuntimeExited`: AWS has no such state
 * (its executions outlive any client), and FAILED is what a user must act on.
 *
 * What `sluice runs` shows of a failure is its plain message (the run record's), and the cause
 * made readable: never Lambda's error JSON with its stack trace.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FailureDetails } from '../functions/contracts.ts';
import { plainFailure, readableCause } from '../functions/run/failure-message.ts';
import type { StepRecord } from './state-machine.ts';

export type ExecutionStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'ABORTED' | 'TIMED_OUT';

/** The statuses an execution can be redriven from (https://docs.aws.amazon.com/step-functions/latest/dg/redrive-executions.html). */
export const REDRIVABLE_STATUSES: readonly ExecutionStatus[] = ['FAILED', 'ABORTED', 'TIMED_OUT'];

export interface ExecutionRecord {
  /** The execution name. */
  readonly id: string;
  readonly pipeline: string;
  readonly trigger: string;
  readonly status: ExecutionStatus;
  readonly startedAt: string;
  readonly stoppedAt: string | null;
  readonly input: unknown;
  readonly output: unknown;
  readonly error: string | null;
  readonly cause: string | null;
  /** A failed execution's plain message (the run record's): see `ExecutionOutcome.message`. */
  readonly message?: string;
  readonly details?: FailureDetails;
  readonly steps?: readonly StepRecord[];
  /** The runtime process running it. */
  readonly pid: number;
  /** How many times RedriveExecution restarted it (absent: never). */
  readonly redriveCount?: number;
  /** When it was last redriven (ISO 8601). */
  readonly redriveDate?: string;
  /** The client tokens of its last redrives (RedriveExecution is idempotent for each), newest last. */
  readonly redriveTokens?: readonly { readonly token: string; readonly date: string }[];
}

/** One row of `sluice runs`. Counts come from the execution output (the Finish handler's RunRecord). */
export interface RunRow
  extends Pick<ExecutionRecord, 'id' | 'pipeline' | 'trigger' | 'status' | 'startedAt' | 'stoppedAt'> {
  readonly chunks: number | null;
  readonly rowsRead: number | null;
  readonly rowsLoaded: number | null;
  readonly rowsRejected: number | null;
  /** The state machine's error name (Sluice.InputError, States.ExceedToleratedFailureThreshold...). */
  readonly error?: string;
  /** The cause, readable: a Lambda error's message rather than its JSON and trace; bounded and escaped. */
  readonly cause?: string;
  /** What went wrong in one or two plain sentences: which input, what, where, what to do. */
  readonly message?: string;
  /** Error type, request id, failed chunks (from the run record). */
  readonly details?: FailureDetails;
}

/** `sluice runs <run>`: a run's row with its input and steps. */
export interface RunDetail extends RunRow {
  readonly input: unknown;
  readonly steps: readonly StepRecord[];
}

const NAME = /^[A-Za-z0-9_-]{1,80}$/;

/** Whether a name is one an execution can have here: 1 to 80 of A-Z, a-z, 0-9, `-` and `_` (one file name, as on AWS a log-safe name). */
export const isExecutionName = (name: string): boolean => NAME.test(name);

/** Another execution has this name (names are unique, as Step Functions' are). */
export class ExecutionExistsError extends Error {
  readonly executionName: string;
  constructor(name: string) {
    super(`an execution named ${name} already exists`);
    this.name = 'ExecutionExistsError';
    this.executionName = name;
  }
}

/** The order of `list()`: newest first (start time, then name, both descending). */
export const newestFirst = (
  a: Pick<ExecutionRecord, 'startedAt' | 'id'>,
  b: Pick<ExecutionRecord, 'startedAt' | 'id'>,
) => b.startedAt.localeCompare(a.startedAt) || b.id.localeCompare(a.id);

/** `<pipeline>-<yyyymmddThhmmssZ>-<6 random [a-z0-9]>`; a pipeline name that cannot be part of one is cleaned. */
export function newExecutionName(pipeline: string, now: Date = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/[-:]/g, '');
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const suffix = [...randomBytes(6)].map((b) => alphabet[b % alphabet.length]).join('');
  const prefix = pipeline.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40) || 'run';
  const name = `${prefix}-${stamp}-${suffix}`;
  if (!NAME.test(name)) throw new Error(`invalid execution name ${name}`);
  return name;
}

/** Whether a process with this pid exists (EPERM: it exists, owned by someone else). */
export const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

export class ExecutionStore {
  readonly folder: string;

  constructor(folder: string) {
    this.folder = folder;
  }

  write(record: ExecutionRecord): void {
    const file = this.file(record.id);
    const temporary = this.temporary(file, record);
    renameSync(temporary, file);
  }

  /**
   * Writes the first record of a new execution; throws {@link ExecutionExistsError} if an execution
   * of that name exists, even one another process is writing (the file is linked in place, which
   * fails if it exists, so two processes cannot both create one name).
   */
  create(record: ExecutionRecord): void {
    const file = this.file(record.id);
    const temporary = this.temporary(file, record);
    try {
      linkSync(temporary, file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new ExecutionExistsError(record.id);
      throw error;
    } finally {
      rmSync(temporary, { force: true });
    }
  }

  private file(id: string): string {
    if (!NAME.test(id)) throw new Error(`invalid execution name ${id}`);
    mkdirSync(this.folder, { recursive: true });
    return join(this.folder, `${id}.json`);
  }

  /** The record, written whole to a temporary file beside `file`. */
  private temporary(file: string, record: ExecutionRecord): string {
    const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(record, null, 2)}\n`);
    return temporary;
  }

  read(id: string): ExecutionRecord | undefined {
    if (!NAME.test(id)) return undefined;
    try {
      return this.honest(JSON.parse(readFileSync(join(this.folder, `${id}.json`), 'utf8')) as ExecutionRecord);
    } catch {
      return undefined;
    }
  }

  /** All executions, newest first. */
  list(): ExecutionRecord[] {
    let files: string[];
    try {
      files = readdirSync(this.folder).filter((f) => f.endsWith('.json'));
    } catch {
      return [];
    }
    return files
      .map((f) => this.read(f.slice(0, -'.json'.length)))
      .filter((r): r is ExecutionRecord => r !== undefined)
      .sort(newestFirst);
  }

  /** `sluice runs`: the executions with the run counts of their output. */
  listRuns(): RunRow[] {
    return this.list().map(toRunRow);
  }

  private honest(record: ExecutionRecord): ExecutionRecord {
    if (record.status !== 'RUNNING' || isAlive(record.pid)) return record;
    return {
      ...record,
      status: 'FAILED',
      error: 'Sluice.RuntimeExited',
      cause: `the runtime process ${record.pid} exited before the execution finished`,
      message: `The local runtime (process ${record.pid}) stopped before this run finished; run it again.`,
    };
  }
}

const count = (value: unknown) => (typeof value === 'number' ? value : null);

export function toRunRow(record: ExecutionRecord): RunRow {
  const output = (record.output ?? {}) as Record<string, unknown>;
  return {
    id: record.id,
    pipeline: record.pipeline,
    trigger: record.trigger,
    status: record.status,
    startedAt: record.startedAt,
    stoppedAt: record.stoppedAt,
    chunks: count(output.chunks),
    rowsRead: count(output.rowsRead),
    rowsLoaded: count(output.rowsLoaded),
    rowsRejected: count(output.rowsRejected),
    ...(REDRIVABLE_STATUSES.includes(record.status)
      ? {
          // An execution stopped with StopExecution without an error has none (as on AWS).
          error: record.error ?? (record.status === 'ABORTED' ? 'Aborted' : 'Unknown'),
          cause: readableCause(record.cause),
          message: record.message ?? plainFailure(record.error, record.cause),
          ...(record.details ? { details: record.details } : {}),
        }
      : {}),
  };
}

/** `sluice runs <run>`: the row, the run's input and its steps. */
export function toRunDetail(record: ExecutionRecord): RunDetail {
  return { ...toRunRow(record), input: record.input, steps: record.steps ?? [] };
}
