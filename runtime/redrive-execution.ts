/**
 * RedriveExecution in the embedded runtime, with AWS's semantics as far as the local interpreter
 * allows (https://docs.aws.amazon.com/step-functions/latest/dg/redrive-executions.html,
 * https://docs.aws.amazon.com/step-functions/latest/apireference/API_RedriveExecution.html):
 *
 * - Only a FAILED, ABORTED or TIMED_OUT execution is redriven (an execution left RUNNING by a dead
 *   runtime reads FAILED, so it can be), within 14 days of its start; else ExecutionNotRedrivable
 *   with AWS's reason ("Execution is SUCCEEDED and cannot be redriven.", ...).
 * - Same name and ARN; `redriveCount` + 1 and `redriveDate` on the record; an ExecutionRedriven event
 *   follows the earlier events in the one history.
 * - It continues from the unsuccessful top-level state (the last one entered and not exited) with
 *   that state's recorded input: the runtime runs the definition with that state as StartAt
 *   ({@link definitionFrom}). An execution stopped between two states starts again from StartAt.
 * - A client token already used for one of the last 10 redrives, within 15 minutes, is answered with
 *   that redrive's date and redrives nothing.
 *
 * Limits: an inline Map or Parallel state is run again whole (AWS reruns only its failed iterations
 * or branches), and a Distributed Map starts a new Map Run (AWS redrives the failed one's
 * unsuccessful children); `$$.Execution.Input` is the resumed state's input. An execution with no
 * history (run before histories were recorded) is not redrivable, as AWS refuses executions
 * "started before the launch of RedriveExecution". Two processes redriving one dead execution at
 * the same moment are not kept apart.
 */
import type { StateMachineDefinition } from 'aws-local-stepfunctions';
import type { Json } from './data-limit.ts';
import { type ExecutionRecord, type ExecutionStore, REDRIVABLE_STATUSES } from './executions.ts';
import { MAX_HISTORY_EVENTS, readHistory, resumePoint } from './history.ts';
import type { StepRecord } from './state-machine.ts';

/** Executions are redrivable for 14 days after they started. */
const REDRIVABLE_PERIOD_MS = 14 * 24 * 60 * 60 * 1000;
/** Client tokens are remembered for the last 10 redrives, for 15 minutes each. */
const TOKENS_KEPT = 10;
const TOKEN_LIFETIME_MS = 15 * 60 * 1000;

/** RedriveExecution refused: `reason` is AWS's redriveStatusReason. */
export class ExecutionNotRedrivableError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ExecutionNotRedrivable';
  }
}

/** Whether (and why not) an execution can be redriven now: DescribeExecution's redriveStatus and redriveStatusReason. */
export function redriveStatus(
  record: ExecutionRecord,
  folder: string,
  now = Date.now(),
): { redriveStatus: 'REDRIVABLE' | 'NOT_REDRIVABLE'; redriveStatusReason?: string } {
  const reason = notRedrivableReason(record, folder, now);
  return reason === undefined
    ? { redriveStatus: 'REDRIVABLE' }
    : { redriveStatus: 'NOT_REDRIVABLE', redriveStatusReason: reason };
}

function notRedrivableReason(record: ExecutionRecord, folder: string, now: number): string | undefined {
  if (!REDRIVABLE_STATUSES.includes(record.status)) return `Execution is ${record.status} and cannot be redriven.`;
  if (now - Date.parse(record.startedAt) > REDRIVABLE_PERIOD_MS) return 'Execution redrivable period exceeded.';
  const events = readHistory(folder, record.id);
  if (events.length === 0) return 'Execution was started before the launch of RedriveExecution.';
  if (events.length >= MAX_HISTORY_EVENTS) return 'Execution history event limit exceeded.';
  return undefined;
}

/** What the runtime does for one RedriveExecution call. */
export type RedrivePlan =
  /** The token was used for a recent redrive: answer with its date, do nothing. */
  | { readonly repeated: true; readonly redriveDate: string }
  | {
      readonly repeated: false;
      /** The record to write (RUNNING, counted, this process's). */
      readonly record: ExecutionRecord;
      /** The state to start at (undefined: the definition's StartAt) and its input. */
      readonly startAt: string | undefined;
      readonly input: Json;
    };

/** Checks that `name` can be redriven and works out from where. Throws {@link ExecutionNotRedrivableError}. */
export function planRedrive(
  executions: ExecutionStore,
  record: ExecutionRecord,
  clientToken: string | undefined,
  now = new Date(),
): RedrivePlan {
  const recent = (record.redriveTokens ?? []).find(
    (used) => used.token === clientToken && now.getTime() - Date.parse(used.date) <= TOKEN_LIFETIME_MS,
  );
  if (clientToken !== undefined && recent) return { repeated: true, redriveDate: recent.date };
  const reason = notRedrivableReason(record, executions.folder, now.getTime());
  if (reason !== undefined) throw new ExecutionNotRedrivableError(reason);
  let resume: ReturnType<typeof resumePoint>;
  try {
    resume = resumePoint(readHistory(executions.folder, record.id));
  } catch (error) {
    throw new ExecutionNotRedrivableError(`Execution cannot be redriven: ${(error as Error).message}.`);
  }
  const redriveDate = now.toISOString();
  const tokens =
    clientToken !== undefined
      ? [...(record.redriveTokens ?? []), { token: clientToken, date: redriveDate }]
      : (record.redriveTokens ?? []);
  const { message: _message, details: _details, ...kept } = record;
  return {
    repeated: false,
    record: {
      ...kept,
      status: 'RUNNING',
      stoppedAt: null,
      output: null,
      error: null,
      cause: null,
      pid: process.pid,
      redriveCount: (record.redriveCount ?? 0) + 1,
      redriveDate,
      redriveTokens: tokens.slice(-TOKENS_KEPT),
    },
    startAt: resume?.state,
    input: resume ? resume.input : (record.input as Json),
  };
}

/** The steps of a redriven execution: the earlier attempt's, with the states run again updated. */
export function mergeSteps(
  earlier: readonly StepRecord[] | undefined,
  now: readonly StepRecord[] | undefined,
): readonly StepRecord[] | undefined {
  if (!earlier || earlier.length === 0) return now;
  const merged = new Map(earlier.map((step) => [step.name, step]));
  for (const step of now ?? []) {
    const before = merged.get(step.name);
    merged.set(step.name, before ? { ...step, ms: before.ms + step.ms, times: before.times + step.times } : step);
  }
  return [...merged.values()];
}

/**
 * The definition a redrive runs: StartAt is the state it continues from, and the top-level states it
 * cannot reach are left out (the interpreter refuses a definition with unreachable states).
 */
export function definitionFrom(definition: StateMachineDefinition, startAt: string): StateMachineDefinition {
  const states = definition.States as unknown as Record<string, Record<string, unknown>>;
  const reachable = new Set<string>();
  const visit = (name: string) => {
    if (reachable.has(name) || !(name in states)) return;
    reachable.add(name);
    const state = states[name] ?? {};
    const targets = [
      state.Next,
      state.Default,
      ...((state.Choices as { Next?: unknown }[] | undefined) ?? []).map((choice) => choice.Next),
      ...((state.Catch as { Next?: unknown }[] | undefined) ?? []).map((catcher) => catcher.Next),
    ];
    for (const target of targets) if (typeof target === 'string') visit(target);
  };
  visit(startAt);
  return {
    ...definition,
    StartAt: startAt,
    States: Object.fromEntries(Object.entries(states).filter(([name]) => reachable.has(name))),
  } as unknown as StateMachineDefinition;
}
