/**
 * The shapes that cross the state machine: what each handler receives and returns,
 * and what it leaves in the working bucket. `state-machines/pipeline.asl.json` wires
 * these together; keep both in step.
 */

/**
 * What starts a run: the EventBridge rules (an object created or deleted), the Scheduler
 * schedule, or the CLI (`sluice run`, `sluice backfill`, `sluice redrive`). See docs/loads.md.
 */
export type RunRequest = (
  | { readonly pipeline: string; readonly trigger: 'object'; readonly bucket: string; readonly key: string }
  /** An input object was deleted (S3 "Object Deleted"): with `onDelete: remove`, its rows are removed. */
  | { readonly pipeline: string; readonly trigger: 'delete'; readonly bucket: string; readonly key: string }
  | { readonly pipeline: string; readonly trigger: 'schedule' }
  | { readonly pipeline: string; readonly trigger: 'manual'; readonly keys?: readonly string[] }
  /**
   * Re-derive the days `from`..`to` (inclusive, `YYYY-MM-DD`); with `reload`, first load again the
   * loaded object versions whose rows touch those days, replacing their rows.
   */
  | {
      readonly pipeline: string;
      readonly trigger: 'backfill';
      readonly from: string;
      readonly to: string;
      readonly reload?: boolean;
    }
) & {
  /** The run id of the failed run this one continues (`sluice redrive`): recorded in the run record. */
  readonly redriveOf?: string;
};

export type Trigger = RunRequest['trigger'];

/** Payload of the Plan function (see the Plan state). */
export interface PlanEvent {
  readonly request: RunRequest;
  /** The execution name: unique per state machine, so it names the run. */
  readonly runId: string;
  readonly startedAt: string;
}

export type Compression = 'none' | 'gzip' | 'zstd';

/** One byte range of one input object. `end` is exclusive; lines are owned by the chunk holding their first byte. */
export interface ChunkPart {
  readonly key: string;
  /**
   * The object version's identity: its ETag, unquoted. ListObjectsV2, HeadObject and GetObject
   * all return it, on versioned and unversioned buckets alike (a VersionId comes from Head/Get
   * only), so the planner, the ledger, lineage and rejects all see one identity. Workers read
   * with `If-Match` on it, so a version replaced mid-run is never read under the old identity.
   */
  readonly version: string;
  readonly size: number;
  readonly start: number;
  readonly end: number;
  readonly compression: Compression;
  /** The object's header, for csv/tsv with a header: lets chunks that start mid-file map columns by name. */
  readonly columns?: readonly string[];
}

/** One item of the manifest: the input of one worker invocation. */
export interface Chunk {
  readonly runId: string;
  readonly pipeline: string;
  readonly index: number;
  readonly parts: readonly ChunkPart[];
  /**
   * The header's columns, once for the whole chunk (every part of a chunk has the same
   * header): lets chunks that start mid-file map columns by name. The planner writes it here
   * rather than in each part, to keep a manifest item small.
   */
  readonly columns?: readonly string[];
}

/** The state after Plan (the Plan function's result). */
export interface RunState {
  readonly runId: string;
  readonly pipeline: string;
  readonly trigger: Trigger;
  readonly startedAt: string;
  readonly manifest: { readonly bucket: string; readonly key: string };
  readonly chunks: number;
  readonly inputs: number;
  readonly bytes: number;
  readonly maxConcurrency: number;
  readonly toleratedFailurePercentage: number;
  /** DDL to run before loading (empty once it has run for this definition). */
  readonly setup: readonly string[];
  /** Hash of the DDL; Finish records it so that the next run skips `setup`. */
  readonly setupHash: string;
  /** A delete run: the input object whose rows are removed (if it is still deleted at Verify). */
  readonly remove?: string;
  /** A backfill run: the days re-derived, inclusive. */
  readonly window?: { readonly from: string; readonly to: string };
  /** A backfill run with `reload`: the planned objects are loaded again, replacing their rows. */
  readonly reload?: boolean;
  /** The failed run this one continues (see {@link RunRequest}). */
  readonly redriveOf?: string;
}

/** Per input object part, what a worker saw. */
export interface PartResult {
  readonly key: string;
  readonly start: number;
  /** Newline-terminated lines (or a last unterminated one) whose first byte is in the part, header and blank lines included. */
  readonly lines: number;
}

/** Written by a worker to `runs/<pipeline>/<runId>/chunks/<index>.json` (the worker returns only a {@link ChunkSummary}). */
export interface ChunkResult {
  readonly index: number;
  readonly rowsRead: number;
  readonly rowsStaged: number;
  readonly rowsRejected: number;
  readonly days: readonly string[];
  readonly parts: readonly PartResult[];
  readonly stagingKey: string | null;
  readonly rejectsKey: string | null;
  /** When the Work handler started this attempt and wrote this result (ISO 8601); added by the handler. */
  readonly startedAt?: string;
  readonly finishedAt?: string;
  /** Which try of the chunk in this run wrote the result: 1, then 2... after retries (the handler's attempts marker). */
  readonly attempt?: number;
}

