/**
 * Runs `state-machines/pipeline.asl.json` itself with aws-local-stepfunctions. Task states are
 * dispatched by their Resource, as the service integrations would on AWS:
 * - `arn:aws:states:::lambda:invoke` → the handler module named by the function (through
 *   `functions/catalog.ts`: local function name → entry file);
 * - `arn:aws:states:::aws-sdk:athena:startQueryExecution` / `getQueryExecution` /
 *   `stopQueryExecution` → the local Athena registry (`athena.ts`) over the local warehouse;
 * - `arn:aws:states:::sns:publish` → the runtime's log and `notifications.jsonl`;
 * and Maps, Distributed (with their ResultWriter) and inline, by `distributed-map.ts`. Any other
 * resource fails when the definition is loaded. Step Functions' 256 KiB payload limit is applied
 * as on AWS, uncatchable (`data-limit.ts`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  ExecutionAbortedError,
  ExecutionError,
  ExecutionTimeoutError,
  StateMachine,
  type StateMachineDefinition,
} from 'aws-local-stepfunctions';
import { HANDLERS, PLACEHOLDERS } from '../functions/catalog.ts';
import type { FailureDetails } from '../functions/contracts.ts';
import type { HandlerDeps } from '../functions/handlers/shared.ts';
import { causeLine, readableCause as plainCause, plainFailure } from '../functions/run/failure-message.ts';
import type { AthenaApi } from './athena.ts';
import { DataLimitExceededError, type ExecutionEvent, runWithLimits } from './data-limit.ts';
import {
  DISTRIBUTED_MAP_RESOURCE,
  distributedMapHandler,
  INLINE_MAP_RESOURCE,
  inlineMapHandler,
  type Json,
  type MapRunUpdate,
  prepareDefinition,
  type StateDefinition,
  type TaskHandler,
  walkStates,
} from './distributed-map.ts';
import { LOCAL_ATHENA_DATABASE, LOCAL_ATHENA_WORKGROUP } from './environment.ts';
import type { ExecutionObserver } from './history.ts';
import { LOCAL_BUCKETS } from './s3-server.ts';

/** A cause as a person reads it: a Lambda error's message, not its JSON and trace; plain, escaped and bounded. */
export const readableCause = (cause: unknown): string =>
  plainCause(typeof cause === 'string' ? cause : cause === null || cause === undefined ? '' : JSON.stringify(cause));

const ACCOUNT = '000000000000';
const REGION = 'us-east-1';
const lambdaArn = (name: string) => `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${name}`;

/** What CDK substitutes on AWS, with the local names; every name comes from `functions/catalog.ts`. */
export const LOCAL_PLACEHOLDERS: Readonly<Record<string, string>> = {
  ...Object.fromEntries(Object.values(HANDLERS).map((h) => [h.placeholder, lambdaArn(h.localName)])),
  [PLACEHOLDERS.athenaWorkGroup]: LOCAL_ATHENA_WORKGROUP,
  [PLACEHOLDERS.glueDatabase]: LOCAL_ATHENA_DATABASE,
  [PLACEHOLDERS.failureTopicArn]: `arn:aws:sns:${REGION}:${ACCOUNT}:sluice-failures`,
  [PLACEHOLDERS.workingBucketName]: LOCAL_BUCKETS.working,
  // The embedded runtime runs children as AWS does (EXPRESS: 5-minute cap); LocalStack gets STANDARD.
  [PLACEHOLDERS.childExecutionType]: 'EXPRESS',
};

/** Local function name → handler entry file (under `functions/handlers/`), from the catalog. */
const LOCAL_FUNCTIONS: Readonly<Record<string, string>> = Object.fromEntries(
  Object.values(HANDLERS).map((h) => [h.localName, h.entry]),
);

/**
 * Wait states whose time is shortened locally (milliseconds), with aws-local-stepfunctions'
 * `waitTimeOverrides`: only the time differs; the state is entered and left as on AWS. The
 * query polling loop waits 2 s between GetQueryExecution calls on AWS; the local warehouse
 * answers in milliseconds.
 */
