#!/usr/bin/env node
/**
 * The Sluice CLI for the embedded runtime: `sluice dev | run | runs | query`. Every command
 * works whether `sluice dev` is running or not, on the same data (`--dir`, default `.sluice`).
 * `sluice run --scheduled --target localstack|aws` starts the scheduled run on a deployed stack
 * instead (cli/remote.ts): LocalStack stores schedules but never fires them.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { SluiceError } from '../functions/errors.ts';
import { getPipeline, loadPipelines } from '../functions/pipeline/definition.ts';
import { type DevInfo, findDev, startDev, startEmbedded, timestamped } from '../runtime/dev.ts';
import { localFiles } from '../runtime/environment.ts';
import { type ExecutionRecord, ExecutionStore, toRunDetail, toRunRow } from '../runtime/executions.ts';
import { createLocalRuntime } from '../runtime/local-runtime.ts';
import { localS3Client } from '../runtime/s3-client.ts';
import { LOCAL_BUCKETS, startS3Server } from '../runtime/s3-server.ts';
import { uploadFile } from '../runtime/upload.ts';
import { LocalWarehouse, WarehouseQueryError, WarehouseReadOnlyError } from '../runtime/warehouse.ts';
import { duration, printRunDetail, printSummary, printTable } from './format.ts';
import {
  DEFAULT_STACK,
  isTarget,
  LOCALSTACK_ENDPOINT,
  printRemoteResult,
  RemoteRunError,
  runScheduledRemote,
  STATE_MACHINE_OUTPUT,
  TARGETS,
  targetConfig,
} from './remote.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** An error the user can fix: printed without a stack trace. */
class CliError extends Error {
  override name = 'CliError';
}

const HELP: Record<string, string> = {
  main: `sluice: run Sluice pipelines locally (embedded S3, state machine, handlers and DuckDB warehouse),
or start a scheduled run on a deployed stack (LocalStack or AWS)

Usage: sluice <command> [options]

Commands:
  dev                       Start the local stack: S3 on 127.0.0.1, object triggers, schedules
  run <pipeline> --file F   Upload F to the pipeline's input prefix and wait for its run
  run <pipeline> --scheduled
                            Start the pipeline's scheduled run now
  run <pipeline> --scheduled --target localstack|aws [--stack Sluice]
                            Start it on a deployed stack and wait for it
  runs [<run>]              List runs, newest first, or show one run
  query "<SQL>" [--write]   Query the local warehouse (read-only unless --write)

Every command takes --dir <folder> (default .sluice) and works with or without "sluice dev" running.
Set SLUICE_CHUNK_SIZE (e.g. 1MB) to split small files into several chunks.
Run "sluice <command> --help" for a command's options.`,
  dev: `Usage: sluice dev [--port 4577] [--dir .sluice]

Starts the embedded stack and runs until Ctrl-C:
  - an S3 API on http://127.0.0.1:<port> (buckets ${Object.values(LOCAL_BUCKETS).join(', ')}), data in <dir>/s3;
  - every object created under a pipeline's input prefix starts a run (like the EventBridge rule);
  - pipelines with a schedule run at their cron times, in their time zone.
Upload with any S3 client, e.g.
  aws s3 cp logs.csv s3://sluice-input/access-logs/logs.csv --endpoint-url http://127.0.0.1:4577

Options:
  --port <n>     S3 port (default 4577; 0 picks a free one)
  --dir <path>   runtime folder (default .sluice)`,
  run: `Usage: sluice run <pipeline> --file <path> [--dir .sluice]
       sluice run <pipeline> --scheduled [--dir .sluice]
       sluice run <pipeline> --scheduled --target localstack|aws [--stack ${DEFAULT_STACK}]

--file       uploads the file to s3://sluice-input/<pipeline's prefix><file name> and waits for
             the run the upload starts; the file name must end with one of the pipeline's suffixes.
--scheduled  starts the run the pipeline's schedule would start, now.
--target     where to run: ${TARGETS.join(', ')} (default local).
  local        the embedded runtime: uses the S3 endpoint of a running "sluice dev", else starts
               one in this process; prints the run's summary.
  localstack   a stack deployed on LocalStack (npm run localstack:deploy), whose EventBridge
               Scheduler never fires schedules: endpoint AWS_ENDPOINT_URL, else
               ${LOCALSTACK_ENDPOINT}; region AWS_REGION, else us-east-1;
               credentials test/test unless AWS_ACCESS_KEY_ID or AWS_PROFILE is set.
  aws          a stack deployed on AWS, with the AWS SDK's usual configuration (AWS_PROFILE,
               AWS_REGION, ~/.aws/config, SSO, instance role).
             With localstack or aws, the state machine is the stack's ${STATE_MACHINE_OUTPUT} output; the run
             gets the schedule's input {"pipeline":"<pipeline>","trigger":"schedule"}, and is checked
             every 2 s until it ends; prints its execution ARN, status, and any error and cause.
             --file is not built for these targets yet (issue 10 will add it).
--stack      the deployed stack's name (default ${DEFAULT_STACK}); only with --target localstack|aws.
Exits 0 only if the run SUCCEEDED.`,
  runs: `Usage: sluice runs [<run>] [--json] [--dir .sluice]

Lists runs, newest first: status, trigger, chunks, rows read/loaded/rejected, and what went wrong.
With a run id, shows that run: its summary, input, steps, and a failure's message and details
(error type, request id, the failed chunks with their files and byte ranges).
--json   print JSON (an array of runs, or the one run) instead of a table`,
  query: `Usage: sluice query "<SQL>" [--json] [--write] [--dir .sluice]

Runs SQL on the local warehouse (<dir>/warehouse.duckdb): the tables the runs loaded,
e.g. sluice query "SELECT day, path, requests FROM daily_traffic ORDER BY day, path"
The warehouse is opened read-only: a statement that changes it (INSERT, DELETE, CREATE,
DROP, COPY ... TO a file...) fails unless --write is given.
--json   print a JSON array of row objects instead of a table
--write  allow statements that change the warehouse`,
};

