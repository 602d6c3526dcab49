/**
 * An execution's history, as Step Functions' GetExecutionHistory reports it
 * (https://docs.aws.amazon.com/step-functions/latest/apireference/API_HistoryEvent.html), and its
 * Distributed Map runs (https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeMapRun.html).
 *
 * - Events are appended as they happen to `<dir>/executions/<name>.history.jsonl`, one HistoryEvent a
 *   line, so another process (the CLI beside `sluice dev`) reads them through the API. A redrive
 *   appends to the same file, its ids following on (as on AWS, the history is one across redrives).
 * - Ids count from 1; `previousEventId` is the event before it in the same thread (the top level, or
 *   one inline Map iteration), 0 for the first. Timestamps are epoch milliseconds in the file, epoch
 *   seconds in the API.
 * - Inputs and outputs are cut at 256 KiB (`inputDetails.truncated`), as AWS does; an execution
 *   records at most 25,000 events ("Maximum execution history size: 25,000 events",
 *   https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html). AWS fails an execution
 *   at that point; locally the history stops growing and the execution goes on, marked not redrivable.
 * - Distributed Map children are executions of their own on AWS: their states are not in the
 *   parent's history, only MapRunStarted/Succeeded/Failed. Each map run is one file,
 *   `<dir>/executions/map-runs/<uuid>.json` (a folder, so listing executions never sees it).
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StateMachineDefinition } from 'aws-local-stepfunctions';
import type { ExecutionEvent, Json } from './data-limit.ts';
import { type MapRunUpdate, prepareDefinition, type StateDefinition, walkStates } from './distributed-map.ts';

/** Step Functions records at most this many events per execution. */
export const MAX_HISTORY_EVENTS = 25_000;
/** History event data (inputs, outputs, parameters) is cut at 256 KiB, as on AWS. */
const MAX_DATA_BYTES = 262_144;
const REGION = 'us-east-1';

/** One HistoryEvent (AWS's shape; `timestamp` in epoch ms here, seconds through the API). */
export interface HistoryEvent {
  readonly id: number;
  readonly previousEventId: number;
  readonly timestamp: number;
  readonly type: string;
  /** Not AWS's: set on the events of an inline Map iteration (the Map state's name), stripped by the API. */
  readonly iterationOf?: string;
  readonly [details: string]: unknown;
}

/** A payload as history events carry it: JSON text cut at 256 KiB, and whether it was cut. */
export function payload(value: Json): { text: string; truncated: boolean } {
  const text = JSON.stringify(value ?? null) ?? 'null';
  if (Buffer.byteLength(text, 'utf8') <= MAX_DATA_BYTES) return { text, truncated: false };
  return { text: Buffer.from(text, 'utf8').subarray(0, MAX_DATA_BYTES).toString('utf8'), truncated: true };
}

const historyFile = (folder: string, name: string) => join(folder, `${name}.history.jsonl`);

/** The recorded events of an execution, oldest first (none if it has no history file). */
export function readHistory(folder: string, name: string): HistoryEvent[] {
  let text: string;
  try {
    text = readFileSync(historyFile(folder, name), 'utf8');
  } catch {
    return [];
  }
  const events: HistoryEvent[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      events.push(JSON.parse(line) as HistoryEvent);
    } catch {
      // A line cut by a process killed while appending: the events before it stand.
    }
  }
  return events;
}

/** Appends an execution's events to its history file. */
export class HistoryWriter {
  private readonly file: string;
  private count: number;
  private last = new Map<string, number>();

  constructor(folder: string, name: string) {
    mkdirSync(folder, { recursive: true });
    this.file = historyFile(folder, name);
    const existing = readHistory(folder, name);
    this.count = existing.at(-1)?.id ?? 0;
    if (this.count > 0) this.last.set('', this.count);
  }

  /** Whether the history reached {@link MAX_HISTORY_EVENTS}. */
  get full(): boolean {
    return this.count >= MAX_HISTORY_EVENTS;
  }

