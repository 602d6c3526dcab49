/**
 * The embedded stack in one process: the state machine (run by `state-machine.ts`), the
 * handlers, the local Athena (`athena.ts`) over the local warehouse, and the execution
 * history, all pointed at one S3 endpoint.
 * `sluice dev` and `sluice run` differ only in how executions get started.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { StateMachineDefinition } from 'aws-local-stepfunctions';
import { athenaResults, LocalAthena } from './athena.ts';
import type { Json } from './distributed-map.ts';
import { LOCAL_ATHENA_WORKGROUP, type LocalPaths, localFiles, localHandlerDeps } from './environment.ts';
import { type ExecutionRecord, ExecutionStore, newExecutionName } from './executions.ts';
import { withFaults } from './fault-injection.ts';
import { endEvent, HistoryWriter, historyObserver, MapRunStore, payload, stateKinds } from './history.ts';
import { definitionFrom, ExecutionNotRedrivableError, mergeSteps, planRedrive } from './redrive-execution.ts';
import { localS3Client } from './s3-client.ts';
import {
  execute,
  handlerModules,
  type LocalServices,
  loadDefinition,
  readableCause,
  type StepRecord,
} from './state-machine.ts';
import { LocalWarehouse } from './warehouse.ts';

/** What starts an execution: the same JSON as EventBridge / Scheduler / StartExecution send on AWS. */
export interface ExecutionInput {
  readonly pipeline: string;
  readonly trigger: string;
  readonly [key: string]: unknown;
}

/** How an execution is started besides its input. */
export interface StartExecutionOptions {
  /**
   * The execution name (StartExecution's `name`): 1 to 80 of A-Z, a-z, 0-9, `-` and `_`, unique.
   * @default `<pipeline>-<UTC time>-<6 random>` (`newExecutionName`)
   */
  readonly name?: string;
}

/** What StopExecution records: an error code and a cause, both optional. */
export interface StopReason {
  readonly error?: string;
  readonly cause?: string;
}

export interface LocalRuntimeOptions extends LocalPaths {
  /** The S3 endpoint the handlers and the runtime use. */
  readonly endpoint: string;
  /** Receives one line per event; lines are prefixed with the execution name. */
  readonly log?: (line: string) => void;
}

export interface LocalRuntime {
  readonly endpoint: string;
  readonly s3: S3Client;
  readonly warehouse: LocalWarehouse;
  /** The Athena API the state machine calls, over the warehouse. */
  readonly athena: LocalAthena;
  readonly executions: ExecutionStore;
  /** The state machine this runtime runs: its definition (placeholders substituted) and when it was loaded. */
  readonly stateMachine: { readonly definition: StateMachineDefinition; readonly createdAt: Date };
  /**
   * Starts an execution and resolves with its final record (never rejects for a failed run).
   * Its first record is written before this returns, so `executions.read(name)` finds it at once.
   * The input is usually an {@link ExecutionInput}; StartExecution may send any JSON (then the
   * record's pipeline and trigger are empty).
   * Throws at once (not through the promise) `ExecutionExistsError` if an execution has the given
   * name, or an Error if the name is not a valid one.
   */
  startExecution(input: ExecutionInput | Json, options?: StartExecutionOptions): Promise<ExecutionRecord>;
  /**
   * StopExecution: aborts one execution this runtime is running; it ends ABORTED with the reason's
   * error and cause (whatever state it was in). Resolves with its final record, or undefined when
   * this runtime is not running an execution of that name (unknown, finished, or run by another process).
   */
  stopExecution(name: string, reason?: StopReason): Promise<ExecutionRecord> | undefined;
  /**
   * RedriveExecution (`redrive-execution.ts`): restarts a FAILED, ABORTED or TIMED_OUT execution
   * under its name from its unsuccessful state. Returns the redrive's date and, unless the client
   * token repeats a recent redrive, the promise of its final record. Throws ExecutionNotRedrivableError.
   */
  redriveExecution(
    record: ExecutionRecord,
    options?: { readonly clientToken?: string },
  ): { readonly redriveDate: string; readonly done?: Promise<ExecutionRecord> };
  /** The Distributed Map runs of the executions (ListMapRuns, DescribeMapRun). */
  readonly mapRuns: MapRunStore;
  /** Aborts the executions in progress and waits for their records to be written. */
  stop(): Promise<void>;
}