const COMMON = { dir: { type: 'string', default: '.sluice' }, help: { type: 'boolean', short: 'h' } } as const;

function parse<O extends ParseArgsOptionsConfig>(args: string[], options: O) {
  try {
    return parseArgs({ args, allowPositionals: true, options: { ...COMMON, ...options } });
  } catch (error) {
    throw new CliError((error as Error).message);
  }
}

const paths = (dir: unknown) => ({ dir: resolve(String(dir)), repoRoot: REPO_ROOT });

async function dev(args: string[]): Promise<number> {
  const { values } = parse(args, { port: { type: 'string', default: '4577' } } as const);
  if (values.help) return help('dev');
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(`--port "${values.port}" is not a port`);
  await startDev({ ...paths(values.dir), port });
  return new Promise<number>(() => {}); // runs until a signal
}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    file: { type: 'string' },
    scheduled: { type: 'boolean' },
    target: { type: 'string', default: 'local' },
    stack: { type: 'string' },
  } as const);
  if (values.help) return help('run');
  const [name, ...extra] = positionals;
  if (!name) throw new CliError('which pipeline? usage: sluice run <pipeline> --file <path> | --scheduled');
  if (extra.length > 0) throw new CliError(`unexpected argument(s): ${extra.join(' ')}`);
  if (Boolean(values.file) === Boolean(values.scheduled))
    throw new CliError('give exactly one of --file <path> or --scheduled');
  const target = values.target;
  if (!isTarget(target)) throw new CliError(`unknown --target "${target}"; use one of ${TARGETS.join(', ')}`);
  if (target === 'local' && values.stack !== undefined) {
    throw new CliError('--stack names a deployed stack: use it with --target localstack or --target aws');
  }
  if (target !== 'local' && values.file) {
    throw new CliError(
      `--file with --target ${target} is not built yet (issue 10 will add it); upload the file to the stack's input bucket yourself (docs/localstack.md, step 4), or use --scheduled`,
    );
  }
  const where = paths(values.dir);
  const pipeline = getPipeline(loadPipelines(localFiles(where).pipelines), name);
  if (target !== 'local') {
    const stack = values.stack ?? DEFAULT_STACK;
    if (stack === '') throw new CliError('--stack needs a stack name');
    const config = targetConfig(target);
    log(`starting the scheduled run of ${pipeline.name} on stack "${stack}" on ${config.where}`);
    const result = await runScheduledRemote({ config, stack, pipeline: pipeline.name, log });
    printRemoteResult(result, pipeline.name);
    return result.status === 'SUCCEEDED' ? 0 : 1;
  }
  const running = await findDev(where);

  let record: ExecutionRecord;
  if (values.scheduled) {
    const input = { pipeline: pipeline.name, trigger: 'schedule' };
    if (running) {
      log(`using sluice dev at ${running.endpoint} (pid ${running.pid})`);
      record = await createLocalRuntime({ ...where, endpoint: running.endpoint, log }).startExecution(input);
    } else {
      const embedded = await startEmbedded({ ...where, port: 0, log });
      try {
        record = await embedded.runtime.startExecution(input);
      } finally {
        await embedded.stop();
      }
    }
  } else {
    const file = resolve(String(values.file));
    if (!existsSync(file) || !statSync(file).isFile()) throw new CliError(`no such file: ${values.file}`);
    const fileName = basename(file);
    if (!pipeline.input.suffixes.some((suffix) => fileName.endsWith(suffix))) {
      throw new CliError(
        `${fileName} does not end with one of ${pipeline.name}'s suffixes (${pipeline.input.suffixes.join(', ')}); rename the file`,
      );
    }
    const key = `${pipeline.input.prefix}${fileName}`;
    record = running ? await runThroughDev(running, where, file, key) : await runInProcess(where, file, key);
  }
  printSummary(toRunRow(record));
  return record.status === 'SUCCEEDED' ? 0 : 1;
}

