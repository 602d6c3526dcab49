/**
 * Runs `state-machines/pipeline.asl.json` itself with aws-local-stepfunctions. Task states are
 * dispatched by their Resource, as the service integrations would on AWS:
 * - `arn:aws:states:::lambda:invoke` → the handler module named by the function;
 * - `arn:aws:states:::athena:startQueryExecution.sync` → the local warehouse;
 * - `arn:aws:states:::sns:publish` → the runtime's log and `notifications.jsonl`;
 * and Distributed Maps are supplied by `distributed-map.ts`.
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
import {
  DISTRIBUTED_MAP_RESOURCE,
  distributedMapHandler,
  type Json,
  prepareDefinition,
  readableCause,
  type StateDefinition,
  type TaskHandler,
  walkStates,
} from './distributed-map.ts';

export { readableCause };

const ACCOUNT = '000000000000';
const REGION = 'us-east-1';
const lambdaArn = (name: string) => `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${name}`;

/** What CDK substitutes on AWS, with the local names. */
export const LOCAL_PLACEHOLDERS: Readonly<Record<string, string>> = {
  PlanFunctionArn: lambdaArn('sluice-plan'),
  WorkFunctionArn: lambdaArn('sluice-work'),
  VerifyFunctionArn: lambdaArn('sluice-verify'),
  FinishFunctionArn: lambdaArn('sluice-finish'),
  RecordFailureFunctionArn: lambdaArn('sluice-record-failure'),
  AthenaWorkGroup: 'sluice',
  GlueDatabase: 'sluice',
  FailureTopicArn: `arn:aws:sns:${REGION}:${ACCOUNT}:sluice-failures`,
};

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
  /** Runs one Athena statement; rejects with the engine's message when it fails. */
  readonly runQuery: (sql: string) => Promise<void>;
  readonly publish: (message: { TopicArn?: string; Subject?: string; Message?: string }) => Promise<void>;
  /** Reads an object as text (Distributed Map ItemReader). */
  readonly getObject: (bucket: string, key: string) => Promise<string>;
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

/** Step Functions' limit on a state's input or output. */
const MAX_PAYLOAD_BYTES = 256 * 1024;

function checkPayload(stateName: string, value: Json): void {
  const size = Buffer.byteLength(JSON.stringify(value) ?? '');
  if (size > MAX_PAYLOAD_BYTES) {
    throw new TaskError(
      'States.DataLimitExceeded',
      `state ${stateName}: the result is ${size} bytes, over the 256 KiB limit of Step Functions`,
    );
  }
}

