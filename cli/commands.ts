/**
 * The Sluice CLI. `sluice dev` starts the embedded runtime; every other command works on a target,
 * `--target local|localstack|aws` (default local), through the S3, Step Functions and Athena APIs
 * only (cli/client.ts), so its output is the same on each:
 * - local: the endpoint of the `sluice dev` running for `--dir` (default .sluice), else an embedded
 *   runtime started in this process for the command;
 * - localstack / aws: the stack's outputs (`--stack`, default Sluice) name the buckets, the state
 *   machine, the workgroup and the database (cli/target.ts).
 * Exit codes: 0 success; 1 a run that did not succeed, a failed query, or an error the message
 * explains; 2 a command line that is not understood.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { SluiceError } from '../functions/errors.ts';
import { getPipeline, loadPipelines, type Pipeline } from '../functions/pipeline/definition.ts';
import { startDev } from '../runtime/dev.ts';
import { localFiles } from '../runtime/environment.ts';
import { newExecutionName, toRunDetail, toRunRow } from '../runtime/executions.ts';
import { LOCAL_BUCKETS } from '../runtime/s3-server.ts';
import { uploadFile } from '../runtime/upload.ts';
import { DEFAULT_UI_PORT, startUiServer } from '../ui/server.ts';
import {
  executionArnOf,
  findExecutionForKey,
  isReadOnlyStatement,
  listExecutions,
  QueryFailedError,
  RedriveRefusedError,
  readExecution,
  runQuery,
  startExecution,
  startRedrive,
  waitForExecution,
} from './client.ts';
import { COST_HELP, cost } from './cost.ts';
import { duration, printRunDetail, printSummary, printTable } from './format.ts';
import { logs, logsHelp } from './logs.ts';
import { Progress, watchRun } from './progress.ts';
import { DEFAULT_STACK, isTarget, LOCALSTACK_ENDPOINT, RemoteRunError, TARGETS } from './remote.ts';
import { report, reportHelp } from './report.ts';
import { openTarget, type TargetSession } from './target.ts';
import { type CommandTools, portOption, TARGET_OPTIONS, ui, uiHelp } from './ui.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** An error the user can fix: printed without a stack trace. */
class CliError extends Error {
  override name = 'CliError';
}

/** A command line that is not understood (exit code 2). */
class UsageError extends CliError {
  override name = 'UsageError';
}

const TARGET_HELP = `--target     where: ${TARGETS.join(', ')} (default local).
  local        the embedded runtime: the "sluice dev" running for --dir, else one started in this process.
  localstack   a stack deployed on LocalStack (npm run localstack:deploy): endpoint AWS_ENDPOINT_URL, else
               ${LOCALSTACK_ENDPOINT}; region AWS_REGION, else us-east-1; credentials test/test unless
               AWS_ACCESS_KEY_ID or AWS_PROFILE is set. Its EventBridge Scheduler never fires schedules.
  aws          a stack deployed on AWS, with the AWS SDK's usual configuration (AWS_PROFILE, AWS_REGION,
               ~/.aws/config, SSO, instance role).
--stack      the deployed stack's name (default ${DEFAULT_STACK}); only with --target localstack|aws. Its outputs
             name the buckets, the state machine, the Athena workgroup and the Glue database.
--dir        the local runtime's folder (default .sluice); only with --target local.
--pipelines  the local runtime's pipeline definitions (default the repository's pipelines/); only with
             --target local, and the same as "sluice dev" was given.`;

