/**
 * `sluice dev`: the embedded stack with its triggers. Objects created in the input bucket
 * start an execution (the EventBridge rule on AWS); pipelines with a schedule start one at
 * each cron time in their time zone (EventBridge Scheduler). `<dir>/dev.json` tells other
 * CLI processes where the S3 endpoint is.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { Cron } from 'croner';
import { checkTransforms } from '../functions/pipeline/check-transform.ts';
import { loadPipelines, matchesInput, type Pipeline } from '../functions/pipeline/definition.ts';
import { checkTableLock, writeTableLocks } from '../functions/pipeline/evolution.ts';
import { athenaApi } from './athena-api.ts';
import type { AwsJsonHandler } from './aws-api.ts';
import { type LocalPaths, localFiles } from './environment.ts';
import { type ExecutionRecord, isAlive } from './executions.ts';
import { createLocalRuntime, type ExecutionInput, type LocalRuntime } from './local-runtime.ts';
import { recoverExecutions } from './recovery.ts';
import { DEFAULT_S3_PORT, LOCAL_BUCKETS, type ObjectCreated, type ObjectDeleted, startS3Server } from './s3-server.ts';
import { stepFunctionsApi } from './sfn-api.ts';

export interface EmbeddedOptions extends LocalPaths {
  /** @default 4577; 0 picks a free port. */
  readonly port?: number;
  /** Start the pipelines' cron schedules. @default false */
  readonly schedules?: boolean;
  /** @default a line on stdout with a timestamp */
  readonly log?: (line: string) => void;
  /** Called when an object event (created or deleted) starts an execution, with the promise of its final record. */
  readonly onExecution?: (event: ObjectCreated | ObjectDeleted, execution: Promise<ExecutionRecord>) => void;
}

export interface Embedded {
  readonly port: number;
  readonly endpoint: string;
  readonly runtime: LocalRuntime;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
  /** Stops the schedules, aborts executions in progress, closes the S3 server. */
  stop(): Promise<void>;
}

export const timestamped = (line: string) => console.log(`${new Date().toISOString().slice(11, 23)} ${line}`);