/** `sluice dev` is running: upload to it and follow the execution it starts, through the executions folder. */
async function runThroughDev(dev: DevInfo, where: ReturnType<typeof paths>, file: string, key: string) {
  log(`using sluice dev at ${dev.endpoint} (pid ${dev.pid}); its log shows the run's progress`);
  const store = new ExecutionStore(localFiles(where).executions);
  const since = new Date().toISOString();
  await uploadFile(localS3Client(dev.endpoint), LOCAL_BUCKETS.input, key, file);
  log(`uploaded s3://${LOCAL_BUCKETS.input}/${key}`);
  const deadline = Date.now() + 30_000;
  let id: string | undefined;
  for (;;) {
    const mine = id
      ? store.read(id)
      : store.list().find((r) => (r.input as { key?: string } | null)?.key === key && r.startedAt >= since);
    if (mine) {
      if (!id) log(`run ${mine.id} started`);
      id = mine.id;
      if (mine.status !== 'RUNNING') return mine;
    } else if (Date.now() > deadline) {
      throw new CliError(
        `sluice dev (pid ${dev.pid}) started no run for s3://${LOCAL_BUCKETS.input}/${key} within 30 s`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** No `sluice dev`: an S3 server on a free port in this process; the upload's event starts the run here. */
async function runInProcess(where: ReturnType<typeof paths>, file: string, key: string) {
  let resolveRun: (execution: Promise<ExecutionRecord>) => void = () => {};
  const started = new Promise<Promise<ExecutionRecord>>((r) => {
    resolveRun = r;
  });
  const embedded = await startEmbedded({
    ...where,
    port: 0,
    log,
    onExecution: (event, execution) => {
      if (event.key === key) resolveRun(execution);
    },
  });
  try {
    await uploadFile(embedded.runtime.s3, LOCAL_BUCKETS.input, key, file);
    log(`uploaded s3://${LOCAL_BUCKETS.input}/${key}`);
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new CliError('the upload started no run within 30 s')), 30_000).unref(),
    );
    return await await Promise.race([started, timeout]);
  } finally {
    await embedded.stop();
  }
}

async function runs(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } } as const);
  if (values.help) return help('runs');
  const store = new ExecutionStore(localFiles(paths(values.dir)).executions);
  const [id, ...extra] = positionals;
  if (extra.length > 0) throw new CliError(`unexpected argument(s): ${extra.join(' ')}; usage: sluice runs [<run>]`);
  if (id !== undefined) {
    const record = store.read(id);
    if (!record)
      throw new CliError(`no run named "${id}" in ${localFiles(paths(values.dir)).dir}; "sluice runs" lists the runs`);
    const detail = toRunDetail(record);
    if (values.json) console.log(JSON.stringify(detail, null, 2));
    else printRunDetail(detail);
    return 0;
  }
  const rows = store.listRuns();
  if (values.json) {
    console.log(JSON.stringify(rows, null, 2));
    return 0;
  }
  if (rows.length === 0) {
    console.log('no runs yet');
    return 0;
  }
  printTable(
    rows.map((r) => ({
      run: r.id,
      status: r.status,
      trigger: r.trigger,
      started: r.startedAt.replace('T', ' ').slice(0, 19),
      duration: duration(r),
      chunks: r.chunks,
      read: r.rowsRead,
      loaded: r.rowsLoaded,
      rejected: r.rowsRejected,
      error: r.message ?? '',
    })),
  );
  return 0;
}