const HELP: Record<string, string> = {
  main: `sluice: run Sluice pipelines: on the embedded runtime (S3, Step Functions and Athena APIs on
127.0.0.1, the real state machine and handlers, DuckDB as the warehouse), on LocalStack or on AWS

Usage: sluice <command> [options]

Commands:
  dev                          Start the local stack: S3, Step Functions and Athena APIs on 127.0.0.1,
                               object triggers, schedules
  run <pipeline> --file F      Upload F to the pipeline's input prefix and wait for its run
  run <pipeline> --scheduled   Start the pipeline's scheduled run now and wait for it
  runs [<run>]                 List runs, newest first, or show one run
  logs <run> [--chunk N]       Each chunk's tries, errors and timings, and the run's state events
  status [<pipeline>]          Each pipeline's schedule, runs in progress, last run and last success
  query "<SQL>" [--write]      Query the tables through Athena (read-only unless --write)
  redrive <run>                Continue a failed run: load what it did not, nothing twice
  backfill <pipeline> --from <day> --to <day> [--reload]
                               Re-derive (or reload) a window of days
  ui [--port 4578]             The web UI: runs, a run's chunks and failure, tables, actions
  report <run> --out F.html    One self-contained HTML file of a run's page
  cost <pipeline> --input 1TB  The modeled AWS cost of loading that much CSV (offline)

Every command but dev takes --target local|localstack|aws (default local) and, for a deployed
stack, --stack <name>; run, runs, status, query, redrive and backfill print the same on each.
The local target works with or without "sluice dev" running, on the same data (--dir, default .sluice).
Set SLUICE_CHUNK_SIZE (e.g. 1MB) to split small files into several chunks locally.
Exit codes: 0 success, 1 a run that did not succeed or an error, 2 a command line not understood.
Run "sluice <command> --help" for a command's options.`,
  dev: `Usage: sluice dev [--port 4577] [--ui-port 4578] [--dir .sluice]

Starts the embedded stack and runs until Ctrl-C:
  - an S3 API on http://127.0.0.1:<port> (buckets ${Object.values(LOCAL_BUCKETS).join(', ')}), and on the same
    port the Step Functions API (state machine sluice-pipeline) and the Athena API (workgroup and
    database sluice), as the AWS SDKs and the AWS CLI call them;
  - every object created under a pipeline's input prefix starts a run (like the EventBridge rule);
  - pipelines with a schedule run at their cron times, in their time zone.
Upload with any S3 client, e.g.
  aws s3 cp logs.csv s3://sluice-input/access-logs/logs.csv --endpoint-url http://127.0.0.1:4577

Options:
  --port <n>         port (default 4577; 0 picks a free one)
  --ui-port <n>      the web UI's port (default 4578; 0 picks a free one): http://127.0.0.1:<n>/
  --dir <path>       runtime folder (default .sluice)
  --pipelines <dir>  pipeline definitions (default the repository's pipelines/)`,
  run: `Usage: sluice run <pipeline> --file <path> [--target T] [--stack S] [--dir .sluice]
       sluice run <pipeline> --scheduled [--target T] [--stack S] [--dir .sluice]

--file       uploads the file to the input bucket under <pipeline's prefix><file name> and waits for
             the run the upload starts; the file name must end with one of the pipeline's suffixes.
--scheduled  starts the run the pipeline's schedule would start, now, with the schedule's input
             {"pipeline":"<pipeline>","trigger":"schedule"}, and waits for it.
${TARGET_HELP}
While it waits: a progress bar on a terminal (chunks done of the planned total, rows, MB/s, time left),
plain lines otherwise. Prints the run's summary. Exits 0 only if the run SUCCEEDED, else 1.`,
  runs: `Usage: sluice runs [<run>] [--json] [--limit 100] [--target T] [--stack S] [--dir .sluice]

Lists runs, newest first: status, trigger, chunks, rows read/loaded/rejected, and what went wrong
(Step Functions' executions, with the run records in the working bucket).
With a run id, shows that run: its summary, input, steps, and a failure's message and details
(error type, request id, the failed chunks with their files and byte ranges).
--json    print JSON (an array of runs, or the one run) instead of a table
--limit   list at most this many runs (default 100)
${TARGET_HELP}`,
  status: `Usage: sluice status [<pipeline>] [--json] [--target T] [--stack S] [--dir .sluice]

For each pipeline (or the one named): its schedule, the runs in progress, the last run with its
status, and the last run that succeeded, from the newest 200 runs.
${TARGET_HELP}`,
  query: `Usage: sluice query "<SQL>" [--json] [--write] [--target T] [--stack S] [--dir .sluice]

Runs one statement through Athena (StartQueryExecution, GetQueryResults) in the target's workgroup
and database: the tables the runs loaded, e.g.
  sluice query "SELECT day, path, requests FROM daily_traffic ORDER BY day, path"
Only statements that read (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, VALUES) run unless --write is given.
--json   print a JSON array of row objects instead of a table
--write  allow statements that change tables
${TARGET_HELP}`,
  redrive: `Usage: sluice redrive <run> [--target T] [--stack S] [--dir .sluice]

Continues a run that FAILED, was ABORTED or TIMED_OUT: starts <run>-redrive-<n> with the run's input
and redriveOf: <run>, and waits for it. What the failed run loaded stays loaded; the rest is planned
again and loaded once (the ledger of loaded object versions; docs/loads.md). Exits 0 only if it SUCCEEDED.
${TARGET_HELP}`,
  backfill: `Usage: sluice backfill <pipeline> --from <YYYY-MM-DD> --to <YYYY-MM-DD> [--reload]
                      [--days-per-run 7] [--parallel 2] [--target T] [--stack S] [--dir .sluice]

Re-derives the pipeline's derived tables for the days from --from to --to (both included), as runs
of at most --days-per-run days, --parallel at a time, with a progress bar on a terminal.
--reload   reload the main table's rows of those days from their input objects first (each object's
           rows replaced in one commit), then re-derive
Exits 0 only if every run SUCCEEDED.
${TARGET_HELP}`,
  ui: uiHelp(TARGET_HELP),
  report: reportHelp(TARGET_HELP),
  cost: COST_HELP,
  logs: logsHelp(TARGET_HELP),
};