/**
 * What the Work handler returns: a few bounded numbers. Each child's output is capped at
 * 256 KiB and goes to the Map Run's results, so the full {@link ChunkResult} stays in S3.
 */
export interface ChunkSummary {
  readonly index: number;
  readonly rowsRead: number;
  readonly rowsStaged: number;
  readonly rowsRejected: number;
}

/** Why a planned input object was not loaded by its run (it stays unmarked in the ledger). */
export type NotLoadedReason = 'superseded' | 'deleted' | 'chunk-failed';

/** A planned input object the run did not load. */
export interface NotLoaded {
  readonly key: string;
  readonly version: string;
  readonly reason: NotLoadedReason;
}

export interface RunSummary {
  readonly chunks: number;
  readonly chunksFailed: number;
  readonly inputs: number;
  readonly rowsRead: number;
  readonly rowsLoaded: number;
  readonly rowsRejected: number;
  readonly days: readonly string[];
  /**
   * Planned objects not loaded (at most {@link MAX_NOT_LOADED_NAMED}; `inputsNotLoaded` counts
   * them all): superseded or deleted before Verify, or with a failed chunk (partial failure).
   */
  readonly notLoaded?: readonly NotLoaded[];
  readonly inputsNotLoaded?: number;
  /** A delete run: the object whose rows were removed (absent when it existed again at Verify). */
  readonly removed?: string;
}

/** At most this many not-loaded objects are named in a run's summary (the state output is capped at 256 KiB). */
export const MAX_NOT_LOADED_NAMED = 50;

/** Which step a statement belongs to: table DDL, the MERGEs of staging, derived tables, table maintenance. */
export type StatementStep = 'setup' | 'load' | 'derive' | 'maintain';

/** One Athena statement of the Load state (an item of its inline Map; the ASL reads `$.sql`). */
export interface Statement {
  readonly step: StatementStep;
  readonly sql: string;
}

/** The Verify function's result, kept at `$.verify`: the statements run in order, then the summary. */
export interface VerifyResult {
  readonly statements: readonly Statement[];
  readonly summary: RunSummary;
}

export type RunStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED';

/** A run's record, at `runs/<pipeline>/<runId>/run.json`. */
export interface RunRecord extends Partial<RunSummary> {
  readonly id: string;
  readonly pipeline: string;
  readonly trigger: Trigger;
  readonly status: RunStatus;
  readonly startedAt: string;
  readonly stoppedAt: string | null;
  readonly inputKeys?: readonly string[];
  /** The failed run this one continues (`sluice redrive`). */
  readonly redriveOf?: string;
  readonly error?: {
    readonly error: string;
    /** The failed step's cause, readable (a Lambda error's message, not its JSON), bounded and escaped. */
    readonly cause: string;
    /** What the user reads: one or two plain sentences (which input, what was wrong, where, what to do). */
    readonly message?: string;
    /** What a person debugging needs and a user does not: error type, request id, the failed chunks. */
    readonly details?: FailureDetails;
  };
}

/** One part of a failed chunk: which object, which bytes (`end` exclusive). */
export interface FailedPart {
  readonly key: string;
  readonly start: number;
  readonly end: number;
}

/**
 * Written by the Work handler when a chunk fails, to `runs/<pipeline>/<runId>/errors/<index>.json`,
 * before it rethrows: on AWS the Distributed Map's own cause is generic ("The specified tolerated
 * failure threshold was exceeded"), so RecordFailure reads the chunks' errors from here.
 */
export interface ChunkFailure {
  readonly index: number;
  /** The error's name (`Sluice.InputError`...). */
  readonly errorType: string;
  /** Plain, bounded and escaped. */
  readonly message: string;
  readonly parts: readonly FailedPart[];
  /** The Lambda request id of the failed invocation, when known. */
  readonly requestId?: string;
  readonly failedAt: string;
  /** When the failed attempt started and ended (ISO 8601; `finishedAt` is `failedAt`), and which try it was. */
  readonly startedAt?: string;
  readonly finishedAt?: string;
  readonly attempt?: number;
}

/** The details of a failure kept in the run record (never shown in place of the plain message). */
export interface FailureDetails {
  readonly errorType: string;
  /** The state machine's error name, when it differs from the error type (States.ExceedToleratedFailureThreshold...). */
  readonly stateError?: string;
  readonly requestId?: string;
  /** The failed chunks whose errors the Work handler recorded (at most 20). */
  readonly chunks?: readonly ChunkFailure[];
  /** How many chunks recorded an error, when more than `chunks` holds. */
  readonly chunksFailed?: number;
}

/** What a chunk's attempts marker holds (`layout.chunkAttempt`): the latest try of the chunk and when it started. */
export interface ChunkAttempt {
  readonly index: number;
  readonly attempt: number;
  readonly startedAt: string;
}
