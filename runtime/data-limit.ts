/**
 * Step Functions' payload limit, applied where AWS applies it, so that a definition that would
 * die on AWS dies here too. Service quotas: "Maximum input or output size for a task, state, or
 * execution: 256 KiB of data as a UTF-8 encoded string. This quota affects tasks (activity or
 * Lambda function), state or execution output data, and input data when scheduling a task,
 * entering a state, or starting an execution."
 * (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html)
 * The error is `States.DataLimitExceeded`, reported when a connector's output, a state's output,
 * or a state's input after Parameters processing is larger than that; it is a terminal error:
 * `States.ALL` does not catch it and no Retry matches it.
 * (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html, "States.ALL"
 * and "States.DataLimitExceeded")
 *
 * aws-local-stepfunctions checks none of this and catches everything with States.ALL, so:
 * - every Task handler is wrapped: its input (after InputPath and Parameters) and its result
 *   (the connector's output, before ResultSelector) are measured, and an error the library can
 *   neither retry nor catch is thrown (it reads `isRetryable` / `isCatchable` of the error);
 * - every state's input (on entering) and output (after ResultSelector/ResultPath/OutputPath) is
 *   measured from the execution's event log, for every state type, nested ones included; a
 *   violation is recorded as the execution's fatal error and the execution is aborted. Task
 *   handlers first let the event log catch up (one macrotask), so no Task starts after a state
 *   whose output was over the limit;
 * - the execution then ends FAILED with `States.DataLimitExceeded`, whatever Catch it has.
 * Distributed Maps add their own checks (each child's input, the collected results without a
 * ResultWriter) in `distributed-map.ts`.
 */
import type { StateMachine } from 'aws-local-stepfunctions';

export type Json = unknown;
export type TaskHandler = (input: Json) => Promise<Json>;

/** 256 KiB, measured on the payload as a UTF-8 encoded JSON string. */
export const MAX_PAYLOAD_BYTES = 262_144;

/** `States.DataLimitExceeded`: neither Retry nor Catch (not even States.ALL) matches it. */
export class DataLimitExceededError extends Error {
  override name = 'States.DataLimitExceeded';
  /** Read by aws-local-stepfunctions' Retry and Catch matching. */
  readonly isRetryable = false;
  readonly isCatchable = false;
}

/** The size Step Functions counts: the JSON text, UTF-8 encoded. */
const payloadBytes = (value: Json): number => Buffer.byteLength(JSON.stringify(value) ?? 'null', 'utf8');

/** The error for `value` if it is over the limit, else undefined. `what` names the payload, e.g. `state "Plan": its output`. */
export function dataLimitError(value: Json, what: string): DataLimitExceededError | undefined {
  const size = payloadBytes(value);
  if (size <= MAX_PAYLOAD_BYTES) return undefined;
  return new DataLimitExceededError(
    `${what} is ${size} bytes, over Step Functions' limit of ${MAX_PAYLOAD_BYTES} bytes (256 KiB) ` +
      'for a state input or output; States.DataLimitExceeded cannot be caught.',
  );
}

/** One event of aws-local-stepfunctions' event log, as far as the runtime reads it. */
export interface ExecutionEvent {
  readonly type: string;
  readonly timestamp: number;
  readonly index?: number;
  readonly state?: { readonly name: string; readonly type: string; readonly input?: Json; readonly output?: Json };
  readonly parentState?: { readonly name: string };
  readonly Error?: string;
  readonly Cause?: unknown;
  readonly retry?: { readonly attempt: number };
  readonly catch?: { readonly catcher: { readonly Next: string } };
}

const where = (event: ExecutionEvent) =>
  event.index !== undefined ? `state "${event.state?.name}" (item ${event.index})` : `state "${event.state?.name}"`;

export interface RunWithLimitsOptions {
  /** Task handlers by state name (wrapped here). */
  readonly handlers: Record<string, TaskHandler>;
  readonly context: Record<string, unknown>;
  readonly waitTimeOverrides?: Readonly<Record<string, number>>;
  readonly retryIntervalOverrides?: Readonly<Record<string, number | number[]>>;
  /** Aborts the execution; aborted by this function too when a limit is exceeded. */
  readonly controller: AbortController;
  /** Sees every event of the execution (after the limits were checked). */
  readonly onEvent?: (event: ExecutionEvent) => void;
}

/**
 * Runs one execution of `machine` with the payload limits. Resolves with its output; rejects with
 * the {@link DataLimitExceededError} if a limit was exceeded anywhere (even if the execution went
 * on to a Catch or ended), else with the library's error.
 */
export async function runWithLimits(machine: StateMachine, input: Json, options: RunWithLimitsOptions): Promise<Json> {
  let fatal: DataLimitExceededError | undefined;
  const { controller } = options;
  const record = (error: DataLimitExceededError) => {
    fatal ??= error;
    controller.abort();
  };
  const enforce = (value: Json, what: string) => {
    if (fatal) throw fatal;
    const error = dataLimitError(value, what);
    if (error) {
      record(error);
      throw error;
    }
  };

  const handlers: Record<string, TaskHandler> = {};
  for (const [name, handler] of Object.entries(options.handlers)) {
    handlers[name] = async (taskInput) => {
      // Let the event log catch up: a state before this one may have had an output over the limit.
      await new Promise((resolve) => setImmediate(resolve));
      enforce(taskInput, `state "${name}": its input after Parameters`);
      const result = await handler(taskInput);
      enforce(result, `state "${name}": the output of its Resource`);
      return result;
    };
  }

  if (controller.signal.aborted) throw new Error('the execution was stopped before it started');
  const execution = machine.run(input as never, {
    overrides: {
      taskResourceLocalHandlers: handlers as never,
      waitTimeOverrides: { ...(options.waitTimeOverrides ?? {}) },
      retryIntervalOverrides: { ...(options.retryIntervalOverrides ?? {}) } as never,
    },
    context: options.context as never,
  });
  const onAbort = () => execution.abort();
  controller.signal.addEventListener('abort', onAbort);

  const watch = (async () => {
    for await (const event of execution.eventLogs as AsyncIterable<ExecutionEvent>) {
      if (!fatal && event.type === 'StateEntered') {
        const error = dataLimitError(event.state?.input ?? null, `${where(event)}: its input`);
        if (error) record(error);
      } else if (!fatal && event.type === 'StateExited') {
        const error = dataLimitError(event.state?.output ?? null, `${where(event)}: its output`);
        if (error) record(error);
      }
      options.onEvent?.(event);
    }
  })();

  let output: Json;
  let failure: { error: unknown } | undefined;
  try {
    output = await execution.result;
  } catch (error) {
    failure = { error };
  } finally {
    controller.signal.removeEventListener('abort', onAbort);
  }
  // Every event is queued by now: let the watcher see them all (the log closes when the execution ends).
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([watch, new Promise((resolve) => (timer = setTimeout(resolve, 1000)))]);
  clearTimeout(timer);
  if (fatal) throw fatal;
  if (failure) throw failure.error;
  return output;
}
