/**
 * What aws-local-stepfunctions (3.0) lacks, supplied in one place, on an in-memory copy of
 * the definition (the ASL file stays the only copy of the state machine):
 *
 * - Distributed Map (`ItemReader`, `ProcessorConfig.Mode: DISTRIBUTED`, `MaxConcurrencyPath`,
 *   `ToleratedFailurePercentage(Path)`, `ToleratedFailureCount(Path)`): each such Map state is
 *   replaced by a Task state with the same InputPath/ResultSelector/ResultPath/OutputPath/
 *   Retry/Catch/Next/End, whose local handler reads the items and runs the ItemProcessor as
 *   one child state machine per item. One difference remains: the library lets
 *   `States.TaskFailed` in a Retry/Catch match any error of a Task state, so it also matches
 *   this (former Map) state's errors; on AWS it would not. Our ASL catches with States.ALL.
 * - Task timeouts: the library times a Task out after 60 s when it has no TimeoutSeconds;
 *   AWS's default is 99999999 s (none). Such Tasks get {@link DEFAULT_TASK_TIMEOUT_SECONDS}.
 *
 * Already supported by the library, checked in its source (so not transformed): Fail's
 * ErrorPath/CausePath, Retry's MaxDelaySeconds and JitterStrategy FULL.
 */
import { ExecutionError, StateMachine, type StateMachineDefinition } from 'aws-local-stepfunctions';

export type Json = unknown;
export type TaskHandler = (input: Json) => Promise<Json>;
export type StateDefinition = Record<string, unknown>;
type States = Record<string, StateDefinition>;

/** The resource of the Task states that stand in for Distributed Maps (never sent anywhere). */
export const DISTRIBUTED_MAP_RESOURCE = 'arn:sluice:local:::distributedMap';
/** Longest a Task may run locally without its own TimeoutSeconds (24 days: Node's timer limit). */
export const DEFAULT_TASK_TIMEOUT_SECONDS = 2_000_000;
/** EXPRESS child executions run at most 5 minutes on AWS; so they do here. */
export const EXPRESS_TIMEOUT_SECONDS = 300;
/** In-process workers share this machine's cores, unlike a Lambda fleet: concurrency is capped here. */
export const LOCAL_MAX_CONCURRENCY = 8;

const KEPT_FIELDS = [
  'Comment',
  'InputPath',
  'ResultSelector',
  'ResultPath',
  'OutputPath',
  'Retry',
  'Catch',
  'Next',
  'End',
];

export interface PreparedDefinition {
  readonly definition: StateMachineDefinition;
  /** The original Map states that became Tasks, by state name. */
  readonly distributedMaps: ReadonlyMap<string, StateDefinition>;
}

const isDistributed = (state: StateDefinition) =>
  state.Type === 'Map' &&
  ('ItemReader' in state ||
    (state.ItemProcessor as { ProcessorConfig?: { Mode?: string } } | undefined)?.ProcessorConfig?.Mode ===
      'DISTRIBUTED');

/** Every nested state list of a state (Map processors, Parallel branches). */
export function childStateLists(state: StateDefinition): States[] {
  const lists: States[] = [];
  for (const key of ['ItemProcessor', 'Iterator'] as const) {
    const processor = state[key] as { States?: States } | undefined;
    if (processor?.States) lists.push(processor.States);
  }
  for (const branch of (state.Branches as { States?: States }[] | undefined) ?? []) {
    if (branch.States) lists.push(branch.States);
  }
  return lists;
}

/** Calls `visit` for every state, nested ones included, depth first. */
export function walkStates(states: States, visit: (name: string, state: StateDefinition) => void): void {
  for (const [name, state] of Object.entries(states)) {
    visit(name, state);
    for (const list of childStateLists(state)) walkStates(list, visit);
  }
}

/** Returns a transformed copy of the definition (see the module comment). */
export function prepareDefinition(source: StateMachineDefinition): PreparedDefinition {
  const definition = structuredClone(source) as unknown as { States: States };
  const distributedMaps = new Map<string, StateDefinition>();
  const transform = (states: States) => {
    for (const [name, state] of Object.entries(states)) {
      for (const list of childStateLists(state)) transform(list);
      if (isDistributed(state)) {
        for (const unsupported of ['ItemBatcher', 'ResultWriter']) {
          if (unsupported in state) {
            throw new Error(`state "${name}": ${unsupported} is not supported by the embedded runtime`);
          }
        }
        distributedMaps.set(name, state);
        const task: StateDefinition = {
          Type: 'Task',
          Resource: DISTRIBUTED_MAP_RESOURCE,
          TimeoutSeconds: DEFAULT_TASK_TIMEOUT_SECONDS,
        };
        for (const field of KEPT_FIELDS) if (field in state) task[field] = state[field];
        states[name] = task;
      } else if (state.Type === 'Task' && !('TimeoutSeconds' in state) && !('TimeoutSecondsPath' in state)) {
        state.TimeoutSeconds = DEFAULT_TASK_TIMEOUT_SECONDS;
      }
    }
  };
  transform(definition.States);
  return { definition: definition as unknown as StateMachineDefinition, distributedMaps };
}

