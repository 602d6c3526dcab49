/** RecordFailure: a run failed; write its record with the error, so that run history shows why. */
import type { Config } from '../config.ts';
import type { RunRecord, Trigger } from '../contracts.ts';
import type { Pipeline } from '../pipeline/definition.ts';
import { assertRunId, layout } from '../storage/layout.ts';
import type { ObjectStore } from '../storage/object-store.ts';

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

/** Lambda errors arrive as a JSON cause `{"errorType","errorMessage",...}`; keep the message. */
export function describeCause(cause: string | undefined): string {
  if (!cause) return '';
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: string };
    return parsed.errorMessage ?? cause;
  } catch {
    return cause;
  }
}

export async function recordFailure(event: FailureEvent, deps: FailureDeps): Promise<RunRecord> {
  const runId = assertRunId(event.runId);
  const pipeline = event.run?.pipeline && deps.pipelines.has(event.run.pipeline) ? event.run.pipeline : 'unknown';
  const previous = await deps.store.getJson<RunRecord>(deps.config.workingBucket, layout.runRecord(pipeline, runId));
  const caught: CaughtError = { ...event.run?.error, ...event.error };
  const record: RunRecord = {
    ...previous,
    id: runId,
    pipeline,
    trigger: event.run?.trigger ?? previous?.trigger ?? 'manual',
    status: 'FAILED',
    startedAt: event.startedAt,
    stoppedAt: deps.now().toISOString(),
    error: { error: caught.Error ?? 'Unknown', cause: describeCause(caught.Cause) },
  };
  await deps.store.putJson(deps.config.workingBucket, layout.runRecord(pipeline, runId), record);
  return record;
}