  /** Appends one event; `thread` is the inline Map iteration it belongs to (`<map>[<index>]`), '' for the top level. */
  add(type: string, details: Record<string, unknown> = {}, thread = '', iterationOf?: string): void {
    if (this.full) return;
    const id = ++this.count;
    const previousEventId = this.last.get(thread) ?? this.last.get('') ?? 0;
    this.last.set(thread, id);
    if (thread !== '') this.last.set('', id);
    const event: HistoryEvent = {
      id,
      previousEventId,
      timestamp: Date.now(),
      type,
      ...(iterationOf !== undefined ? { iterationOf } : {}),
      ...details,
    };
    appendFileSync(this.file, `${JSON.stringify(event)}\n`);
  }
}

/** What a Task state's resource is, as TaskScheduled names it: `lambda`/`invoke`, `aws-sdk:athena`/`startQueryExecution`... */
export function resourceOf(resource: string): { resourceType: string; resource: string } {
  const integration = /^arn:aws:states:::(.+?)(?:\.(sync|waitForTaskToken)(?::2)?)?$/.exec(resource)?.[1];
  if (integration !== undefined) {
    const parts = integration.split(':');
    const action = parts.pop() ?? '';
    return { resourceType: parts.join(':') || action, resource: action };
  }
  const lambda = /^arn:aws:lambda:[^:]+:\d+:function:([^:]+)/.exec(resource)?.[1];
  if (lambda !== undefined) return { resourceType: 'lambda', resource: lambda };
  return { resourceType: 'unknown', resource };
}

/** A call of a Task state's resource (or of a Map state's stand-in), as the runtime makes it. */
export interface TaskCall {
  readonly state: string;
  readonly phase: 'scheduled' | 'succeeded' | 'failed';
  readonly parameters?: Json;
  readonly output?: Json;
  readonly error?: string;
  readonly cause?: string;
}

/** What the state machine reports while it runs (`ExecuteOptions.observer`). */
export interface ExecutionObserver {
  /** The interpreter's events: top-level states and inline Map iterations (not Distributed Map children). */
  event(event: ExecutionEvent): void;
  /** A Task state's resource called, answered or failed (top level and inline Map iterations only). */
  task(call: TaskCall): void;
  /** A Distributed Map's run started, progressed or ended. */
  mapRun(update: MapRunUpdate): void;
}

/** What kind of state each name is (the original definition: Maps are Maps, not their stand-ins). */
export interface StateKinds {
  readonly types: ReadonlyMap<string, string>;
  readonly resources: ReadonlyMap<string, string>;
  readonly distributed: ReadonlySet<string>;
}

const STATE_EVENT_PREFIX: Readonly<Record<string, string>> = {
  Task: 'TaskState',
  Pass: 'PassState',
  Choice: 'ChoiceState',
  Wait: 'WaitState',
  Succeed: 'SucceedState',
  Fail: 'FailState',
  Map: 'MapState',
  Parallel: 'ParallelState',
};

const causeText = (cause: unknown) =>
  typeof cause === 'string' ? cause : cause === undefined || cause === null ? '' : JSON.stringify(cause);

/**
 * Turns what the state machine reports into HistoryEvents. The execution events themselves
 * (ExecutionStarted, ExecutionSucceeded/Failed/Aborted/TimedOut, ExecutionRedriven) are written by
 * the runtime, which knows how the execution ended.
 */