export interface DistributedMapDeps {
  /** Reads an object of the ItemReader (`arn:aws:states:::s3:getObject`) as text. */
  readonly getObject: (bucket: string, key: string) => Promise<string>;
  /** The Task handlers by state name; the children's Task states use them too. */
  readonly taskHandlers: () => Record<string, TaskHandler>;
  /** `$$` of the parent execution. */
  readonly context: { readonly Execution: Record<string, unknown> };
  readonly log: (line: string) => void;
  readonly signal?: AbortSignal;
  /** @default LOCAL_MAX_CONCURRENCY */
  readonly maxConcurrency?: number;
}

/** The error a Map run fails with above its tolerated failures (the name AWS uses). */
export class ToleratedFailureExceededError extends Error {
  override name = 'States.ExceedToleratedFailureThreshold';
}

/** Evaluates a payload template (`"key.$": "$.path"`, intrinsics) exactly as the library does, with a Pass state. */
export async function evaluateTemplate(template: Json, input: Json, context: Record<string, unknown>): Promise<Json> {
  const machine = new StateMachine(
    { StartAt: 'Evaluate', States: { Evaluate: { Type: 'Pass', Parameters: template, End: true } } } as never,
    { validationOptions: { noValidate: true } },
  );
  try {
    return await machine.run(input as never, { context }).result;
  } catch (error) {
    throw error instanceof ExecutionError ? error.cause : error;
  }
}

const evaluatePath = async (path: string, input: Json, context: Record<string, unknown>) =>
  ((await evaluateTemplate({ 'value.$': path }, input, context)) as { value: Json }).value;

interface Failure {
  readonly index: number;
  readonly error: string;
  readonly cause: string;
}

function childFailure(index: number, error: unknown): Failure {
  const cause = error instanceof ExecutionError ? (error.cause as Error) : (error as Error);
  if (cause?.name === 'ExecutionTimeoutError') return { index, error: 'States.Timeout', cause: cause.message };
  return { index, error: cause?.name ?? 'Error', cause: cause?.message ?? String(cause) };
}

/** A Task handler that runs the Distributed Map `name` (its original definition `state`). */
export function distributedMapHandler(name: string, state: StateDefinition, deps: DistributedMapDeps): TaskHandler {
  return async (input) => {
    const context = deps.context as Record<string, unknown>;
    const items = await readItems(name, state, input, context, deps);
    const processor = structuredClone(state.ItemProcessor ?? state.Iterator) as StateDefinition & {
      ProcessorConfig?: { ExecutionType?: string };
      TimeoutSeconds?: number;
    };
    if (processor.ProcessorConfig?.ExecutionType === 'EXPRESS' && processor.TimeoutSeconds === undefined) {
      processor.TimeoutSeconds = EXPRESS_TIMEOUT_SECONDS;
    }
    const child = new StateMachine(processor as unknown as StateMachineDefinition, {
      validationOptions: { noValidate: true },
    });

    const fromPath = async (field: string) =>
      typeof state[`${field}Path`] === 'string'
        ? Number(await evaluatePath(state[`${field}Path`] as string, input, context))
        : typeof state[field] === 'number'
          ? (state[field] as number)
          : undefined;
    const requested = (await fromPath('MaxConcurrency')) ?? 0;
    const cap = deps.maxConcurrency ?? LOCAL_MAX_CONCURRENCY;
    const concurrency = Math.max(1, requested === 0 ? cap : Math.min(requested, cap));
    const toleratedPercentage = await fromPath('ToleratedFailurePercentage');
    const toleratedCount = await fromPath('ToleratedFailureCount');

    const total = items.length;
    const results: Json[] = new Array(total).fill(null);
    const running = new Set<() => void>();
    let next = 0;
    let done = 0;
    let firstFailure: Failure | undefined;
    let failed = 0;
    let exceeded = false;
    const every = total <= 50 ? 1 : Math.ceil(total / 20);
    deps.log(`${name}: ${total} item(s), concurrency ${concurrency}${requested > cap ? ` (asked ${requested})` : ''}`);

    const exceedsTolerance = () => {
      if (toleratedPercentage === undefined && toleratedCount === undefined) return failed > 0;
      return (
        (toleratedCount !== undefined && failed > toleratedCount) ||
        (toleratedPercentage !== undefined && (failed * 100) / total > toleratedPercentage)
      );
    };

    const runItem = async (index: number) => {
      const item = items[index];
      const itemContext = { ...context, Map: { Item: { Index: index, Value: item } } };
      const selector = state.ItemSelector ?? state.Parameters;
      const childInput = selector === undefined ? item : await evaluateTemplate(selector, input, itemContext);
      const execution = child.run(childInput as never, {
        overrides: { taskResourceLocalHandlers: deps.taskHandlers() as never },
        context: itemContext,
      });
      running.add(execution.abort);
      void logChildEvents(name, index, execution.eventLogs as AsyncIterable<ChildEvent>, deps.log);
      try {
        results[index] = await execution.result;
      } catch (error) {
        if (exceeded || deps.signal?.aborted) return;
        const failure = childFailure(index, error);
        results[index] = { Error: failure.error, Cause: failure.cause };
        failed++;
        firstFailure ??= failure;
        deps.log(`${name}[${index}] failed: ${failure.error}: ${firstLine(failure.cause)}`);
        if (exceedsTolerance()) exceeded = true;
      } finally {
        running.delete(execution.abort);
        done++;
        if (!exceeded && (done % every === 0 || done === total)) {
          deps.log(`${name}: ${done}/${total} done${failed > 0 ? `, ${failed} failed` : ''}`);
        }
      }
    };

    const worker = async () => {
      while (!exceeded && !deps.signal?.aborted && next < total) await runItem(next++);
    };
    const abortAll = () => {
      for (const abort of running) abort();
    };
    deps.signal?.addEventListener('abort', abortAll);
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
    } finally {
      deps.signal?.removeEventListener('abort', abortAll);
    }
    if (exceeded && firstFailure) {
      abortAll();
      // AWS's cause is generic ("The specified tolerated failure threshold was exceeded"); the
      // child's error is in the Map Run console. Locally the cause carries the first failure.
      throw new ToleratedFailureExceededError(
        `The specified tolerated failure threshold was exceeded: ${failed} of ${total} item(s) failed. ` +
          `First failure, item ${firstFailure.index}: ${firstFailure.error}: ${firstFailure.cause}`,
      );
    }
    if (deps.signal?.aborted) throw new Error(`${name}: aborted`);
    return results;
  };
}

