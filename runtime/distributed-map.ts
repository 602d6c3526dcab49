/**
 * What aws-local-stepfunctions (3.0) lacks, supplied in one place, on an in-memory copy of
 * the definition (the ASL file stays the only copy of the state machine):
 *
 * - Distributed Map (`ItemReader`, `ProcessorConfig.Mode: DISTRIBUTED`, `MaxConcurrencyPath`,
 *   `ToleratedFailurePercentage(Path)`, `ToleratedFailureCount(Path)`, `ResultWriter`): each such
 *   Map state is replaced by a Task state with the same InputPath/ResultSelector/ResultPath/
 *   OutputPath/Retry/Catch/Next/End, whose local handler reads the items and runs the
 *   ItemProcessor as one child state machine per item. One difference remains: the library lets
 *   `States.TaskFailed` in a Retry/Catch match any error of a Task state, so it also matches
 *   this (former Map) state's errors; on AWS it would not. Our ASL catches with States.ALL.
 * - ResultWriter (`arn:aws:states:::s3:putObject`): the children's results go to
 *   `<Prefix>/<map run id>/SUCCEEDED_0.json` / `FAILED_0.json` with a `manifest.json`, and the
 *   Map's output is `{MapRunArn, ResultWriterDetails: {Bucket, Key}}`, as AWS documents it
 *   (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html).
 *   WriterConfig (Transformation, OutputType) is refused at load time.
 * - Step Functions' payload limit for Distributed Maps (see `data-limit.ts`): each child's input
 *   (the item after ItemSelector) and, without a ResultWriter, the array of the children's outputs
 *   that the Map returns are capped at 256 KiB; over it the execution fails with the uncatchable
 *   `States.DataLimitExceeded`. Inside a child, the limits fail that child (as on AWS, where each
 *   child is an execution of its own).
 * - Task timeouts: the library times a Task out after 60 s when it has no TimeoutSeconds;
 *   AWS's default is 99999999 s (none). Such Tasks get {@link DEFAULT_TASK_TIMEOUT_SECONDS}.
 *
 * Already supported by the library, checked in its source (so not transformed): Fail's
 * ErrorPath/CausePath, Retry's MaxDelaySeconds and JitterStrategy FULL.
 */

import { randomUUID } from 'node:crypto';
import { ExecutionError, StateMachine, type StateMachineDefinition } from 'aws-local-stepfunctions';
import { causeLine } from '../functions/run/failure-message.ts';
import {
  DataLimitExceededError,
  dataLimitError,
  type ExecutionEvent,
  type Json,
  runWithLimits,
  type TaskHandler,
} from './data-limit.ts';

export type { Json, TaskHandler };
export type StateDefinition = Record<string, unknown>;
type States = Record<string, StateDefinition>;

/** The resource of the Task states that stand in for Distributed Maps (never sent anywhere). */
export const DISTRIBUTED_MAP_RESOURCE = 'arn:sluice:local:::distributedMap';
/** The resource of the Task states that stand in for inline Maps (never sent anywhere). */
export const INLINE_MAP_RESOURCE = 'arn:sluice:local:::inlineMap';
/** An inline Map without MaxConcurrency runs up to 40 iterations at a time (AWS: "up to 40"; the library's default too). */
const INLINE_MAX_CONCURRENCY = 40;
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
  /** The original Distributed Map states that became Tasks, by state name. */
  readonly distributedMaps: ReadonlyMap<string, StateDefinition>;
  /** The original inline Map states that became Tasks, by state name. */
  readonly inlineMaps: ReadonlyMap<string, StateDefinition>;
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
  const inlineMaps = new Map<string, StateDefinition>();
  const replace = (states: States, name: string, state: StateDefinition, resource: string) => {
    const task: StateDefinition = { Type: 'Task', Resource: resource, TimeoutSeconds: DEFAULT_TASK_TIMEOUT_SECONDS };
    for (const field of KEPT_FIELDS) if (field in state) task[field] = state[field];
    states[name] = task;
  };
  const transform = (states: States) => {
    for (const [name, state] of Object.entries(states)) {
      for (const list of childStateLists(state)) transform(list);
      if (isDistributed(state)) {
        if ('ItemBatcher' in state) {
          throw new Error(`state "${name}": ItemBatcher is not supported by the embedded runtime`);
        }
        checkResultWriter(name, state);
        distributedMaps.set(name, state);
        replace(states, name, state, DISTRIBUTED_MAP_RESOURCE);
      } else if (state.Type === 'Map') {
        inlineMaps.set(name, state);
        replace(states, name, state, INLINE_MAP_RESOURCE);
      } else if (state.Type === 'Task' && !('TimeoutSeconds' in state) && !('TimeoutSecondsPath' in state)) {
        state.TimeoutSeconds = DEFAULT_TASK_TIMEOUT_SECONDS;
      }
    }
  };
  transform(definition.States);
  return { definition: definition as unknown as StateMachineDefinition, distributedMaps, inlineMaps };
}

