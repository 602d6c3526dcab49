/**
 * RecordFailure: a run failed; write its record with the error, so that run history shows why:
 * a plain message (the failed chunks' own errors when the Distributed Map failed, since AWS's
 * Map cause is generic), the readable cause, and the details (error type, request id, chunks).
 */
import type { Config } from '../config.ts';
import type { ChunkFailure, RunRecord, Trigger } from '../contracts.ts';
import type { Pipeline } from '../pipeline/definition.ts';
import { mapLimit, S3_PARALLELISM } from '../storage/concurrency.ts';
import { assertRunId, layout } from '../storage/layout.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { describeFailure, readableCause } from './failure-message.ts';

/** A caught error as Step Functions gives it (`Error` and `Cause` may each be missing). */
export interface CaughtError {
  readonly Error?: string;
  readonly Cause?: string;
}

/**
 * The RecordFailure state's Payload: `{run, error, runId, startedAt}`. `error` is the
 * caught error after the ASL's FailureDefaults/NormalizeFailure, so it has both fields;
 * it is read defensively all the same, and `run.error` (the raw Catch result) is the fallback.
 */
export interface FailureEvent {
  /** The state when the error was caught: the request (Plan failed) or the run state. */
  readonly run?: {
    readonly pipeline?: string;
    readonly trigger?: Trigger;
    /** The failed run a redrive continues (in the request and in the run state alike). */
    readonly redriveOf?: string;
    readonly error?: CaughtError;
  };
  readonly error?: CaughtError;
  readonly runId: string;
  readonly startedAt: string;
}

export interface FailureDeps {
  readonly store: ObjectStore;
  readonly config: Config;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
  readonly now: () => Date;
}

/** At most this many chunk errors are read: the message names the first, the details keep a few. */
const MAX_CHUNK_ERRORS_READ = 20;

/**
 * The errors the Work handler left for chunks that have no result (a chunk that failed, was retried
 * and then succeeded left an error file too, and is not a failure). Unreadable files are skipped:
 * the failure path must not fail on them.
 */
export async function readChunkFailures(
  deps: Pick<FailureDeps, 'store' | 'config'>,
  pipeline: string,
  runId: string,
): Promise<ChunkFailure[]> {
  const { store, config } = deps;
  try {
    const errors = await store.list(config.workingBucket, layout.chunkErrorsPrefix(pipeline, runId));
    if (errors.length === 0) return [];
    const results = await store.list(config.workingBucket, layout.chunkResultsPrefix(pipeline, runId));
    const succeeded = new Set(results.map((o) => o.key.slice(o.key.lastIndexOf('/') + 1)));
    const failed = errors.filter((o) => !succeeded.has(o.key.slice(o.key.lastIndexOf('/') + 1)));
    const read = await mapLimit(failed.slice(0, MAX_CHUNK_ERRORS_READ), S3_PARALLELISM, (o) =>
      store.getJson<ChunkFailure>(config.workingBucket, o.key).catch(() => undefined),
    );
    return read.filter((f): f is ChunkFailure => typeof f?.index === 'number' && typeof f.message === 'string');
  } catch {
    return [];
  }
}

export type FailureOutput = Omit<RunRecord, 'inputKeys' | 'error'> & {
  /** `message` is always there: the ASL's RecordFailure state selects `$.Payload.error.message` for Notify. */
  readonly error: NonNullable<RunRecord['error']> & { readonly message: string };
};

/**
 * Records the failed run. Returns the record without its input keys: the state machine measures
 * this Lambda's output against the 256 KiB limit even though the ASL discards it.
 */
export async function recordFailure(event: FailureEvent, deps: FailureDeps): Promise<FailureOutput> {
  const runId = assertRunId(event.runId);
  const pipeline = event.run?.pipeline && deps.pipelines.has(event.run.pipeline) ? event.run.pipeline : 'unknown';
  const previous = await deps.store.getJson<RunRecord>(deps.config.workingBucket, layout.runRecord(pipeline, runId));
  const caught: CaughtError = { ...event.run?.error, ...event.error };
  const chunkFailures = pipeline === 'unknown' ? [] : await readChunkFailures(deps, pipeline, runId);
  const { message, details } = describeFailure({ error: caught.Error, cause: caught.Cause }, chunkFailures);
  const record: RunRecord & Pick<FailureOutput, 'error'> = {
    ...previous,
    id: runId,
    pipeline,
    trigger: event.run?.trigger ?? previous?.trigger ?? 'manual',
    ...(typeof event.run?.redriveOf === 'string' ? { redriveOf: event.run.redriveOf } : {}),
    status: 'FAILED',
    startedAt: event.startedAt,
    stoppedAt: deps.now().toISOString(),
    error: { error: caught.Error ?? 'Unknown', cause: readableCause(caught.Cause), message, details },
  };
  await deps.store.putJson(deps.config.workingBucket, layout.runRecord(pipeline, runId), record);
  const { inputKeys: _keys, ...output } = record;
  return output;
}