export function createLocalRuntime(options: LocalRuntimeOptions): LocalRuntime {
  const files = localFiles(options);
  mkdirSync(files.tmp, { recursive: true });
  const log = options.log ?? (() => {});
  const s3 = localS3Client(options.endpoint);
  const warehouse = new LocalWarehouse({ file: files.warehouse, s3, tmpDir: files.tmp });
  // Results are kept (bounded) so that GetQueryResults can page them through the Athena API.
  const athena = new LocalAthena({
    query: (sql) => warehouse.read(sql, athenaResults),
    defaultWorkGroup: LOCAL_ATHENA_WORKGROUP,
  });
  const executions = new ExecutionStore(files.executions);
  const mapRuns = new MapRunStore(files.executions);
  const definition = loadDefinition(files.stateMachine);
  const stateMachine = { definition, createdAt: new Date() };
  const stopping = new AbortController();
  const inFlight = new Set<Promise<ExecutionRecord>>();
  /** The executions running here, by name: each can be aborted alone (StopExecution). */
  const running = new Map<
    string,
    { readonly controller: AbortController; stopped?: StopReason; readonly done: Promise<ExecutionRecord> }
  >();

  const services: LocalServices = {
    // The handlers are built by their factories with this runtime's S3 endpoint, buckets and pipelines.
    invokeLambda: withFaults(
      handlerModules(files.handlers, undefined, localHandlerDeps(options.endpoint, options)),
      s3,
    ),
    athena,
    publish: async (message) => {
      log(`SNS ${message.TopicArn}: ${message.Subject ?? ''}: ${message.Message}`);
      appendFileSync(files.notifications, `${JSON.stringify({ at: new Date().toISOString(), ...message })}\n`);
    },
    getObject: async (bucket, key) => {
      const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return (await out.Body?.transformToString()) ?? '';
    },
    putObject: async (bucket, key, body) => {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: 'application/json' }));
    },
  };

  /** Writes the execution's first record (synchronously: a taken name throws here) and runs it. */
  const start = (input: ExecutionInput | Json, name?: string): Promise<ExecutionRecord> => {
    const fields = (typeof input === 'object' && input !== null && !Array.isArray(input) ? input : {}) as Record<
      string,
      unknown
    >;
    const pipeline = typeof fields.pipeline === 'string' ? fields.pipeline : '';
    const started: ExecutionRecord = {
      id: name ?? newExecutionName(pipeline),
      pipeline,
      trigger: typeof fields.trigger === 'string' ? fields.trigger : '',
      status: 'RUNNING',
      startedAt: new Date().toISOString(),
      stoppedAt: null,
      input,
      output: null,
      error: null,
      cause: null,
      pid: process.pid,
    };
    executions.create(started);
    const id = started.id;
    log(
      `${id} started (${started.trigger}${typeof fields.key === 'string' ? ` s3://${fields.bucket}/${fields.key}` : ''})`,
    );
    const history = new HistoryWriter(files.executions, id);
    const recorded = payload(input);
    history.add('ExecutionStarted', {
      executionStartedEventDetails: {
        input: recorded.text,
        inputDetails: { truncated: recorded.truncated },
        roleArn: `arn:aws:iam::000000000000:role/sluice-local`,
      },
    });
    const controller = new AbortController();
    const done = run(started, input as Json, controller.signal, history);
    running.set(id, { controller, done });
    return done;
  };

  const kinds = stateKinds(definition);
  const run = async (
    started: ExecutionRecord,
    input: Json,
    signal: AbortSignal,
    history: HistoryWriter,
    machine: StateMachineDefinition = definition,
  ): Promise<ExecutionRecord> => {
    const id = started.id;
    let outcome: Pick<ExecutionRecord, 'status' | 'output' | 'error' | 'cause' | 'message' | 'steps'>;
    try {
      outcome = await execute(machine, input, {
        name: id,
        services,
        log: (line) => log(`${id} ${line}`),
        signal: AbortSignal.any([stopping.signal, signal]),
        observer: historyObserver(history, kinds, mapRuns, id),
      });
    } catch (error) {
      // The runtime itself failed (not a state): still leave an honest record.
      outcome = { status: 'FAILED', output: null, error: 'Sluice.RuntimeError', cause: (error as Error).message };
    }
    const stopped = running.get(id)?.stopped;
    running.delete(id);
    if (stopped) {
      // StopExecution succeeded while the execution was open: it ends ABORTED, however its states ended.
      const reason = stopped.error ? ` (${stopped.error}${stopped.cause ? `: ${stopped.cause}` : ''})` : '';
      outcome = {
        ...outcome,
        status: 'ABORTED',
        output: null,
        error: stopped.error ?? null,
        cause: stopped.cause ?? null,
        message: `Stopped with StopExecution${reason}.`,
      };
    }
    const finished: ExecutionRecord = {
      ...started,
      ...outcome,
      stoppedAt: new Date().toISOString(),
      // A redriven execution keeps the steps of its earlier attempts.
      ...(started.redriveCount ? { steps: mergeSteps(started.steps, outcome.steps) as StepRecord[] } : {}),
    };
    executions.write(finished);
    const end = endEvent(finished);
    history.add(end.type, end.details);
    log(`${id} ${finished.status}${finished.error ? `: ${finished.error}: ${readableCause(finished.cause)}` : ''}`);
    return finished;
  };

  return {
    endpoint: options.endpoint,
    s3,
    warehouse,
    athena,
    executions,
    stateMachine,
    startExecution(input, options = {}) {
      const promise = start(input, options.name);
      inFlight.add(promise);
      void promise.finally(() => inFlight.delete(promise)).catch(() => undefined);
      return promise;
    },
    mapRuns,
    redriveExecution(record, redrive = {}) {
      if (running.has(record.id)) throw new ExecutionNotRedrivableError('Execution is RUNNING and cannot be redriven.');
      const plan = planRedrive(executions, record, redrive.clientToken);
      if (plan.repeated) return { redriveDate: plan.redriveDate };
      const history = new HistoryWriter(files.executions, record.id);
      executions.write(plan.record);
      const redriveCount = plan.record.redriveCount ?? 1;
      history.add('ExecutionRedriven', { executionRedrivenEventDetails: { redriveCount } });
      log(`${record.id} redriven (${redriveCount}) from ${plan.startAt ?? definition.StartAt}`);
      const controller = new AbortController();
      const machine = plan.startAt !== undefined ? definitionFrom(definition, plan.startAt) : definition;
      const done = run(plan.record, plan.input, controller.signal, history, machine);
      running.set(record.id, { controller, done });
      inFlight.add(done);
      void done.finally(() => inFlight.delete(done)).catch(() => undefined);
      return { redriveDate: plan.record.redriveDate ?? new Date().toISOString(), done };
    },
    stopExecution(name, reason = {}) {
      const execution = running.get(name);
      if (!execution) return undefined;
      execution.stopped ??= reason;
      execution.controller.abort();
      return execution.done;
    },
    async stop() {
      stopping.abort();
      await Promise.allSettled([...inFlight]);
      // A query already started runs to its end (DuckDB cannot be interrupted), so the file is closed after.
      await athena.idle();
    },
  };
}