const ITERATION_EVENTS: Readonly<Record<string, string>> = {
  ExecutionStarted: 'MapIterationStarted',
  ExecutionSucceeded: 'MapIterationSucceeded',
  ExecutionFailed: 'MapIterationFailed',
};

export interface InlineMapDeps {
  /** The Task handlers by state name; the iterations' Task states use them too. */
  readonly taskHandlers: () => Record<string, TaskHandler>;
  /** `$$` of the execution. */
  readonly context: Record<string, unknown>;
  readonly waitTimeOverrides?: Readonly<Record<string, number>>;
  readonly retryIntervalOverrides?: Readonly<Record<string, number | number[]>>;
  /** Aborts the iterations (the execution was stopped). */
  readonly signal?: AbortSignal;
  /** Receives the iterations' events, marked with their index and this Map as parent (as the library forwards them). */
  readonly onEvent?: (event: ExecutionEvent) => void;
}

/**
 * A Task handler that runs the inline Map `name` (its original definition `state`). The library
 * has inline Maps, but when an iteration fails it keeps starting the iterations still queued
 * behind MaxConcurrency, after the Map has failed (and been caught): with `MaxConcurrency: 1`
 * over the Load statements, the statements after a failed one would still run. On AWS a failed
 * iteration fails the Map and no further iteration starts; so it does here. The Map fails with
 * the iteration's own error (its name and cause), as on AWS.
 * https://docs.aws.amazon.com/step-functions/latest/dg/state-map-inline.html
 */
export function inlineMapHandler(name: string, state: StateDefinition, deps: InlineMapDeps): TaskHandler {
  const processor = state.ItemProcessor ?? state.Iterator;
  const child = new StateMachine(processor as unknown as StateMachineDefinition, {
    validationOptions: { noValidate: true },
  });
  return async (input) => {
    const context = deps.context;
    const items = typeof state.ItemsPath === 'string' ? await evaluatePath(state.ItemsPath, input, context) : input;
    if (!Array.isArray(items)) {
      throw Object.assign(
        new Error(`state "${name}": the items (${String(state.ItemsPath ?? '$')}) are not an array`),
        {
          name: 'States.Runtime',
          isCatchable: false,
          isRetryable: false,
        },
      );
    }
    const requested =
      typeof state.MaxConcurrencyPath === 'string'
        ? Number(await evaluatePath(state.MaxConcurrencyPath, input, context))
        : typeof state.MaxConcurrency === 'number'
          ? state.MaxConcurrency
          : 0;
    const concurrency = requested > 0 ? requested : INLINE_MAX_CONCURRENCY;
    const results: Json[] = new Array(items.length).fill(null);
    const running = new Set<AbortController>();
    let next = 0;
    let failure: { error: unknown } | undefined;
    const stopped = () => failure !== undefined || deps.signal?.aborted === true;

    const runItem = async (index: number) => {
      const item = items[index] as Json;
      const itemContext = { ...context, Map: { Item: { Index: index, Value: item } } };
      const selector = state.ItemSelector ?? state.Parameters;
      const itemInput = selector === undefined ? item : await evaluateTemplate(selector, input, itemContext);
      const controller = new AbortController();
      running.add(controller);
      try {
        results[index] = await runWithLimits(child, itemInput, {
          handlers: deps.taskHandlers(),
          context: itemContext,
          waitTimeOverrides: deps.waitTimeOverrides,
          retryIntervalOverrides: deps.retryIntervalOverrides,
          controller,
          onEvent: (event) => {
            // As the library forwards an iteration's events: its execution events become MapIteration* events.
            const type = ITERATION_EVENTS[event.type] ?? event.type;
            if (type === 'ExecutionAborted' || type === 'ExecutionTimeout') return;
            deps.onEvent?.(event.index === undefined ? { ...event, type, index, parentState: { name } } : event);
          },
        });
      } catch (error) {
        if (stopped()) return;
        // The iteration's own error (e.g. a Fail state's Error and Cause), not the execution wrapper.
        failure = { error: error instanceof ExecutionError ? error.cause : error };
        for (const other of running) if (other !== controller) other.abort();
      } finally {
        running.delete(controller);
      }
    };
    const worker = async () => {
      while (!stopped() && next < items.length) await runItem(next++);
    };
    const abortAll = () => {
      for (const controller of running) controller.abort();
    };
    deps.signal?.addEventListener('abort', abortAll);
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
    } finally {
      deps.signal?.removeEventListener('abort', abortAll);
    }
    if (failure) throw failure.error;
    if (deps.signal?.aborted) throw new Error(`${name}: aborted`);
    return results;
  };
}