/** The options every command takes (cli/ui.ts keeps them, for the commands in their own files). */
const COMMON = TARGET_OPTIONS;

function parse<O extends ParseArgsOptionsConfig>(args: string[], options: O) {
  try {
    return parseArgs({ args, allowPositionals: true, options: { ...COMMON, ...options } });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** The local runtime's folder and where the pipelines are (`--pipelines`, default the repository's `pipelines/`). */
const paths = (dir: unknown, pipelinesDir?: string) => ({
  dir: resolve(String(dir ?? '.sluice')),
  repoRoot: REPO_ROOT,
  ...(pipelinesDir ? { pipelinesDir: resolve(pipelinesDir) } : {}),
});

/** The target of a command line (--target, --stack, --dir checked together), opened. */
async function open(values: {
  target?: string;
  stack?: string;
  dir?: string;
  pipelines?: string;
}): Promise<TargetSession> {
  const target = values.target ?? 'local';
  if (!isTarget(target)) throw new UsageError(`unknown --target "${target}"; use one of ${TARGETS.join(', ')}`);
  if (target === 'local' && values.stack !== undefined) {
    throw new UsageError('--stack names a deployed stack: use it with --target localstack or --target aws');
  }
  if (target !== 'local' && values.dir !== undefined) {
    throw new UsageError(`--dir is the local runtime's folder: it does not go with --target ${target}`);
  }
  if (target !== 'local' && values.pipelines !== undefined) {
    throw new UsageError(`--pipelines is the local runtime's pipelines folder: it does not go with --target ${target}`);
  }
  if (values.stack === '') throw new UsageError('--stack needs a stack name');
  const session = await openTarget({
    target,
    ...paths(values.dir, values.pipelines),
    ...(values.stack !== undefined ? { stack: values.stack } : {}),
    log,
  });
  log(`using ${session.where}`);
  return session;
}

/** Opens the target, runs `body`, closes the target (stopping an embedded runtime started for it). */
async function withTarget<T>(values: Parameters<typeof open>[0], body: (session: TargetSession) => Promise<T>) {
  const session = await open(values);
  try {
    return await body(session);
  } finally {
    await session.close();
  }
}

/** The repository's pipelines (the same definitions CDK deploys). */
const pipelines = (dir?: string) => loadPipelines(localFiles(paths('.sluice', dir)).pipelines);

function noExtra(extra: string[], usage: string): void {
  if (extra.length > 0) throw new UsageError(`unexpected argument(s): ${extra.join(' ')}; usage: ${usage}`);
}

async function dev(args: string[]): Promise<number> {
  const { values } = parse(args, {
    port: { type: 'string', default: '4577' },
    'ui-port': { type: 'string', default: String(DEFAULT_UI_PORT) },
  } as const);
  if (values.help) return help('dev');
  if (values.target !== 'local' || values.stack !== undefined) {
    throw new UsageError('sluice dev runs the embedded runtime on this machine: it takes no --target or --stack');
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(`--port "${values.port}" is not a port`);
  const uiPort = portOption(values['ui-port'], '--ui-port', commandTools);
  await startDev({ ...paths(values.dir, values.pipelines), port });
  // The UI beside the runtime, through the runtime's own S3, Step Functions and Athena APIs.
  // A UI that cannot start (its port taken by another sluice dev) leaves the runtime running.
  const session = await openTarget({ target: 'local', ...paths(values.dir, values.pipelines), startLocal: false });
  await startUiServer({ session, pipelines: pipelines(values.pipelines) }, uiPort, '--ui-port').then(
    (server) => log(`UI at ${server.url}`),
    (error: unknown) => log(`the UI did not start: ${(error as Error).message}`),
  );
  return new Promise<number>(() => {}); // runs until a signal
}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { file: { type: 'string' }, scheduled: { type: 'boolean' } } as const);
  if (values.help) return help('run');
  const [name, ...extra] = positionals;
  if (!name) throw new UsageError('which pipeline? usage: sluice run <pipeline> --file <path> | --scheduled');
  noExtra(extra, 'sluice run <pipeline> --file <path> | --scheduled');
  if (Boolean(values.file) === Boolean(values.scheduled))
    throw new UsageError('give exactly one of --file <path> or --scheduled');
  const pipeline = getPipeline(pipelines(values.pipelines), name);
  let file: string | undefined;
  if (values.file) {
    file = resolve(String(values.file));
    if (!existsSync(file) || !statSync(file).isFile()) throw new CliError(`no such file: ${values.file}`);
    const fileName = basename(file);
    if (!pipeline.input.suffixes.some((suffix) => fileName.endsWith(suffix))) {
      throw new CliError(
        `${fileName} does not end with one of ${pipeline.name}'s suffixes (${pipeline.input.suffixes.join(', ')}); rename the file`,
      );
    }
  }
  return withTarget(values, async (session) => {
    let executionArn: string;
    if (file) {
      const key = `${pipeline.input.prefix}${basename(file)}`;
      const since = new Date();
      await uploadFile(session.s3, session.names.inputBucket, key, file);
      log(`uploaded s3://${session.names.inputBucket}/${key}; waiting for the run it starts`);
      executionArn = await findExecutionForKey(session, key, since);
    } else {
      // Exactly what the pipeline's EventBridge Scheduler schedule sends (infra/triggers.ts).
      const input = { pipeline: pipeline.name, trigger: 'schedule' };
      executionArn = await startExecution(session, input, newExecutionName(pipeline.name));
    }
    log(`run ${executionArn.slice(executionArn.lastIndexOf(':') + 1)} started; waiting for it to end`);
    return finished(session, executionArn);
  });
}