const LOCAL_WAIT_TIME_OVERRIDES: Readonly<Record<string, number>> = { WaitForQuery: 25 };

/** Reads an ASL file and substitutes its `${Name}` placeholders; an unknown placeholder is an error. */
export function loadDefinition(
  file: string,
  placeholders: Readonly<Record<string, string>> = LOCAL_PLACEHOLDERS,
): StateMachineDefinition {
  const text = readFileSync(file, 'utf8');
  const parsed = JSON.parse(text) as { Comment?: string };
  // The top-level Comment documents the placeholders themselves; substitute in states only.
  const comment = parsed.Comment;
  delete parsed.Comment;
  const unknown = new Set<string>();
  const substituted = JSON.stringify(parsed).replace(/\$\{([A-Za-z0-9_]+)\}/g, (whole, name: string) => {
    const value = placeholders[name];
    if (value === undefined) unknown.add(name);
    return value ?? whole;
  });
  if (unknown.size > 0) {
    throw new Error(
      `${file}: no local value for the placeholder(s) ${[...unknown].map((n) => `\${${n}}`).join(', ')}; ` +
        `known: ${Object.keys(placeholders).join(', ')}`,
    );
  }
  const definition = JSON.parse(substituted) as StateMachineDefinition;
  if (comment !== undefined) definition.Comment = comment;
  return definition;
}

/** The local services behind the Task states' resources. */
export interface LocalServices {
  /** Invokes a function by name or ARN with a JSON payload; resolves to its result. */
  readonly invokeLambda: (functionName: string, payload: Json) => Promise<Json>;
  /** The Athena API of the aws-sdk integration (`athena.ts`). */
  readonly athena: AthenaApi;
  readonly publish: (message: { TopicArn?: string; Subject?: string; Message?: string }) => Promise<void>;
  /** Reads an object as text (Distributed Map ItemReader). */
  readonly getObject: (bucket: string, key: string) => Promise<string>;
  /** Writes an object (Distributed Map ResultWriter). */
  readonly putObject: (bucket: string, key: string, body: string) => Promise<void>;
}