/** The only ResultWriter the embedded runtime writes (and the only one LocalStack and AWS share). */
const RESULT_WRITER_RESOURCE = 'arn:aws:states:::s3:putObject';

interface ResultWriter {
  readonly Resource?: string;
  readonly Parameters?: Json;
  readonly WriterConfig?: unknown;
}

function checkResultWriter(name: string, state: StateDefinition): void {
  const writer = state.ResultWriter as ResultWriter | undefined;
  if (writer === undefined) return;
  if (writer.Resource !== RESULT_WRITER_RESOURCE || writer.Parameters === undefined) {
    throw new Error(
      `state "${name}": the embedded runtime supports a ResultWriter with Resource ${RESULT_WRITER_RESOURCE} ` +
        `and Parameters {Bucket, Prefix} only (got ${writer.Resource ?? 'no Resource'})`,
    );
  }
  if (writer.WriterConfig !== undefined) {
    throw new Error(`state "${name}": ResultWriter.WriterConfig is not supported by the embedded runtime`);
  }
}

export interface DistributedMapDeps {
  /** Reads an object of the ItemReader (`arn:aws:states:::s3:getObject`) as text. */
  readonly getObject: (bucket: string, key: string) => Promise<string>;
  /** Writes an object (the ResultWriter's result files and manifest). */
  readonly putObject: (bucket: string, key: string, body: string) => Promise<void>;
  /** The Task handlers by state name; the children's Task states use them too. */
  readonly taskHandlers: () => Record<string, TaskHandler>;
  /** `$$` of the parent execution. */
  readonly context: {
    readonly Execution: Record<string, unknown>;
    readonly StateMachine?: { readonly Name?: string };
  };
  /** The parent's Wait and Retry overrides, applied to the children too. */
  readonly waitTimeOverrides?: Readonly<Record<string, number>>;
  readonly retryIntervalOverrides?: Readonly<Record<string, number | number[]>>;
  readonly log: (line: string) => void;
  readonly signal?: AbortSignal;
  /** @default LOCAL_MAX_CONCURRENCY */
  readonly maxConcurrency?: number;
  /** Told when the Map Run starts, as its children finish (now and then) and when it ends (DescribeMapRun). */
  readonly onMapRun?: (update: MapRunUpdate) => void;
}

/** How many children are in each state (DescribeMapRun's itemCounts and executionCounts: one child per item here). */
export interface MapRunCounts {
  readonly pending: number;
  readonly running: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly timedOut: number;
  readonly aborted: number;
  readonly total: number;
  readonly resultsWritten: number;
}