/** Waits for an execution, prints its summary; 0 only if it SUCCEEDED. */
async function finished(session: TargetSession, executionArn: string): Promise<number> {
  const progress = watchRun(session, executionArn, { tty: process.stderr.isTTY === true, log });
  const described = await waitForExecution(session, executionArn).finally(() => progress.stop());
  const record = await readExecution(session, executionArn, { described });
  printSummary(toRunRow(record));
  console.log(`execution ${executionArn}`);
  return record.status === 'SUCCEEDED' ? 0 : 1;
}

async function runs(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    json: { type: 'boolean' },
    limit: { type: 'string', default: '100' },
  } as const);
  if (values.help) return help('runs');
  const [id, ...extra] = positionals;
  noExtra(extra, 'sluice runs [<run>]');
  const limit = Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit "${values.limit}" is not a positive number`);
  if (id !== undefined && !/^[A-Za-z0-9_-]{1,80}$/.test(id)) {
    throw new CliError(`"${id}" is not a run id (1 to 80 of A-Z, a-z, 0-9, - and _); "sluice runs" lists the runs`);
  }
  return withTarget(values, async (session) => {
    if (id !== undefined) {
      const executionArn = executionArnOf(session.names.stateMachineArn, id);
      let detail: ReturnType<typeof toRunDetail>;
      try {
        detail = toRunDetail(await readExecution(session, executionArn, { steps: true }));
      } catch (error) {
        if (/ExecutionDoesNotExist/.test((error as Error).message)) {
          throw new CliError(`no run named "${id}" on ${session.where}; "sluice runs" lists the runs`);
        }
        throw error;
      }
      if (values.json) console.log(JSON.stringify(detail, null, 2));
      else printRunDetail(detail);
      return 0;
    }
    const rows = (await listExecutions(session, limit)).map(toRunRow);
    return printRows(values.json, rows, 'no runs yet', (r) => ({
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
    }));
  });
}

/** Prints `rows` as JSON with --json, else as a table of `columns(row)` (`none` when there is no row); exit code 0. */
function printRows<T>(
  json: boolean | undefined,
  rows: readonly T[],
  none: string,
  columns: (row: T) => Record<string, unknown>,
): number {
  if (json) console.log(JSON.stringify(rows, null, 2));
  else if (rows.length === 0 && none) console.log(none);
  else printTable(rows.map(columns));
  return 0;
}

async function status(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } } as const);
  if (values.help) return help('status');
  const [name, ...extra] = positionals;
  noExtra(extra, 'sluice status [<pipeline>]');
  const all = pipelines(values.pipelines);
  const chosen: Pipeline[] = name ? [getPipeline(all, name)] : [...all.values()];
  return withTarget(values, async (session) => {
    const rows = (await listExecutions(session, 200)).map(toRunRow);
    const report = chosen.map((p) => {
      const mine = rows.filter((r) => r.pipeline === p.name);
      const last = mine[0];
      const success = mine.find((r) => r.status === 'SUCCEEDED');
      return {
        pipeline: p.name,
        schedule: p.schedule ? `${p.schedule.cron} ${p.schedule.timezone}` : '',
        running: mine.filter((r) => r.status === 'RUNNING').length,
        lastRun: last?.id ?? null,
        lastStatus: last?.status ?? null,
        lastStarted: last?.startedAt ?? null,
        lastSuccess: success?.id ?? null,
        lastSuccessAt: success?.stoppedAt ?? null,
        lastError: last && last.status !== 'SUCCEEDED' && last.status !== 'RUNNING' ? (last.message ?? null) : null,
      };
    });
    return printRows(values.json, report, '', (r) => ({
      pipeline: r.pipeline,
      schedule: r.schedule,
      running: r.running,
      'last run': r.lastRun ?? '(none)',
      status: r.lastStatus ?? '',
      started: r.lastStarted?.replace('T', ' ').slice(0, 19) ?? '',
      'last success': r.lastSuccessAt?.replace('T', ' ').slice(0, 19) ?? '',
      error: r.lastError ?? '',
    }));
  });
}

async function query(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' }, write: { type: 'boolean' } } as const);
  if (values.help) return help('query');
  const sql = positionals.join(' ').trim();
  if (!sql) throw new UsageError('no SQL given: sluice query "SELECT ..."');
  if (values.write !== true && !isReadOnlyStatement(sql)) {
    throw new CliError(
      'sluice query is read-only unless --write is given, and this statement is not one that only reads (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, VALUES); run it again with --write to allow changes',
    );
  }
  return withTarget(values, async (session) => {
    let result: Awaited<ReturnType<typeof runQuery>>;
    try {
      result = await runQuery(session, sql);
    } catch (error) {
      if (error instanceof QueryFailedError && /does not exist|not found/i.test(error.message)) {
        throw new CliError(`${error.message}\n(has a run loaded anything yet? "sluice runs" lists the runs)`);
      }
      throw error;
    }
    return printRows(values.json, result.rows, '(no rows)', (row) => row);
  });
}

async function redrive(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {} as const);
  if (values.help) return help('redrive');
  const [id, ...extra] = positionals;
  if (!id) throw new UsageError('which run? usage: sluice redrive <run>; "sluice runs" lists the runs');
  noExtra(extra, 'sluice redrive <run>');
  if (!/^[A-Za-z0-9_-]{1,80}$/.test(id)) throw new CliError(`"${id}" is not a run id; "sluice runs" lists the runs`);
  return withTarget(values, async (session) => {
    let started: Awaited<ReturnType<typeof startRedrive>>;
    try {
      started = await startRedrive(session, id);
    } catch (error) {
      if (error instanceof RedriveRefusedError) throw new CliError(error.message);
      throw error;
    }
    log(`redriving ${id} as ${started.name}`);
    return finished(session, started.executionArn);
  });
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

function day(value: string | undefined, option: string): string {
  if (!value) throw new UsageError(`${option} <YYYY-MM-DD> is required`);
  const parsed = new Date(`${value}T00:00:00Z`);
  if (!DAY.test(value) || Number.isNaN(parsed.getTime()) || parsed.toISOString().slice(0, 10) !== value) {
    throw new UsageError(`${option} "${value}" is not a day (YYYY-MM-DD)`);
  }
  return value;
}

const addDays = (d: string, n: number) => {
  const date = new Date(`${d}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + n);
  return date.toISOString().slice(0, 10);
};