/** An object key for a log line: quoted and escaped (keys may hold control characters), at most about 200 characters. */
function quotedKey(key: string): string {
  const shown = key.length > 200 ? `${key.slice(0, 200)}…` : key;
  return JSON.stringify(shown).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** The log line for an object of the input bucket that no pipeline takes, with what the pipelines take. */
function ignoredObject(key: string, pipelines: readonly Pipeline[]): string {
  const wanted = pipelines
    .map((p) => `${p.name}: keys starting with "${p.input.prefix}" and ending in ${p.input.suffixes.join(' or ')}`)
    .join('; ');
  return (
    `ignored object ${quotedKey(key)} in ${LOCAL_BUCKETS.input}: no pipeline takes it ` +
    `(${wanted || 'no pipelines are defined'}; prefixes and suffixes are case-sensitive)`
  );
}

/** Starts the S3 server and the runtime in this process (used by `sluice dev` and by `sluice run` without dev). */
export async function startEmbedded(options: EmbeddedOptions): Promise<Embedded> {
  const log = options.log ?? timestamped;
  const pipelines = loadPipelines(localFiles(options).pipelines);
  // A transform that does not fit its table stops the runtime here, naming the pipeline.
  await checkTransforms(pipelines.values());
  // So does a table change other than columns appended at the end (naming the table and column);
  // appended columns update the pipeline's committed lock, pipelines/<name>.tables.json.
  const locks = checkTableLock(pipelines, localFiles(options).pipelines);
  writeTableLocks(locks);
  for (const lock of locks) {
    log(
      `${lock.added.length > 0 ? `added ${lock.added.join(', ')} to` : 'wrote'} ${lock.file}; commit it with the pipeline`,
    );
  }
  let runtime: LocalRuntime | undefined;
  let apis: Readonly<Record<string, AwsJsonHandler>> = {};
  const server = await startS3Server({
    dir: localFiles(options).dir,
    port: options.port ?? DEFAULT_S3_PORT,
    // Step Functions and Athena on the same port, as their AWS APIs (runtime/aws-api.ts).
    awsApis: () => apis,
    onObjectCreated: (event) => {
      if (event.bucket !== LOCAL_BUCKETS.input || !runtime) return;
      const taken = [...pipelines.values()].filter((pipeline) => matchesInput(pipeline, event.key));
      // On AWS the EventBridge rule simply does not match such an object; here it is said once.
      if (taken.length === 0) log(ignoredObject(event.key, [...pipelines.values()]));
      for (const pipeline of taken) {
        const input: ExecutionInput = {
          pipeline: pipeline.name,
          trigger: 'object',
          bucket: event.bucket,
          key: event.key,
        };
        const execution = runtime.startExecution(input);
        options.onExecution?.(event, execution);
      }
    },
    // The EventBridge rule on "Object Deleted" exists only for pipelines with onDelete: remove (infra/triggers.ts).
    onObjectDeleted: (event) => {
      if (event.bucket !== LOCAL_BUCKETS.input || !runtime) return;
      for (const pipeline of pipelines.values()) {
        if (pipeline.onDelete !== 'remove' || !matchesInput(pipeline, event.key)) continue;
        const input: ExecutionInput = {
          pipeline: pipeline.name,
          trigger: 'delete',
          bucket: event.bucket,
          key: event.key,
        };
        options.onExecution?.(event, runtime.startExecution(input));
      }
    },
  });
  runtime = createLocalRuntime({ ...options, endpoint: server.endpoint, log });
  apis = { AWSStepFunctions: stepFunctionsApi(runtime), AmazonAthena: athenaApi(runtime) };

  const jobs: Cron[] = [];
  if (options.schedules) {
    for (const pipeline of pipelines.values()) {
      if (!pipeline.schedule) continue;
      const { cron, timezone } = pipeline.schedule;
      const started = runtime;
      const job = new Cron(cron, { timezone }, () => {
        void started.startExecution({ pipeline: pipeline.name, trigger: 'schedule' });
      });
      jobs.push(job);
      log(`schedule ${pipeline.name}: "${cron}" ${timezone}, next ${job.nextRun()?.toISOString() ?? 'never'}`);
    }
  }

  const stoppedRuntime = runtime;
  return {
    port: server.port,
    endpoint: server.endpoint,
    runtime,
    pipelines,
    async stop() {
      for (const job of jobs) job.stop();
      await stoppedRuntime.stop();
      await server.close();
    },
  };
}

export interface DevInfo {
  readonly pid: number;
  readonly port: number;
  readonly endpoint: string;
  readonly startedAt: string;
}

export interface DevOptions extends LocalPaths {
  /** @default 4577 */
  readonly port?: number;
  readonly log?: (line: string) => void;
}

/** `sluice dev`: runs until SIGINT/SIGTERM, then shuts down cleanly and removes `dev.json`. */
export async function startDev(options: DevOptions): Promise<Embedded> {
  const files = localFiles(options);
  const running = await findDev(options);
  if (running)
    throw new Error(`sluice dev is already running for ${files.dir} (pid ${running.pid}, ${running.endpoint})`);
  const log = options.log ?? timestamped;
  const embedded = await startEmbedded({ ...options, schedules: true, log });
  mkdirSync(files.dir, { recursive: true });
  const info: DevInfo = {
    pid: process.pid,
    port: embedded.port,
    endpoint: embedded.endpoint,
    startedAt: new Date().toISOString(),
  };
  writeFileSync(files.devInfo, `${JSON.stringify(info, null, 2)}\n`);
  log(`S3 at ${embedded.endpoint} (buckets ${Object.values(LOCAL_BUCKETS).join(', ')}), data in ${files.dir}`);
  if (existsSync(join(files.dir, 's3'))) {
    // Before the store kept keys inside its folder, objects lived in <dir>/s3 under their raw keys.
    log(
      `objects from an earlier sluice dev in ${join(files.dir, 's3')} are no longer served: upload them again, then delete that folder`,
    );
  }
  log(
    `pipelines: ${[...embedded.pipelines.values()].map((p) => `${p.name} (s3://${LOCAL_BUCKETS.input}/${p.input.prefix})`).join(', ')}`,
  );
  // Runs left RUNNING by a runtime that died are marked FAILED and redriven (issue 8, runtime/recovery.ts).
  recoverExecutions(embedded.runtime, log);
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping`);
    try {
      await embedded.stop();
    } finally {
      rmSync(files.devInfo, { force: true });
      log('stopped');
      process.exit(0);
    }
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  return embedded;
}

const answers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', method: 'GET', timeout: 1000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });

/** The running `sluice dev` for this folder: its dev.json, a live pid and a port that answers. */
export async function findDev(paths: LocalPaths): Promise<DevInfo | undefined> {
  let info: DevInfo;
  try {
    info = JSON.parse(readFileSync(localFiles(paths).devInfo, 'utf8')) as DevInfo;
  } catch {
    return undefined;
  }
  if (!isAlive(info.pid) || !(await answers(info.port))) return undefined;
  return info;
}