/** A Map Run as DescribeMapRun reports it (https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeMapRun.html). */
export interface MapRunUpdate {
  /** `arn:aws:states:<region>:<account>:mapRun:<state machine>/<Label, else the execution name>:<uuid>`. */
  readonly mapRunArn: string;
  /** The Distributed Map state that started it. */
  readonly stateName: string;
  readonly status: 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'ABORTED';
  /** ISO 8601. */
  readonly startDate: string;
  readonly stopDate?: string;
  readonly maxConcurrency: number;
  readonly toleratedFailurePercentage: number;
  readonly toleratedFailureCount: number;
  readonly counts: MapRunCounts;
  readonly error?: string;
  readonly cause?: string;
  /** The children that ended (in the last update only): ListExecutions with the map run's ARN. */
  readonly children?: readonly {
    readonly executionArn: string;
    readonly name: string;
    readonly status: 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT';
    readonly startDate: string;
    readonly stopDate: string;
  }[];
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
  if (error instanceof DataLimitExceededError) return { index, error: error.name, cause: error.message };
  const cause = error instanceof ExecutionError ? (error.cause as Error) : (error as Error);
  if (cause?.name === 'ExecutionTimeoutError') return { index, error: 'States.Timeout', cause: cause.message };
  return { index, error: cause?.name ?? 'Error', cause: cause?.message ?? String(cause) };
}

/** One child execution, as the ResultWriter reports it. */
interface ChildRecord {
  readonly index: number;
  readonly name: string;
  readonly input: Json;
  readonly startDate: string;
  readonly stopDate: string;
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly output?: Json;
  readonly error?: string;
  readonly cause?: string;
}