/** The window [from, to] cut into runs of at most `size` days. */
function backfillWindows(from: string, to: string, size: number): { from: string; to: string }[] {
  const windows: { from: string; to: string }[] = [];
  for (let start = from; start <= to; start = addDays(start, size)) {
    const end = addDays(start, size - 1);
    windows.push({ from: start, to: end < to ? end : to });
  }
  return windows;
}

/** At most this many days in one backfill: 10 years. */
const MAX_BACKFILL_DAYS = 3660;

async function backfill(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    from: { type: 'string' },
    to: { type: 'string' },
    reload: { type: 'boolean' },
    'days-per-run': { type: 'string', default: '7' },
    parallel: { type: 'string', default: '2' },
  } as const);
  if (values.help) return help('backfill');
  const [name, ...extra] = positionals;
  if (!name) throw new UsageError('which pipeline? usage: sluice backfill <pipeline> --from <day> --to <day>');
  noExtra(extra, 'sluice backfill <pipeline> --from <day> --to <day>');
  const from = day(values.from, '--from');
  const to = day(values.to, '--to');
  if (from > to) throw new UsageError(`--from ${from} is after --to ${to}`);
  const span = (Date.parse(to) - Date.parse(from)) / 86_400_000 + 1;
  if (span > MAX_BACKFILL_DAYS) throw new UsageError(`the window has ${span} days; at most ${MAX_BACKFILL_DAYS}`);
  const size = Number(values['days-per-run']);
  const parallel = Number(values.parallel);
  // Athena writes at most 100 partitions per statement (functions/pipeline/sql.ts batches by 100 days anyway).
  if (!Number.isInteger(size) || size < 1 || size > 100) throw new UsageError('--days-per-run must be 1 to 100');
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 16) throw new UsageError('--parallel must be 1 to 16');
  const pipeline = getPipeline(pipelines(values.pipelines), name);
  const windows = backfillWindows(from, to, size);
  return withTarget(values, async (session) => {
    const progress = new Progress(windows.length, { tty: process.stderr.isTTY === true, log });
    const failures: string[] = [];
    let next = 0;
    const worker = async () => {
      for (;;) {
        const window = windows[next++];
        if (!window) return;
        const input = {
          pipeline: pipeline.name,
          trigger: 'backfill',
          from: window.from,
          to: window.to,
          ...(values.reload ? { reload: true } : {}),
        };
        const arn = await startExecution(session, input, newExecutionName(`${pipeline.name}-backfill`));
        progress.started();
        const described = await waitForExecution(session, arn);
        const run = arn.slice(arn.lastIndexOf(':') + 1);
        const ok = described.status === 'SUCCEEDED';
        if (!ok) failures.push(`${window.from}..${window.to}: run ${run} ${described.status}`);
        progress.done(`${window.from}..${window.to} ${described.status} (run ${run})`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, windows.length) }, worker));
    progress.end();
    const days = `${from}..${to}`;
    if (failures.length === 0) {
      console.log(`backfill of ${pipeline.name} ${days}: ${windows.length} runs SUCCEEDED`);
      return 0;
    }
    console.log(`backfill of ${pipeline.name} ${days}: ${failures.length} of ${windows.length} runs did not succeed:`);
    for (const f of failures) console.log(`  ${f}`);
    console.log('"sluice runs <run>" shows why; "sluice redrive <run>" continues one.');
    return 1;
  });
}