export function historyObserver(
  writer: HistoryWriter,
  kinds: StateKinds,
  mapRuns: MapRunStore,
  execution: string,
): ExecutionObserver {
  /** The thread a task call belongs to is unknown (iterations run concurrently): the top level. */
  const details = (state: string) => resourceOf(kinds.resources.get(state) ?? '');
  return {
    event(event) {
      const iteration = event.index !== undefined && event.parentState ? event.parentState.name : undefined;
      const thread = iteration !== undefined ? `${iteration}[${event.index}]` : '';
      const add = (type: string, extra: Record<string, unknown> = {}) => writer.add(type, extra, thread, iteration);
      const name = event.state?.name ?? '';
      const prefix = STATE_EVENT_PREFIX[kinds.types.get(name) ?? event.state?.type ?? ''] ?? 'TaskState';
      switch (event.type) {
        case 'StateEntered': {
          const input = payload(event.state?.input ?? null);
          add(`${prefix}Entered`, {
            stateEnteredEventDetails: { name, input: input.text, inputDetails: { truncated: input.truncated } },
          });
          break;
        }
        case 'StateExited': {
          if (prefix === 'FailState') break;
          const output = payload(event.state?.output ?? null);
          add(`${prefix}Exited`, {
            stateExitedEventDetails: { name, output: output.text, outputDetails: { truncated: output.truncated } },
          });
          break;
        }
        case 'MapIterationStarted':
        case 'MapIterationSucceeded':
        case 'MapIterationFailed':
          add(event.type, {
            [`m${event.type.slice(1)}EventDetails`]: { name: event.parentState?.name ?? '', index: event.index },
          });
          break;
      }
    },
    task(call) {
      const type = kinds.types.get(call.state);
      if (type === 'Map') {
        if (call.phase === 'scheduled') writer.add('MapStateStarted', { mapStateStartedEventDetails: {} });
        else writer.add(call.phase === 'succeeded' ? 'MapStateSucceeded' : 'MapStateFailed');
        return;
      }
      const { resourceType, resource } = details(call.state);
      if (call.phase === 'scheduled') {
        const parameters = payload(call.parameters ?? null);
        writer.add('TaskScheduled', {
          taskScheduledEventDetails: { resourceType, resource, region: REGION, parameters: parameters.text },
        });
        writer.add('TaskStarted', { taskStartedEventDetails: { resourceType, resource } });
      } else if (call.phase === 'succeeded') {
        const output = payload(call.output ?? null);
        writer.add('TaskSucceeded', {
          taskSucceededEventDetails: {
            resourceType,
            resource,
            output: output.text,
            outputDetails: { truncated: output.truncated },
          },
        });
      } else {
        writer.add('TaskFailed', {
          taskFailedEventDetails: { resourceType, resource, error: call.error ?? '', cause: call.cause ?? '' },
        });
      }
    },
    mapRun(update) {
      const previous = mapRuns.read(update.mapRunArn);
      mapRuns.write({ ...update, executionName: execution });
      if (!previous) writer.add('MapRunStarted', { mapRunStartedEventDetails: { mapRunArn: update.mapRunArn } });
      if (update.status === 'SUCCEEDED' && previous?.status !== 'SUCCEEDED') writer.add('MapRunSucceeded');
      if ((update.status === 'FAILED' || update.status === 'ABORTED') && previous?.status === 'RUNNING') {
        writer.add(update.status === 'FAILED' ? 'MapRunFailed' : 'MapRunAborted', {
          ...(update.status === 'FAILED'
            ? { mapRunFailedEventDetails: { error: update.error ?? '', cause: causeText(update.cause) } }
            : {}),
        });
      }
    },
  };
}

/** A map run as the runtime keeps it: the last {@link MapRunUpdate} and the execution that started it. */
export interface MapRunRecord extends MapRunUpdate {
  readonly executionName: string;
}

/** The map runs of this runtime's folder, one file each. */
export class MapRunStore {
  private readonly folder: string;

  constructor(executionsFolder: string) {
    this.folder = join(executionsFolder, 'map-runs');
  }

  private file(mapRunArn: string): string | undefined {
    const id = /:([0-9a-f-]{36})$/.exec(mapRunArn)?.[1];
    return id ? join(this.folder, `${id}.json`) : undefined;
  }

  write(record: MapRunRecord): void {
    const file = this.file(record.mapRunArn);
    if (!file) return;
    mkdirSync(this.folder, { recursive: true });
    const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(temporary, JSON.stringify(record));
    renameSync(temporary, file);
  }

