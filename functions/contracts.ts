/**
 * The shapes that cross the state machine: what each handler receives and returns,
 * and what it leaves in the working bucket. `state-machines/pipeline.asl.json` wires
 * these together; keep both in step.
 */

/** What starts a run: the EventBridge rule, the Scheduler schedule, or the CLI. */
export type RunRequest =
  | { readonly pipeline: string; readonly trigger: 'object'; readonly bucket: string; readonly key: string }
  | { readonly pipeline: string; readonly trigger: 'schedule' }
  | { readonly pipeline: string; readonly trigger: 'manual'; readonly keys?: readonly string[] };

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
  /** ETag (or version id): with key and byte offset, the identity of a row. */
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
}

/** Per input object part, what a worker saw. */
export interface PartResult {
  readonly key: string;
  readonly start: number;
  /** Newline-terminated lines (or a last unterminated one) whose first byte is in the part, header and blank lines included. */
  readonly lines: number;
}

/** Written by a worker to `runs/<pipeline>/<runId>/chunks/<index>.json`, and returned. */
export interface ChunkResult {
  readonly index: number;
  readonly rowsRead: number;
  readonly rowsStaged: number;
  readonly rowsRejected: number;
  readonly days: readonly string[];
  readonly parts: readonly PartResult[];
  readonly stagingKey: string | null;
  readonly rejectsKey: string | null;
}

export interface RunSummary {
  readonly chunks: number;
  readonly chunksFailed: number;
  readonly inputs: number;
  readonly rowsRead: number;
  readonly rowsLoaded: number;
  readonly rowsRejected: number;
  readonly days: readonly string[];
}

/** The Verify function's result, kept at `$.verify`. */
export interface VerifyResult {
  readonly load: readonly string[];
  readonly derive: readonly string[];
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
  readonly error?: { readonly error: string; readonly cause: string };
}