/** Builds the handler of one Task state from its Resource. Unknown resources fail at load time. */
function taskHandler(stateName: string, state: StateDefinition, services: LocalServices): TaskHandler | undefined {
  const resource = String(state.Resource);
  if (resource === DISTRIBUTED_MAP_RESOURCE) return undefined;
  if (resource === 'arn:aws:states:::lambda:invoke') {
    return async (input) => {
      const { FunctionName, Payload } = input as { FunctionName: string; Payload?: Json };
      let result: Json;
      try {
        result = await services.invokeLambda(FunctionName, JSON.parse(JSON.stringify(Payload ?? {})));
      } catch (error) {
        throw error instanceof TaskError ? error : new LambdaFunctionError(error);
      }
      const output = { ExecutedVersion: '$LATEST', StatusCode: 200, Payload: result ?? null };
      checkPayload(stateName, output);
      return output;
    };
  }
  if (resource === 'arn:aws:states:::athena:startQueryExecution.sync') {
    return async (input) => {
      const { QueryString } = input as { QueryString: string };
      try {
        await services.runQuery(QueryString);
      } catch (error) {
        // What Athena's .sync integration does with a FAILED query: States.TaskFailed, the reason as cause.
        throw new TaskError('States.TaskFailed', error instanceof Error ? error.message : String(error));
      }
      return { QueryExecution: { Query: QueryString, Status: { State: 'SUCCEEDED' } } };
    };
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

/**
 * Lambda functions from handler modules: `...:function:sluice-<name>` → `<dir>/<name>.ts`,
 * whose `handler(event, context)` is called. Modules are imported on first use.
 */
export function handlerModules(dir: string): LocalServices['invokeLambda'] {
  const modules = new Map<string, Promise<{ handler?: (event: Json, context: object) => Promise<Json> }>>();
  return async (functionName, payload) => {
    const name = (functionName.split(':function:').pop() ?? functionName).split(':')[0] ?? '';
    const module = name.replace(/^sluice-/, '');
    const file = join(dir, `${module}.ts`);
    if (!/^[a-z0-9-]+$/.test(module) || !existsSync(file)) {
      throw new TaskError('Lambda.ResourceNotFoundException', `Function not found: ${functionName} (no ${file})`);
    }
    let loaded = modules.get(file);
    if (!loaded) {
      loaded = import(pathToFileURL(file).href);
      modules.set(file, loaded);
    }
    const { handler } = await loaded;
    if (typeof handler !== 'function')
      throw new TaskError('Lambda.ResourceNotFoundException', `${file} exports no handler`);
    const context = { functionName: name, awsRequestId: crypto.randomUUID(), getRemainingTimeInMillis: () => 900_000 };
    return handler(payload, context);
  };
}

export interface ExecutionOutcome {
  readonly status: 'SUCCEEDED' | 'FAILED' | 'ABORTED';
  readonly output: Json;
  readonly error: string | null;
  readonly cause: string | null;
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
}

/** Runs one execution of a definition to its end. Never rejects for a failed execution: see `status`. */
export async function execute(
  source: StateMachineDefinition,
  input: Json,
  options: ExecuteOptions,
): Promise<ExecutionOutcome> {
  const log = options.log ?? (() => {});
  const { definition, distributedMaps } = prepareDefinition(source);
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

  const handlers: Record<string, TaskHandler> = {};
  const origin = new Map<string, string>();
  const add = (name: string, handler: TaskHandler, what: string) => {
    // The library keys Task overrides by state name, nested states included: names must be unique.
    if (origin.has(name)) throw new Error(`state name "${name}" is used twice (${origin.get(name)}, ${what})`);
    origin.set(name, what);
    handlers[name] = handler;
  };
  const addTasks = (states: Record<string, StateDefinition>) =>
    walkStates(states, (name, state) => {
      if (state.Type !== 'Task') return;
      const handler = taskHandler(name, state, options.services);
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
        taskHandlers: () => handlers,
        context,
        log,
        signal: options.signal,
        maxConcurrency: options.maxConcurrency,
      }),
      'Distributed Map',
    );
  }

  const machine = new StateMachine(definition, { validationOptions: { checkArn: false, checkPaths: false } });
  const execution = machine.run(input as never, {
    overrides: { taskResourceLocalHandlers: handlers as never },
    context: context as never,
  });
  const onAbort = () => execution.abort();
  options.signal?.addEventListener('abort', onAbort);
  const logging = logEvents(execution.eventLogs as AsyncIterable<RootEvent>, log);
  try {
    const output = await execution.result;
    return { status: 'SUCCEEDED', output, error: null, cause: null };
  } catch (error) {
    if (error instanceof ExecutionAbortedError) {
      return { status: 'ABORTED', output: null, error: 'Sluice.Aborted', cause: 'the local runtime was stopped' };
    }
    if (error instanceof ExecutionTimeoutError) {
      return { status: 'FAILED', output: null, error: 'States.Timeout', cause: error.message };
    }
    const failure = error instanceof ExecutionError ? (error.cause as Error) : (error as Error);
    return { status: 'FAILED', output: null, error: failure?.name ?? 'Error', cause: failure?.message ?? null };
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    await Promise.race([logging, new Promise((resolve) => setTimeout(resolve, 100))]);
  }
}

interface RootEvent {
  readonly type: string;
  readonly timestamp: number;
  readonly index?: number;
  readonly state?: { readonly name: string; readonly type: string };
  readonly parentState?: { readonly name: string };
  readonly Error?: string;
  readonly Cause?: unknown;
  readonly retry?: { readonly attempt: number };
  readonly catch?: { readonly catcher: { readonly Next: string } };
}

const oneLine = (text: unknown) => readableCause(text).split('\n', 1)[0]?.slice(0, 300) ?? '';

async function logEvents(events: AsyncIterable<RootEvent>, log: (line: string) => void): Promise<void> {
  const entered = new Map<string, number>();
  const failures = new Map<string, string>();
  for await (const event of events) {
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
        }
        break;
      case 'StateExited':
        if (event.index === undefined) {
          const ms = event.timestamp - (entered.get(where) ?? event.timestamp);
          log(`✓ ${where} (${(ms / 1000).toFixed(1)} s)`);
        }
        break;
      case 'StateFailed':
        failures.set(where, `${event.Error}: ${oneLine(event.Cause)}`);
        break;
      case 'StateRetried':
        log(`↻ ${where} retry ${event.retry?.attempt ?? '?'} after ${failures.get(where) ?? 'an error'}`);
        break;
      case 'StateCaught':
        log(`✗ ${where} ${failures.get(where) ?? ''} → ${event.catch?.catcher.Next}`);
        break;
      case 'ExecutionFailed':
        log(`✗ execution failed: ${event.Error}: ${oneLine(event.Cause)}`);
        break;
      case 'ExecutionSucceeded':
        log('✓ execution succeeded');
        break;
    }
  }
}