async function readItems(
  name: string,
  state: StateDefinition,
  input: Json,
  context: Record<string, unknown>,
  deps: DistributedMapDeps,
): Promise<Json[]> {
  const reader = state.ItemReader as
    | {
        Resource?: string;
        Parameters?: Json;
        ReaderConfig?: { InputType?: string; MaxItems?: number; MaxItemsPath?: string };
      }
    | undefined;
  let items: Json;
  if (!reader) {
    items = typeof state.ItemsPath === 'string' ? await evaluatePath(state.ItemsPath, input, context) : input;
  } else {
    const inputType = reader.ReaderConfig?.InputType;
    if (reader.Resource !== 'arn:aws:states:::s3:getObject' || inputType !== 'JSON') {
      throw new Error(
        `state "${name}": the embedded runtime reads items with arn:aws:states:::s3:getObject and InputType JSON only ` +
          `(got ${reader.Resource} ${inputType ?? 'no InputType'})`,
      );
    }
    const where = (await evaluateTemplate(reader.Parameters ?? {}, input, context)) as {
      Bucket?: string;
      Key?: string;
    };
    if (!where.Bucket || !where.Key) throw new Error(`state "${name}": ItemReader needs Bucket and Key`);
    const text = await deps.getObject(where.Bucket, where.Key);
    try {
      items = JSON.parse(text);
    } catch {
      throw Object.assign(new Error(`s3://${where.Bucket}/${where.Key} is not valid JSON`), {
        name: 'States.ItemReaderFailed',
      });
    }
    const maxItems = reader.ReaderConfig?.MaxItemsPath
      ? Number(await evaluatePath(reader.ReaderConfig.MaxItemsPath, input, context))
      : reader.ReaderConfig?.MaxItems;
    if (Array.isArray(items) && maxItems) items = items.slice(0, maxItems);
  }
  if (!Array.isArray(items)) {
    throw Object.assign(new Error(`state "${name}": the items are not a JSON array`), {
      name: 'States.ItemReaderFailed',
    });
  }
  return items;
}

interface ChildEvent {
  readonly type: string;
  readonly state?: { readonly name: string };
  readonly Error?: string;
  readonly Cause?: unknown;
  readonly retry?: { readonly attempt: number };
}

const firstLine = (text: unknown) => readableCause(text).split('\n', 1)[0]?.slice(0, 300) ?? '';

/** Lambda errors carry a JSON cause `{"errorType","errorMessage","trace"}`: the message is what a person reads. */
export function readableCause(cause: unknown): string {
  const text = String(cause ?? '');
  try {
    const parsed = JSON.parse(text) as { errorMessage?: unknown };
    return typeof parsed.errorMessage === 'string' ? parsed.errorMessage : text;
  } catch {
    return text;
  }
}

/** Reports retries inside the children (the Map Run's console on AWS). */
async function logChildEvents(
  name: string,
  index: number,
  events: AsyncIterable<ChildEvent>,
  log: (line: string) => void,
): Promise<void> {
  let lastError = '';
  for await (const event of events) {
    if (event.type === 'StateFailed') lastError = `${event.Error}: ${firstLine(event.Cause)}`;
    if (event.type === 'StateRetried') {
      log(`${name}[${index}] ${event.state?.name} retry ${event.retry?.attempt} after ${lastError}`);
    }
  }
}