const REGION_ACCOUNT = /^arn:aws:states:([^:]+):(\d+):/;

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
    const run = mapRunIdentity(name, state, deps);
    const mapRunStart = new Date().toISOString();
    const results: Json[] = new Array(total).fill(null);
    const records: (ChildRecord | undefined)[] = new Array(total);
    const running = new Set<AbortController>();
    let next = 0;
    let done = 0;
    let firstFailure: Failure | undefined;
    let failed = 0;
    let exceeded = false;
    let fatal: DataLimitExceededError | undefined;
    const stopped = () => exceeded || fatal !== undefined || deps.signal?.aborted === true;
    const every = total <= 50 ? 1 : Math.ceil(total / 20);
    let resultsWritten = 0;
    const report = (status: MapRunUpdate['status'], failure?: { error: string; cause: string }) => {
      if (!deps.onMapRun) return;
      const ended = records.filter((r): r is ChildRecord => r !== undefined);
      const timedOut = ended.filter((r) => r.error === 'States.Timeout').length;
      deps.onMapRun({
        mapRunArn: run.mapRunArn,
        stateName: name,
        status,
        startDate: mapRunStart,
        ...(status !== 'RUNNING' ? { stopDate: new Date().toISOString() } : {}),
        maxConcurrency: requested,
        toleratedFailurePercentage: toleratedPercentage ?? 0,
        toleratedFailureCount: toleratedCount ?? 0,
        counts: {
          pending: status === 'RUNNING' ? total - next : 0,
          running: status === 'RUNNING' ? running.size : 0,
          succeeded: ended.length - failed,
          failed: failed - timedOut,
          timedOut,
          aborted: status === 'RUNNING' ? 0 : total - ended.length,
          total,
          resultsWritten,
        },
        ...(failure ? { error: failure.error, cause: failure.cause } : {}),
        ...(status !== 'RUNNING'
          ? {
              children: ended.map((r) => ({
                executionArn: run.childArn(r.name),
                name: r.name,
                status: r.error === 'States.Timeout' ? ('TIMED_OUT' as const) : r.status,
                startDate: r.startDate,
                stopDate: r.stopDate,
              })),
            }
          : {}),
      });
    };
    report('RUNNING');
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
      // Each child's input is a state machine input: over 256 KiB, the Map Run cannot start it.
      const tooBig = dataLimitError(
        childInput,
        `state "${name}": the input of child ${index} (the item after ItemSelector)`,
      );
      if (tooBig) {
        fatal ??= tooBig;
        return;
      }
      const controller = new AbortController();
      running.add(controller);
      const startDate = new Date().toISOString();
      const childName = randomUUID();
      const childRecord = () => ({
        index,
        name: childName,
        input: childInput,
        startDate,
        stopDate: new Date().toISOString(),
      });
      let lastError = '';
      try {
        const output = await runWithLimits(child, childInput, {
          handlers: deps.taskHandlers(),
          context: itemContext,
          waitTimeOverrides: deps.waitTimeOverrides,
          retryIntervalOverrides: deps.retryIntervalOverrides,
          controller,
          onEvent: (event: ExecutionEvent) => {
            // Retries inside the children (the Map Run's console on AWS).
            if (event.type === 'StateFailed') lastError = `${event.Error}: ${causeLine(event.Cause)}`;
            if (event.type === 'StateRetried') {
              deps.log(`${name}[${index}] ${event.state?.name} retry ${event.retry?.attempt} after ${lastError}`);
            }
          },
        });
        results[index] = output;
        records[index] = { ...childRecord(), status: 'SUCCEEDED', output };
      } catch (error) {
        if (stopped()) return;
        const failure = childFailure(index, error);
        results[index] = { Error: failure.error, Cause: failure.cause };
        records[index] = { ...childRecord(), status: 'FAILED', error: failure.error, cause: failure.cause };
        failed++;
        firstFailure ??= failure;
        deps.log(`${name}[${index}] failed: ${failure.error}: ${causeLine(failure.cause)}`);
        if (exceedsTolerance()) exceeded = true;
      } finally {
        running.delete(controller);
        done++;
        if (!stopped() && (done % every === 0 || done === total)) {
          deps.log(`${name}: ${done}/${total} done${failed > 0 ? `, ${failed} failed` : ''}`);
          report('RUNNING');
        }
      }
    };

    const worker = async () => {
      while (!stopped() && next < total) await runItem(next++);
    };
    const abortAll = () => {
      for (const controller of running) controller.abort();
    };
    deps.signal?.addEventListener('abort', abortAll);
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
    } finally {
      deps.signal?.removeEventListener('abort', abortAll);
    }
    if (fatal) {
      abortAll();
      report('FAILED', { error: fatal.name, cause: fatal.message });
      throw fatal;
    }
    if (deps.signal?.aborted) {
      report('ABORTED');
      throw new Error(`${name}: aborted`);
    }

    const writer = state.ResultWriter as ResultWriter | undefined;
    let mapRun: Awaited<ReturnType<typeof writeResults>> | undefined;
    try {
      mapRun = writer ? await writeResults(name, writer, input, records, run, deps) : undefined;
    } catch (error) {
      report('FAILED', { error: (error as Error).name, cause: (error as Error).message });
      throw error;
    }
    if (writer) resultsWritten = records.filter((r) => r !== undefined).length;
    if (exceeded && firstFailure) {
      abortAll();
      report('FAILED', {
        error: 'States.ExceedToleratedFailureThreshold',
        cause: 'The specified tolerated failure threshold was exceeded',
      });
      // AWS's cause is generic ("The specified tolerated failure threshold was exceeded"); the
      // child's error is in the Map Run console. Locally the cause carries the first failure.
      throw new ToleratedFailureExceededError(
        `The specified tolerated failure threshold was exceeded: ${failed} of ${total} item(s) failed. ` +
          `First failure, item ${firstFailure.index}: ${firstFailure.error}: ${firstFailure.cause}`,
      );
    }
    report('SUCCEEDED');
    if (mapRun) return mapRun;
    // Without a ResultWriter the Map returns every child's output, and that array is the state's
    // result: over 256 KiB the execution fails, whatever ResultPath (null included) says.
    const collected = dataLimitError(
      results,
      `state "${name}": the array of its ${total} children's outputs (a Distributed Map without a ResultWriter)`,
    );
    if (collected) throw collected;
    return results;
  };
}

interface MapRunIdentity {
  readonly mapRunId: string;
  readonly mapRunArn: string;
  readonly childMachineArn: string;
  readonly childArn: (childName: string) => string;
}

/**
 * A new Map Run's ARN: "For each Map Run, Step Functions adds the label to the Map Run ARN"
 * (`mapRun:<state machine>/<Label>:<uuid>`, https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html);
 * without a Label, the execution's name stands in for the one AWS generates.
 */