async function query(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' }, write: { type: 'boolean' } } as const);
  if (values.help) return help('query');
  const sql = positionals.join(' ').trim();
  if (!sql) throw new CliError('no SQL given: sluice query "SELECT ..."');
  const where = paths(values.dir);
  const files = localFiles(where);
  const hadWarehouse = existsSync(files.warehouse);
  const running = await findDev(where);
  // External (staging) tables are read from S3: dev's endpoint, or a server of our own meanwhile.
  const server = running ? undefined : await startS3Server({ dir: files.dir, port: 0 });
  const endpoint = running?.endpoint ?? server?.endpoint ?? '';
  try {
    const warehouse = new LocalWarehouse({
      file: files.warehouse,
      s3: localS3Client(endpoint),
      tmpDir: files.tmp,
      readOnly: values.write !== true,
    });
    const rows = await warehouse.query(sql);
    if (values.json) console.log(JSON.stringify(rows, null, 2));
    else if (rows.length === 0) console.log('(no rows)');
    else printTable(rows);
    return 0;
  } catch (error) {
    if (error instanceof WarehouseReadOnlyError) {
      throw new CliError(
        `sluice query opens the warehouse read-only, and this statement would change it (${error.message}); run it again with --write to allow changes`,
      );
    }
    if (error instanceof WarehouseQueryError && !hadWarehouse) {
      throw new CliError(`${error.message}\n(no run has loaded anything into ${files.dir} yet)`);
    }
    throw error;
  } finally {
    await server?.close();
  }
}

function help(command: string): number {
  console.log(HELP[command] ?? HELP.main);
  return 0;
}

function log(line: string): void {
  timestamped(line);
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = { dev, run, runs, query };

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    return help(rest[0] && rest[0] in HELP ? rest[0] : 'main');
  }
  const handler = COMMANDS[command];
  if (!handler) throw new CliError(`unknown command "${command}"; run "sluice --help"`);
  return handler(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Keep-alive sockets must not hold the process open; the timer itself does not either.
    setTimeout(() => process.exit(), 200).unref();
  },
  (error: unknown) => {
    const expected =
      error instanceof CliError ||
      error instanceof SluiceError ||
      error instanceof WarehouseQueryError ||
      error instanceof RemoteRunError;
    console.error(
      `sluice: ${expected || !process.env.SLUICE_DEBUG ? (error as Error).message : (error as Error).stack}`,
    );
    if (!expected && !process.env.SLUICE_DEBUG) console.error('(set SLUICE_DEBUG=1 for the stack trace)');
    process.exitCode = 1;
    setTimeout(() => process.exit(), 200).unref();
  },
);