/** A Lambda function's error as the lambda:invoke integration reports it: its type as Error, a JSON Cause. */
export class LambdaFunctionError extends Error {
  constructor(error: unknown) {
    const name = error instanceof Error ? error.name : 'Error';
    const message = error instanceof Error ? error.message : String(error);
    // The function's own frames, as Lambda reports them; the runtime and the ASL interpreter are not the function.
    const trace =
      error instanceof Error
        ? (error.stack
            ?.split('\n')
            .map((line) => line.trim())
            .filter((line) => !/\/(node_modules|runtime)\//.test(line)) ?? [])
        : [];
    super(JSON.stringify({ errorType: name, errorMessage: message, trace }));
    this.name = name;
  }
}

/** Fails a Task with a given error name and cause. */
export class TaskError extends Error {
  constructor(name: string, cause: string) {
    super(cause);
    this.name = name;
  }
}

const ATHENA_SDK = 'arn:aws:states:::aws-sdk:athena:';
/** The Athena actions of the aws-sdk integration the local registry serves. */
const ATHENA_ACTIONS = {
  startQueryExecution: (athena: AthenaApi, input: Json) => athena.startQueryExecution(input as never),
  getQueryExecution: (athena: AthenaApi, input: Json) => athena.getQueryExecution(input as never),
  stopQueryExecution: (athena: AthenaApi, input: Json) => athena.stopQueryExecution(input as never),
} as const;

/** Builds the handler of one Task state from its Resource. Unknown resources fail at load time. */
function taskHandler(
  stateName: string,
  state: StateDefinition,
  services: LocalServices,
  onResult: (functionName: string, result: Json) => void = () => {},
): TaskHandler | undefined {
  const resource = String(state.Resource);
  if (resource === DISTRIBUTED_MAP_RESOURCE || resource === INLINE_MAP_RESOURCE) return undefined;
  if (resource === 'arn:aws:states:::lambda:invoke') {
    return async (input) => {
      const { FunctionName, Payload } = input as { FunctionName: string; Payload?: Json };
      let result: Json;
      try {
        result = await services.invokeLambda(FunctionName, JSON.parse(JSON.stringify(Payload ?? {})));
      } catch (error) {
        throw error instanceof TaskError ? error : new LambdaFunctionError(error);
      }
      onResult(FunctionName, result);
      return { ExecutedVersion: '$LATEST', StatusCode: 200, Payload: result ?? null };
    };
  }
  if (resource.startsWith(ATHENA_SDK)) {
    const action = resource.slice(ATHENA_SDK.length);
    if (Object.hasOwn(ATHENA_ACTIONS, action)) {
      const call = ATHENA_ACTIONS[action as keyof typeof ATHENA_ACTIONS];
      // The aws-sdk integration returns the API's response; its errors are named `Athena.<Exception>`.
      return async (input) => JSON.parse(JSON.stringify(await call(services.athena, input))) as Json;
    }
  }
  if (resource === 'arn:aws:states:::sns:publish') {
    return async (input) => {
      await services.publish(input as { TopicArn?: string; Subject?: string; Message?: string });
      return { MessageId: crypto.randomUUID() };
    };
  }
  if (/^arn:aws:lambda:[^:]+:\d+:function:/.test(resource)) {
    return async (input) => {
      try {
        return (await services.invokeLambda(resource, JSON.parse(JSON.stringify(input)))) ?? null;
      } catch (error) {
        throw new LambdaFunctionError(error);
      }
    };
  }
  throw new Error(`state "${stateName}": the resource "${resource}" has no local implementation`);
}

/** The function name of a name or ARN (`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`). */
const functionNameOf = (functionName: string) =>
  functionName.startsWith('arn:') ? (functionName.split(':')[6] ?? '') : (functionName.split(':')[0] ?? '');

/** A handler module: `createHandler(deps)` (the factory) and `handler` (Lambda's, from the environment). */
interface HandlerModule {
  readonly createHandler?: (deps: HandlerDeps) => LambdaHandler;
  readonly handler?: LambdaHandler;
}
type LambdaHandler = (event: Json, context: object) => Promise<Json>;

/**
 * Lambda functions from handler modules: the function name is looked up in `functions`
 * (by default the catalog's local names → entry files) and `<dir>/<entry>` is imported on first
 * use. With `deps` (the runtime's store, configuration and pipelines), the module's
 * `createHandler(deps())` is built once and called, so each runtime's functions serve its own
 * endpoint; without (or for a module with no factory) its `handler(event, context)` is called.
 * An unknown function fails as Lambda does.
 */
export function handlerModules(
  dir: string,
  functions: Readonly<Record<string, string>> = LOCAL_FUNCTIONS,
  deps?: () => HandlerDeps,
): LocalServices['invokeLambda'] {
  const handlers = new Map<string, Promise<LambdaHandler>>();
  const load = async (file: string): Promise<LambdaHandler> => {
    const module = (await import(pathToFileURL(file).href)) as HandlerModule;
    if (deps && typeof module.createHandler === 'function') return module.createHandler(deps());
    if (typeof module.handler === 'function') return module.handler;
    throw new TaskError('Lambda.ResourceNotFoundException', `${file} exports no handler`);
  };
  return async (functionName, payload) => {
    const name = functionNameOf(functionName);
    const entry = Object.hasOwn(functions, name) ? functions[name] : undefined;
    if (entry === undefined) {
      throw new TaskError(
        'Lambda.ResourceNotFoundException',
        `Function not found: ${functionName} (the local functions are ${Object.keys(functions).join(', ')})`,
      );
    }
    const file = join(dir, entry);
    if (!existsSync(file)) {
      throw new TaskError('Lambda.ResourceNotFoundException', `Function not found: ${functionName} (no ${file})`);
    }
    let loaded = handlers.get(file);
    if (!loaded) {
      loaded = load(file);
      handlers.set(file, loaded);
      // A failed start (a bad pipeline file) is tried again on the next call, once it may be fixed.
      loaded.catch(() => handlers.delete(file));
    }
    const handler = await loaded;
    const context = { functionName: name, awsRequestId: crypto.randomUUID(), getRemainingTimeInMillis: () => 900_000 };
    return handler(payload, context);
  };
}

/** One top-level state of an execution, for `sluice runs <run>`. */
export interface StepRecord {
  readonly name: string;
  readonly status: 'SUCCEEDED' | 'FAILED' | 'CAUGHT' | 'RUNNING';
  readonly ms: number;
  /** How many times it was entered (the Load loop's states, a retried state...). */
  readonly times: number;
}

export interface ExecutionOutcome {
  /** TIMED_OUT: the state machine's TimeoutSeconds passed (error States.Timeout), as DescribeExecution says on AWS. */
  readonly status: 'SUCCEEDED' | 'FAILED' | 'ABORTED' | 'TIMED_OUT';
  readonly output: Json;
  /** The state machine's error and cause, as Step Functions reports them (a Lambda error's JSON included). */
  readonly error: string | null;
  readonly cause: string | null;
  /**
   * What a user reads, for a failed execution: the message RecordFailure wrote in the run record,
   * else one made from the error and cause (`plainFailure`): never a stack trace, bounded.
   */
  readonly message?: string;
  /** The run record's failure details (error type, request id, failed chunks), when RecordFailure ran. */
  readonly details?: FailureDetails;
  /** The top-level states in the order they were first entered. */
  readonly steps?: readonly StepRecord[];
}

export interface ExecuteOptions {
  /** The execution name (`$$.Execution.Name`). */
  readonly name: string;
  readonly services: LocalServices;
  /** One line per event worth showing (states entered/exited, retries, Map progress). */
  readonly log?: (line: string) => void;
  readonly signal?: AbortSignal;
  /** Distributed Map children run at most this many at a time. */
  readonly maxConcurrency?: number;
  /** Wait state times in ms by state name. @default LOCAL_WAIT_TIME_OVERRIDES */
  readonly waitTimeOverrides?: Readonly<Record<string, number>>;
  /** Retry intervals in ms by state name. For tests only: a run keeps the ASL's backoff. */
  readonly retryIntervalOverrides?: Readonly<Record<string, number | number[]>>;
  /** Sees the execution's events, its Task calls and its Map Runs (the execution history, `history.ts`). */
  readonly observer?: ExecutionObserver;
}

/**
 * Definitions this process has validated (their JSON). asl-validator compiles its schemas on every
 * call, about 250 ms of CPU: `sluice dev` and the tests run one definition many times, so it is
 * validated on its first execution only (an invalid one throws there, and again the next time).
 */
const validatedDefinitions = new Set<string>();

function stateMachineOf(definition: StateMachineDefinition): StateMachine {
  const text = JSON.stringify(definition);
  if (validatedDefinitions.has(text)) return new StateMachine(definition, { validationOptions: { noValidate: true } });
  const machine = new StateMachine(definition, { validationOptions: { checkArn: false, checkPaths: false } });
  validatedDefinitions.add(text);
  return machine;
}

/** Runs one execution of a definition to its end. Never rejects for a failed execution: see `status`. */
export async function execute(
  source: StateMachineDefinition,
  input: Json,
  options: ExecuteOptions,
): Promise<ExecutionOutcome> {
  const log = options.log ?? (() => {});
  const { definition, distributedMaps, inlineMaps } = prepareDefinition(source);
  const context = {
    Execution: {
      Id: `arn:aws:states:${REGION}:${ACCOUNT}:execution:sluice-pipeline:${options.name}`,
      Name: options.name,
      StartTime: new Date().toISOString(),
      Input: input,
      RoleArn: `arn:aws:iam::${ACCOUNT}:role/sluice-local`,
    },
    StateMachine: { Id: `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:sluice-pipeline`, Name: 'sluice-pipeline' },
  };
  const waitTimeOverrides = options.waitTimeOverrides ?? LOCAL_WAIT_TIME_OVERRIDES;
  // Aborted when the runtime stops, and by the payload limits (the execution's Distributed Maps stop too).
  const controller = new AbortController();
  const onStop = () => controller.abort();
  if (options.signal?.aborted) controller.abort();
  options.signal?.addEventListener('abort', onStop);

  const handlers: Record<string, TaskHandler> = {};
  const origin = new Map<string, string>();
  // A Distributed Map's children are executions of their own: their Task calls are not in this history.
  const inChildren = new Set<string>();
  for (const map of distributedMaps.values()) {
    const processor = (map.ItemProcessor ?? map.Iterator) as { States: Record<string, StateDefinition> };
    walkStates(processor.States, (name) => inChildren.add(name));
  }
  const { observer } = options;
  const observed =
    (name: string, handler: TaskHandler): TaskHandler =>
    async (parameters) => {
      observer?.task({ state: name, phase: 'scheduled', parameters });
      try {
        const output = await handler(parameters);
        observer?.task({ state: name, phase: 'succeeded', output });
        return output;
      } catch (error) {
        const failure = error as Error;
        observer?.task({
          state: name,
          phase: 'failed',
          error: failure?.name ?? 'Error',
          cause: failure?.message ?? '',
        });
        throw error;
      }
    };
  const add = (name: string, handler: TaskHandler, what: string) => {
    // The library keys Task overrides by state name, nested states included: names must be unique.
    if (origin.has(name)) throw new Error(`state name "${name}" is used twice (${origin.get(name)}, ${what})`);
    origin.set(name, what);
    handlers[name] = observer && !inChildren.has(name) ? observed(name, handler) : handler;
  };
  // RecordFailure's result is the run record: its plain message is what the execution's record shows.
  let recorded: { message?: string; details?: FailureDetails } | undefined;
  const onResult = (functionName: string, result: Json) => {
    if (functionNameOf(functionName) !== HANDLERS.recordFailure.localName) return;
    const error = (result as { error?: { message?: unknown; details?: FailureDetails } } | null)?.error;
    if (typeof error?.message === 'string') {
      recorded = { message: error.message, ...(error.details ? { details: error.details } : {}) };
    }
  };
  const addTasks = (states: Record<string, StateDefinition>) =>
    walkStates(states, (name, state) => {
      if (state.Type !== 'Task') return;
      const handler = taskHandler(name, state, options.services, onResult);
      if (handler) add(name, handler, String(state.Resource));
    });
  addTasks(definition.States as unknown as Record<string, StateDefinition>);
  for (const [name, map] of distributedMaps) {
    const processor = (map.ItemProcessor ?? map.Iterator) as { States: Record<string, StateDefinition> };
    addTasks(processor.States);
    add(
      name,
      distributedMapHandler(name, map, {
        getObject: options.services.getObject,
        putObject: options.services.putObject,
        taskHandlers: () => handlers,
        context,
        log,
        signal: controller.signal,
        maxConcurrency: options.maxConcurrency,
        waitTimeOverrides,
        retryIntervalOverrides: options.retryIntervalOverrides,
        ...(observer ? { onMapRun: (update: MapRunUpdate) => observer.mapRun(update) } : {}),
      }),
      'Distributed Map',
    );
  }

  const steps = new Map<string, StepState>();
  const logLines = eventLogger(log, steps);
  const logger = (event: ExecutionEvent) => {
    logLines(event);
    observer?.event(event);
  };
  for (const [name, map] of inlineMaps) {
    const processor = (map.ItemProcessor ?? map.Iterator) as { States: Record<string, StateDefinition> };
    addTasks(processor.States);
    add(
      name,
      inlineMapHandler(name, map, {
        taskHandlers: () => handlers,
        context,
        waitTimeOverrides,
        retryIntervalOverrides: options.retryIntervalOverrides,
        signal: controller.signal,
        onEvent: logger,
      }),
      'inline Map',
    );
  }

  const machine = stateMachineOf(definition);
  const stepList = (): StepRecord[] =>
    [...steps].map(([name, s]) => ({ name, status: s.status, ms: s.ms, times: s.times }));
  /** A failed outcome, with the plain message (the run record's, else made from the error and cause). */
  const failed = (
    status: 'FAILED' | 'ABORTED' | 'TIMED_OUT',
    error: string,
    cause: string | null,
  ): ExecutionOutcome => ({
    status,
    output: null,
    error,
    cause,
    message: recorded?.message ?? plainFailure(error, cause),
    ...(recorded?.details ? { details: recorded.details } : {}),
    steps: stepList(),
  });
  try {
    const output = await runWithLimits(machine, input, {
      handlers,
      context,
      waitTimeOverrides,
      retryIntervalOverrides: options.retryIntervalOverrides,
      controller,
      onEvent: logger,
    });
    return { status: 'SUCCEEDED', output, error: null, cause: null, steps: stepList() };
  } catch (error) {
    if (error instanceof DataLimitExceededError) {
      log(`✗ execution failed: ${error.name}: ${error.message}`);
      // Uncatchable: RecordFailure never ran, whatever it may have recorded before.
      recorded = undefined;
      return failed('FAILED', error.name, error.message);
    }
    if (error instanceof ExecutionAbortedError) {
      return failed('ABORTED', 'Sluice.Aborted', 'the local runtime was stopped');
    }
    if (error instanceof ExecutionTimeoutError) {
      return failed('TIMED_OUT', 'States.Timeout', error.message);
    }
    const failure = error instanceof ExecutionError ? (error.cause as Error) : (error as Error);
    return failed('FAILED', failure?.name ?? 'Error', failure?.message ?? null);
  } finally {
    options.signal?.removeEventListener('abort', onStop);
  }
}

type StepState = { status: StepRecord['status']; entered: number; ms: number; times: number };

/** Turns the execution's events into log lines, and keeps the top-level states' outcomes in `steps`. */
function eventLogger(log: (line: string) => void, steps: Map<string, StepState>): (event: ExecutionEvent) => void {
  const entered = new Map<string, number>();
  const failures = new Map<string, string>();
  return (event) => {
    const where = event.state
      ? event.index !== undefined && event.parentState
        ? `${event.parentState.name}[${event.index}].${event.state.name}`
        : event.state.name
      : '';
    switch (event.type) {
      case 'StateEntered':
        if (event.index === undefined) {
          entered.set(where, event.timestamp);
          log(`→ ${where}`);
          const step = steps.get(where);
          if (step) {
            step.status = 'RUNNING';
            step.entered = event.timestamp;
            step.times++;
          } else if (!event.parentState) {
            steps.set(where, { status: 'RUNNING', entered: event.timestamp, ms: 0, times: 1 });
          }
        }
        break;
      case 'StateExited':
        if (event.index === undefined) {
          const ms = event.timestamp - (entered.get(where) ?? event.timestamp);
          log(`✓ ${where} (${(ms / 1000).toFixed(1)} s)`);
          const step = steps.get(where);
          if (step) {
            // A caught state exits too (to its Catch's Next): it stays CAUGHT.
            if (step.status !== 'CAUGHT') step.status = 'SUCCEEDED';
            step.ms += event.timestamp - step.entered;
          }
        }
        break;
      case 'StateFailed': {
        failures.set(where, `${event.Error}: ${causeLine(event.Cause)}`);
        const step = steps.get(where);
        if (step && event.index === undefined) {
          step.status = 'FAILED';
          step.ms += event.timestamp - step.entered;
        }
        break;
      }
      case 'StateRetried':
        log(`↻ ${where} retry ${event.retry?.attempt ?? '?'} after ${failures.get(where) ?? 'an error'}`);
        break;
      case 'StateCaught': {
        log(`✗ ${where} ${failures.get(where) ?? ''} → ${event.catch?.catcher.Next}`);
        const step = steps.get(where);
        if (step && event.index === undefined) {
          if (step.status === 'RUNNING') step.ms += event.timestamp - step.entered;
          step.status = 'CAUGHT';
        }
        break;
      }
      case 'ExecutionFailed':
        log(`✗ execution failed: ${event.Error}: ${causeLine(event.Cause)}`);
        break;
      case 'ExecutionSucceeded':
        log('✓ execution succeeded');
        break;
    }
  };
}