function mapRunIdentity(name: string, state: StateDefinition, deps: DistributedMapDeps): MapRunIdentity {
  const executionArn = String(deps.context.Execution.Id ?? '');
  const [, region = 'us-east-1', account = '000000000000'] = REGION_ACCOUNT.exec(executionArn) ?? [];
  const machine = deps.context.StateMachine?.Name ?? 'state-machine';
  const execution = typeof deps.context.Execution.Name === 'string' ? deps.context.Execution.Name : name;
  const label = typeof state.Label === 'string' ? state.Label : execution;
  const mapRunId = randomUUID();
  return {
    mapRunId,
    mapRunArn: `arn:aws:states:${region}:${account}:mapRun:${machine}/${label}:${mapRunId}`,
    childMachineArn: `arn:aws:states:${region}:${account}:stateMachine:${machine}/${label}`,
    childArn: (childName) => `arn:aws:states:${region}:${account}:execution:${machine}/${label}:${childName}`,
  };
}

/** The error the ResultWriter fails with when it cannot write (the name AWS uses). */
class ResultWriterFailedError extends Error {
  override name = 'States.ResultWriterFailed';
}

/**
 * Writes the Map Run's results as the ResultWriter does on AWS: one file per status with the
 * children of that status (JSON arrays; AWS splits files at 5 GB, never reached here) and a
 * `manifest.json` that lists them, under `<Prefix>/<map run id>/`. Returns the Map's output.
 */
async function writeResults(
  name: string,
  writer: ResultWriter,
  input: Json,
  records: readonly (ChildRecord | undefined)[],
  run: MapRunIdentity,
  deps: DistributedMapDeps,
): Promise<{ MapRunArn: string; ResultWriterDetails: { Bucket: string; Key: string } }> {
  const context = deps.context as Record<string, unknown>;
  const where = (await evaluateTemplate(writer.Parameters ?? {}, input, context)) as {
    Bucket?: unknown;
    Prefix?: unknown;
  };
  if (typeof where.Bucket !== 'string' || where.Bucket === '') {
    throw new ResultWriterFailedError(`state "${name}": the ResultWriter's Parameters give no Bucket`);
  }
  const bucket = where.Bucket;
  const prefix = typeof where.Prefix === 'string' ? where.Prefix.replace(/\/+$/, '') : '';
  const { mapRunArn, mapRunId, childMachineArn } = run;
  const folder = prefix ? `${prefix}/${mapRunId}` : mapRunId;

  const files: Record<'FAILED' | 'PENDING' | 'SUCCEEDED', { Key: string; Size: number }[]> = {
    FAILED: [],
    PENDING: [],
    SUCCEEDED: [],
  };
  const put = async (key: string, body: string) => {
    try {
      await deps.putObject(bucket, key, body);
    } catch (error) {
      throw new ResultWriterFailedError(
        `state "${name}": the ResultWriter could not write s3://${bucket}/${key}: ${(error as Error).message}`,
      );
    }
  };
  for (const status of ['SUCCEEDED', 'FAILED'] as const) {
    const entries = records
      .filter((r): r is ChildRecord => r !== undefined && r.status === status)
      .map((r) => ({
        ExecutionArn: run.childArn(r.name),
        Input: JSON.stringify(r.input),
        InputDetails: { Included: true },
        Name: r.name,
        ...(status === 'SUCCEEDED'
          ? { Output: JSON.stringify(r.output), OutputDetails: { Included: true } }
          : { Error: r.error, Cause: r.cause }),
        StartDate: r.startDate,
        StateMachineArn: childMachineArn,
        Status: status,
        StopDate: r.stopDate,
      }));
    if (entries.length === 0) continue;
    const key = `${folder}/${status}_0.json`;
    const body = JSON.stringify(entries);
    await put(key, body);
    files[status].push({ Key: key, Size: Buffer.byteLength(body) });
  }
  const manifestKey = `${folder}/manifest.json`;
  await put(manifestKey, JSON.stringify({ DestinationBucket: bucket, MapRunArn: mapRunArn, ResultFiles: files }));
  deps.log(`${name}: results written to s3://${bucket}/${manifestKey}`);
  return { MapRunArn: mapRunArn, ResultWriterDetails: { Bucket: bucket, Key: manifestKey } };
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
