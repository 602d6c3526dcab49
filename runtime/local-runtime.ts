/**
 * The embedded stack in one process: the state machine (run by `state-machine.ts`), the
 * handlers, the local Athena (`athena.ts`) over the local warehouse, and the execution
 * history, all pointed at one S3 endpoint.
 * `sluice dev` and `sluice run` differ only in how executions get started.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { LocalAthena } from './athena.ts';
import { applyLocalEnvironment, LOCAL_ATHENA_WORKGROUP, type LocalPaths, localFiles } from './environment.ts';
import { type ExecutionRecord, ExecutionStore, newExecutionName } from './executions.ts';
import { localS3Client } from './s3-client.ts';
import { execute, handlerModules, type LocalServices, loadDefinition, readableCause } from './state-machine.ts';
import { LocalWarehouse } from './warehouse.ts';

/** What starts an execution: the same JSON as EventBridge / Scheduler / StartExecution send on AWS. */
export interface ExecutionInput {
  readonly pipeline: string;
  readonly trigger: string;
  readonly [key: string]: unknown;
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
  /** Starts an execution and resolves with its final record (never rejects for a failed run). */
  startExecution(input: ExecutionInput): Promise<ExecutionRecord>;
  /** Aborts the executions in progress and waits for their records to be written. */
  stop(): Promise<void>;
}

export function createLocalRuntime(options: LocalRuntimeOptions): LocalRuntime {
  applyLocalEnvironment(options.endpoint, options);
  const files = localFiles(options);
  mkdirSync(files.tmp, { recursive: true });
  const log = options.log ?? (() => {});
  const s3 = localS3Client(options.endpoint);
  const warehouse = new LocalWarehouse({ file: files.warehouse, s3, tmpDir: files.tmp });
  const athena = new LocalAthena({ run: (sql) => warehouse.execute(sql), defaultWorkGroup: LOCAL_ATHENA_WORKGROUP });
  const executions = new ExecutionStore(files.executions);
  const definition = loadDefinition(files.stateMachine);
  const stopping = new AbortController();
  const inFlight = new Set<Promise<ExecutionRecord>>();

  const services: LocalServices = {
    invokeLambda: handlerModules(files.handlers),
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

  const run = async (input: ExecutionInput): Promise<ExecutionRecord> => {
    const id = newExecutionName(String(input.pipeline));
    const started: ExecutionRecord = {
      id,
      pipeline: String(input.pipeline),
      trigger: String(input.trigger),
      status: 'RUNNING',
      startedAt: new Date().toISOString(),
      stoppedAt: null,
      input,
      output: null,
      error: null,
      cause: null,
      pid: process.pid,
    };
    executions.write(started);
    log(
      `${id} started (${started.trigger}${typeof input.key === 'string' ? ` s3://${input.bucket}/${input.key}` : ''})`,
    );
    let outcome: Pick<ExecutionRecord, 'status' | 'output' | 'error' | 'cause'>;
    try {
      outcome = await execute(definition, input, {
        name: id,
        services,
        log: (line) => log(`${id} ${line}`),
        signal: stopping.signal,
      });
    } catch (error) {
      // The runtime itself failed (not a state): still leave an honest record.
      outcome = { status: 'FAILED', output: null, error: 'Sluice.RuntimeError', cause: (error as Error).message };
    }
    const finished: ExecutionRecord = { ...started, ...outcome, stoppedAt: new Date().toISOString() };
    executions.write(finished);
    log(`${id} ${finished.status}${finished.error ? `: ${finished.error}: ${readableCause(finished.cause)}` : ''}`);
    return finished;
  };

  return {
    endpoint: options.endpoint,
    s3,
    warehouse,
    athena,
    executions,
    startExecution(input) {
      const promise = run(input);
      inFlight.add(promise);
      void promise.finally(() => inFlight.delete(promise)).catch(() => undefined);
      return promise;
    },
    async stop() {
      stopping.abort();
      await Promise.allSettled([...inFlight]);
      // A query already started runs to its end (DuckDB cannot be interrupted), so the file is closed after.
      await athena.idle();
    },
  };
}