  read(mapRunArn: string): MapRunRecord | undefined {
    const file = this.file(mapRunArn);
    if (!file) return undefined;
    try {
      const record = JSON.parse(readFileSync(file, 'utf8')) as MapRunRecord;
      return record.mapRunArn === mapRunArn ? record : undefined;
    } catch {
      return undefined;
    }
  }

  /** The map runs an execution started, oldest first. */
  list(executionName: string): MapRunRecord[] {
    let files: string[];
    try {
      files = readdirSync(this.folder).filter((file) => file.endsWith('.json'));
    } catch {
      return [];
    }
    const records: MapRunRecord[] = [];
    for (const file of files) {
      try {
        const record = JSON.parse(readFileSync(join(this.folder, file), 'utf8')) as MapRunRecord;
        if (record.executionName === executionName) records.push(record);
      } catch {
        // a file being replaced: skipped
      }
    }
    return records.sort((a, b) => a.startDate.localeCompare(b.startDate));
  }
}

/**
 * Where a redrive continues: the last top-level state entered that did not exit, with its
 * recorded input; undefined when every state entered exited (or none was entered: then from
 * StartAt with the execution's input). Throws if that input was cut (over 256 KiB).
 */
export function resumePoint(events: readonly HistoryEvent[]): { state: string; input: Json } | undefined {
  const open = new Map<string, HistoryEvent>();
  let last: string | undefined;
  for (const event of events) {
    if (event.iterationOf !== undefined) continue;
    const entered = event.stateEnteredEventDetails as { name: string } | undefined;
    const exited = event.stateExitedEventDetails as { name: string } | undefined;
    if (event.type.endsWith('StateEntered') && entered) {
      open.set(entered.name, event);
      last = entered.name;
    } else if (event.type.endsWith('StateExited') && exited) {
      open.delete(exited.name);
    }
  }
  const event = last !== undefined ? open.get(last) : undefined;
  if (!event) return undefined;
  const details = event.stateEnteredEventDetails as {
    name: string;
    input: string;
    inputDetails?: { truncated?: boolean };
  };
  if (details.inputDetails?.truncated) {
    throw new Error(`the recorded input of state "${details.name}" is over 256 KiB`);
  }
  return { state: details.name, input: JSON.parse(details.input) as Json };
}

/** Each state's type and resource by name, nested ones included, and which are Distributed Maps (the original definition). */
export function stateKinds(definition: StateMachineDefinition): StateKinds {
  const types = new Map<string, string>();
  const resources = new Map<string, string>();
  walkStates(definition.States as unknown as Record<string, StateDefinition>, (name, state) => {
    types.set(name, String(state.Type));
    if (typeof state.Resource === 'string') resources.set(name, state.Resource);
  });
  return { types, resources, distributed: new Set(prepareDefinition(definition).distributedMaps.keys()) };
}

/** The event an execution's end is recorded with: ExecutionSucceeded, ExecutionFailed, ExecutionAborted or ExecutionTimedOut. */
export function endEvent(record: {
  readonly status: string;
  readonly output?: unknown;
  readonly error: string | null;
  readonly cause: string | null;
}): { type: string; details: Record<string, unknown> } {
  const failure = {
    // AWS bounds an error at 256 characters and a cause at 32,768.
    ...(record.error !== null ? { error: record.error.slice(0, 256) } : {}),
    ...(record.cause !== null ? { cause: record.cause.slice(0, 32_768) } : {}),
  };
  switch (record.status) {
    case 'SUCCEEDED': {
      const output = payload(record.output ?? null);
      return {
        type: 'ExecutionSucceeded',
        details: {
          executionSucceededEventDetails: { output: output.text, outputDetails: { truncated: output.truncated } },
        },
      };
    }
    case 'ABORTED':
      return { type: 'ExecutionAborted', details: { executionAbortedEventDetails: failure } };
    case 'TIMED_OUT':
      return { type: 'ExecutionTimedOut', details: { executionTimedOutEventDetails: failure } };
    default:
      return { type: 'ExecutionFailed', details: { executionFailedEventDetails: failure } };
  }
}