function help(command: string): number {
  console.log(HELP[command] ?? HELP.main);
  return 0;
}

/** Progress lines go to stderr, with a timestamp: stdout carries only what the command prints (tables, JSON). */
function log(line: string): void {
  console.error(`${new Date().toISOString().slice(11, 23)} ${line}`);
}

/** What the commands in their own files (cli/ui.ts, cli/report.ts) use of this one. */
const commandTools: CommandTools = {
  open,
  usage: (message) => new UsageError(message),
  fail: (message) => new CliError(message),
  help,
  log,
  pipelines,
};

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  dev,
  run,
  runs,
  status,
  query,
  redrive,
  backfill,
  ui: (args) => ui(args, commandTools),
  report: (args) => report(args, commandTools),
  cost: (args) => cost(args, commandTools),
  logs: (args) => logs(args, commandTools),
};

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
      error instanceof QueryFailedError ||
      error instanceof RemoteRunError;
    console.error(
      `sluice: ${expected || !process.env.SLUICE_DEBUG ? (error as Error).message : (error as Error).stack}`,
    );
    if (!expected && !process.env.SLUICE_DEBUG) console.error('(set SLUICE_DEBUG=1 for the stack trace)');
    process.exitCode = error instanceof UsageError ? 2 : 1;
    setTimeout(() => process.exit(), 200).unref();
  },
);
