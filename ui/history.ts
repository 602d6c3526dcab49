/**
 * What the run page reads from an execution's history (GetExecutionHistory with its data): the
 * Plan state's output (chunks, bytes, concurrency), the SQL statements the Load map ran with the
 * time each took, and the state that failed with its error and cause. The same events on every
 * target: the embedded runtime writes them as Step Functions does
 * (https://docs.aws.amazon.com/step-functions/latest/apireference/API_HistoryEvent.html).
 */
import type { HistoryEvent } from '@aws-sdk/client-sfn';
import { historyEvents } from '../cli/client.ts';
import type { TargetSession } from '../cli/target.ts';

/** The Plan state's output that the run page shows (functions/contracts.ts RunState). */
export interface PlanFacts {
  readonly chunks: number;
  readonly inputs: number;
  readonly bytes: number;
  readonly maxConcurrency: number;
}

/** One Athena statement of the Load map: its step, its SQL, when it started and how long it ran. */
export interface StatementRun {
  readonly step: string;
  readonly sql: string;
  readonly startedAt: string;
  readonly ms: number | null;
  readonly status: 'SUCCEEDED' | 'FAILED' | 'RUNNING';
}

/** A state that failed: its name, the error and the cause as the history has them. */
export interface FailedState {
  readonly state: string;
  readonly error: string;
  readonly cause: string;
}

export interface HistoryFacts {
  readonly plan: PlanFacts | null;
  readonly statements: readonly StatementRun[];
  readonly failed: FailedState | null;
  readonly events: readonly HistoryEvent[];
}

/** The history's events, oldest first, all pages, with their inputs and outputs. */
export const readHistory = (session: TargetSession, executionArn: string): Promise<HistoryEvent[]> =>
  historyEvents(session, executionArn, { data: true });

function parse(text: string | undefined): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

const num = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) ? value : 0);
const at = (event: HistoryEvent) => (event.timestamp ? new Date(event.timestamp).getTime() : 0);

/** The Plan state's output: the TaskStateExited of the state named Plan. */
function planFacts(events: readonly HistoryEvent[]): PlanFacts | null {
  const exited = events.find((e) => e.type === 'TaskStateExited' && e.stateExitedEventDetails?.name === 'Plan');
  const output = parse(exited?.stateExitedEventDetails?.output) as Record<string, unknown> | null;
  if (!output || typeof output !== 'object') return null;
  return {
    chunks: num(output.chunks),
    inputs: num(output.inputs),
    bytes: num(output.bytes),
    maxConcurrency: num(output.maxConcurrency),
  };
}

/**
 * The statements of the Load map: each iteration starts with MapIterationStarted (name Load),
 * its first state's input is the statement `{step, sql}`, and it ends with MapIterationSucceeded
 * or MapIterationFailed of the same index.
 */
function statementRuns(events: readonly HistoryEvent[]): StatementRun[] {
  type Iteration = { startedAt: number; step: string; sql: string; waiting: boolean };
  const open = new Map<number, Iteration>();
  const statement = (iteration: Iteration, ms: number | null, status: StatementRun['status']): StatementRun => ({
    step: iteration.step,
    sql: iteration.sql,
    startedAt: new Date(iteration.startedAt).toISOString(),
    ms,
    status,
  });
  const runs: { index: number; run: StatementRun }[] = [];
  let last: number | undefined;
  for (const event of events) {
    const type = event.type ?? '';
    if (type === 'MapIterationStarted' && event.mapIterationStartedEventDetails?.name === 'Load') {
      last = event.mapIterationStartedEventDetails.index ?? 0;
      open.set(last, { startedAt: at(event), step: '', sql: '', waiting: true });
    } else if (type.endsWith('StateEntered') && last !== undefined) {
      const iteration = open.get(last);
      if (iteration?.waiting) {
        iteration.waiting = false;
        const input = parse(event.stateEnteredEventDetails?.input) as { step?: unknown; sql?: unknown } | null;
        iteration.step = typeof input?.step === 'string' ? input.step : '';
        iteration.sql = typeof input?.sql === 'string' ? input.sql : '';
      }
    } else if (
      (type === 'MapIterationSucceeded' || type === 'MapIterationFailed' || type === 'MapIterationAborted') &&
      (
        event.mapIterationSucceededEventDetails ??
        event.mapIterationFailedEventDetails ??
        event.mapIterationAbortedEventDetails
      )?.name === 'Load'
    ) {
      const details =
        event.mapIterationSucceededEventDetails ??
        event.mapIterationFailedEventDetails ??
        event.mapIterationAbortedEventDetails;
      const index = details?.index ?? 0;
      const iteration = open.get(index);
      if (!iteration) continue;
      open.delete(index);
      runs.push({
        index,
        run: statement(
          iteration,
          at(event) - iteration.startedAt,
          type === 'MapIterationSucceeded' ? 'SUCCEEDED' : 'FAILED',
        ),
      });
    }
  }
  for (const [index, iteration] of open) runs.push({ index, run: statement(iteration, null, 'RUNNING') });
  return runs.sort((a, b) => a.index - b.index).map((r) => r.run);
}

/** Failure events at the top level that name an error: the first is the state that failed. */
const FAILURE_DETAILS = [
  'taskFailedEventDetails',
  'mapRunFailedEventDetails',
  'executionFailedEventDetails',
  'lambdaFunctionFailedEventDetails',
  'taskTimedOutEventDetails',
] as const;

/**
 * The first top-level state with a failure event (the Catch that follows sends the run to
 * RecordFailure, whose own states are not the failure), with that event's error and cause.
 */
function failedState(events: readonly HistoryEvent[]): FailedState | null {
  let depth = 0;
  let state = '';
  let candidate: FailedState | null = null;
  for (const event of events) {
    const type = event.type ?? '';
    if (type === 'MapIterationStarted' || type === 'ParallelStateStarted') depth++;
    if (/^(MapIteration|ParallelState)(Succeeded|Failed|Aborted)$/.test(type)) depth = Math.max(0, depth - 1);
    if (depth > 0) continue;
    if (type.endsWith('StateEntered')) {
      // A state entered after a failure that was not retried away: the Catch went on from there.
      if (candidate) return candidate;
      state = event.stateEnteredEventDetails?.name ?? state;
    }
    // A retry that worked clears the failure before it.
    if (type === 'TaskSucceeded' || type === 'MapRunSucceeded') candidate = null;
    for (const key of FAILURE_DETAILS) {
      const details = event[key] as { error?: string; cause?: string } | undefined;
      if (details && (details.error || details.cause)) {
        candidate ??= { state, error: details.error ?? '', cause: details.cause ?? '' };
      }
    }
  }
  return candidate;
}

export function historyFacts(events: readonly HistoryEvent[]): HistoryFacts {
  return { plan: planFacts(events), statements: statementRuns(events), failed: failedState(events), events };
}
