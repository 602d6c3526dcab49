/**
 * `npm run chaos -- --runs 50 [--seed N] [--dir D]`: the proof of issue 8 ("loads exactly once")
 * under injected faults. It starts `sluice dev` as a child process with SLUICE_FAULTS set, and
 * talks to it only as a user's tools would, through the AWS APIs on its port: S3 (uploads,
 * re-uploads, deletes), Step Functions (the scheduled run) and Athena (reading the tables back).
 * Now and then it SIGKILLs the dev process and starts it again on the same folder.
 *
 * Each of the `--runs` steps is one random action (seeded: the same seed gives the same actions;
 * the faults depend on timing as well). When the actions are done it waits until no execution is
 * RUNNING, starts a final scheduled run, then compares the tables with the rows computed here from
 * the files it wrote (bench/chaos-model.ts): counts and an order-independent checksum, and the
 * rows lost, duplicated, stale (of a replaced version or a deleted object) or unexpected, the
 * current versions' rejects, and daily_traffic. It prints the figures, appends them to
 * docs/reliability.md (unless --no-record), and exits 1 unless the tables are exact.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { cpus, platform, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  AthenaClient,
  GetQueryExecutionCommand,
  GetQueryResultsCommand,
  StartQueryExecutionCommand,
} from '@aws-sdk/client-athena';
import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  type ExecutionListItem,
  ListExecutionsCommand,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { loadPipelines, type Pipeline } from '../functions/pipeline/definition.ts';
import { countFaultLog, FAULT_KINDS, type FaultKind, logFault, randomGenerator } from '../runtime/faults.ts';
import {
  type ColumnSpec,
  type CurrentObject,
  compareRejects,
  compareTable,
  compareTraffic,
  expectedTraffic,
  generateFile,
  INPUT_COLUMNS,
  MODELLED_TRANSFORM,
  type PresentReject,
  type PresentRow,
  rowText,
  type TrafficRow,
} from './chaos-model.ts';
import { commit } from './report.ts';

const REPO_ROOT = resolve(import.meta.dirname, '..');
const PIPELINE = 'access-logs';
const INPUT_BUCKET = 'sluice-input';
const STATE_MACHINE_ARN = 'arn:aws:states:us-east-1:000000000000:stateMachine:sluice-pipeline';
/** Modest rates: enough to hit every path in 50 runs, few enough that retries win (see docs/reliability.md). */
const DEFAULT_FAULTS = 'worker-error=0.1,worker-partial=0.05,s3-5xx=0.01,commit-conflict=0.2';
/** Small chunks, so that files split into several byte ranges and chunks fail alone. */
const CHUNK_SIZE = '8KB';
const ACTIONS = ['upload', 'reupload', 'delete', 'schedule', 'kill'] as const;
type Action = (typeof ACTIONS)[number];
const WEIGHTS: Readonly<Record<Action, number>> = { upload: 35, reupload: 20, delete: 10, schedule: 20, kill: 8 };

class ChaosError extends Error {
  override name = 'ChaosError';
}

const USAGE = `Usage: npm run chaos -- [--runs 50] [--seed N] [--dir D] [--faults SPEC|none]
                      [--actions upload,reupload,delete,schedule,kill] [--max-lines 300] [--no-record] [--keep]
  --runs       random actions to take (default 50)
  --seed       seed of the actions (default: from the clock; printed)
  --dir        runtime folder for sluice dev (default: a new temporary folder, removed after a clean run)
  --faults     SLUICE_FAULTS for sluice dev (default ${DEFAULT_FAULTS})
  --actions    the actions to draw from (deletes run only if the pipeline has onDelete: remove)
  --max-lines  most lines in one generated file (default 300)
  --timeout    minutes to wait for the runs to end (default 20)
  --no-record  do not append the result to docs/reliability.md
  --keep       keep --dir even after a clean run`;

interface Options {
  readonly runs: number;
  readonly seed: number;
  readonly dir: string | undefined;
  readonly faults: string;
  readonly actions: readonly Action[];
  readonly maxLines: number;
  readonly timeoutMinutes: number;
  readonly record: boolean;
  readonly keep: boolean;
  readonly command: string;
}

function parseOptions(args: readonly string[]): Options | undefined {
  const { values } = parseArgs({
    args: [...args],
    allowNegative: true,
    options: {
      runs: { type: 'string', default: '50' },
      seed: { type: 'string' },
      dir: { type: 'string' },
      faults: { type: 'string', default: DEFAULT_FAULTS },
      actions: { type: 'string', default: ACTIONS.join(',') },
      'max-lines': { type: 'string', default: '300' },
      timeout: { type: 'string', default: '20' },
      record: { type: 'boolean', default: true },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return undefined;
  const integer = (name: string, text: string, min: number) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min)
      throw new ChaosError(`--${name} "${text}" is not an integer >= ${min}`);
    return value;
  };
  const actions = values.actions.split(',').map((a) => a.trim());
  const unknown = actions.filter((a) => !(ACTIONS as readonly string[]).includes(a));
  if (unknown.length > 0)
    throw new ChaosError(`--actions: unknown ${unknown.join(', ')}; the actions are ${ACTIONS.join(', ')}`);
  return {
    runs: integer('runs', values.runs, 0),
    seed: values.seed === undefined ? Date.now() % 1_000_000 : integer('seed', values.seed, 0),
    dir: values.dir,
    faults: values.faults === 'none' ? '' : values.faults,
    actions: actions as Action[],
    maxLines: integer('max-lines', values['max-lines'], 20),
    timeoutMinutes: integer('timeout', values.timeout, 1),
    record: values.record,
    keep: values.keep,
    command: ['npm run chaos --', ...args].join(' '),
  };
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const say = (line: string) => console.log(line);

/** One `sluice dev` process and the AWS clients pointed at it. */
interface Dev {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly endpoint: string;
  readonly s3: S3Client;
  readonly sfn: SFNClient;
  readonly athena: AthenaClient;
  readonly startedAt: Date;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
}

const tail = (file: string, lines = 15) =>
  existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : '';

/** Starts `node cli/sluice.ts dev --port 0 --dir <dir> --pipelines <dir>/pipelines` and waits for its dev.json. */
async function startDev(dir: string, env: NodeJS.ProcessEnv, logFile: string): Promise<Dev> {
  const out = openSync(logFile, 'a');
  const args = ['dev', '--port', '0', '--ui-port', '0', '--dir', dir, '--pipelines', join(dir, 'pipelines')];
  const child = spawn(process.execPath, [join(REPO_ROOT, 'cli', 'sluice.ts'), ...args], {
    env,
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  let exitedEarly = false;
  const exited = new Promise<void>((done) =>
    child.once('exit', () => {
      exitedEarly = true;
      done();
    }),
  );
  const pid = child.pid ?? -1;
  const infoFile = join(dir, 'dev.json');
  for (let waited = 0; waited < 120_000; waited += 100) {
    if (exitedEarly) throw new ChaosError(`sluice dev exited at start-up; the end of ${logFile}:\n${tail(logFile)}`);
    try {
      const info = JSON.parse(readFileSync(infoFile, 'utf8')) as { pid: number; endpoint: string };
      if (info.pid === pid) {
        const client = {
          endpoint: info.endpoint,
          region: 'us-east-1',
          credentials: { accessKeyId: 'chaos', secretAccessKey: 'chaos' },
          // The injected 503s are retried by the SDK, as they would be against S3; more attempts than
          // the default 3 so that the script's own calls do not end the run.
          maxAttempts: 8,
        };
        return {
          child,
          pid,
          endpoint: info.endpoint,
          s3: new S3Client({ ...client, forcePathStyle: true }),
          sfn: new SFNClient(client),
          athena: new AthenaClient(client),
          startedAt: new Date(),
          exited,
        };
      }
    } catch {
      // not written yet
    }
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new ChaosError(`sluice dev did not start within 120 s; the end of ${logFile}:\n${tail(logFile)}`);
}

async function listExecutions(dev: Dev, statusFilter?: 'RUNNING'): Promise<ExecutionListItem[]> {
  const items: ExecutionListItem[] = [];
  let nextToken: string | undefined;
  do {
    const page = await dev.sfn.send(
      new ListExecutionsCommand({ stateMachineArn: STATE_MACHINE_ARN, maxResults: 1000, statusFilter, nextToken }),
    );
    items.push(...(page.executions ?? []));
    nextToken = page.nextToken;
  } while (nextToken);
  return items;
}

/** Waits until no execution is RUNNING (saying every minute which ones still are). */
async function waitIdle(dev: Dev, timeoutMinutes: number): Promise<void> {
  const start = Date.now();
  let said = start;
  for (;;) {
    const running = await listExecutions(dev, 'RUNNING');
    if (running.length === 0) return;
    const names = running.map((e) => e.name).join(', ');
    if (Date.now() - start > timeoutMinutes * 60_000) {
      throw new ChaosError(`executions still RUNNING after ${timeoutMinutes} minutes: ${names} (see the dev log)`);
    }
    if (Date.now() - said > 60_000) {
      said = Date.now();
      say(`still RUNNING after ${Math.round((said - start) / 60_000)} min: ${names}`);
    }
    await sleep(500);
  }
}

async function scheduledRun(dev: Dev): Promise<string> {
  const started = await dev.sfn.send(
    new StartExecutionCommand({
      stateMachineArn: STATE_MACHINE_ARN,
      input: JSON.stringify({ pipeline: PIPELINE, trigger: 'schedule' }),
    }),
  );
  return started.executionArn ?? '';
}

async function finalStatus(
  dev: Dev,
  executionArn: string,
): Promise<{ status: string; error?: string; cause?: string }> {
  for (;;) {
    const described = await dev.sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (described.status !== 'RUNNING') {
      return { status: described.status ?? '?', error: described.error, cause: described.cause };
    }
    await sleep(500);
  }
}

/** Whether an execution continues a failed run (its input carries `redriveOf`). */
async function isRedrive(dev: Dev, executionArn: string): Promise<boolean> {
  const { input } = await dev.sfn.send(new DescribeExecutionCommand({ executionArn }));
  try {
    return typeof (JSON.parse(input ?? '{}') as { redriveOf?: unknown }).redriveOf === 'string';
  } catch {
    return false;
  }
}

/** Runs one query through the Athena API; the rows as strings (null for SQL NULL), without the header row. */
async function query(dev: Dev, sql: string): Promise<(string | null)[][]> {
  const { QueryExecutionId } = await dev.athena.send(
    new StartQueryExecutionCommand({
      QueryString: sql,
      WorkGroup: 'sluice',
      QueryExecutionContext: { Database: 'sluice' },
    }),
  );
  for (;;) {
    const { QueryExecution } = await dev.athena.send(new GetQueryExecutionCommand({ QueryExecutionId }));
    const state = QueryExecution?.Status?.State;
    if (state === 'SUCCEEDED') break;
    if (state === 'FAILED' || state === 'CANCELLED') {
      throw new ChaosError(
        `the query ${sql.slice(0, 80)} ${state}: ${QueryExecution?.Status?.StateChangeReason ?? ''}`,
      );
    }
    await sleep(100);
  }
  const rows: (string | null)[][] = [];
  let nextToken: string | undefined;
  let first = true;
  do {
    const page = await dev.athena.send(
      new GetQueryResultsCommand({ QueryExecutionId, MaxResults: 1000, NextToken: nextToken }),
    );
    const data = (page.ResultSet?.Rows ?? []).map((row) => (row.Data ?? []).map((d) => d.VarCharValue ?? null));
    rows.push(...(first ? data.slice(1) : data));
    first = false;
    nextToken = page.NextToken;
  } while (nextToken);
  return rows;
}

/** A table that no run created yet reads as empty. */
async function queryOrEmpty(dev: Dev, sql: string): Promise<(string | null)[][]> {
  try {
    return await query(dev, sql);
  } catch (error) {
    if (/does not exist|not found/i.test((error as Error).message)) return [];
    throw error;
  }
}

/** The retries the runtime logged: `↻ <state> retry n` (top-level states) and `Map[i] <state> retry n` (Map items). */
function countRetries(logFile: string): Record<string, number> {
  const retries: Record<string, number> = {};
  if (!existsSync(logFile)) return retries;
  for (const match of readFileSync(logFile, 'utf8').matchAll(/(?:↻ |\[\d+\] )(\S+) retry \d+ after/g)) {
    const state =
      (match[1] ?? '?')
        .split('.')
        .at(-1)
        ?.replace(/\[\d+\]$/, '') ?? '?';
    retries[state] = (retries[state] ?? 0) + 1;
  }
  return retries;
}

/** What the script checks its model against: the pipeline's input columns and transform. */
function checkModel(pipeline: Pipeline): void {
  const columns = pipeline.schema.map((c) => c.name);
  if (columns.join(',') !== INPUT_COLUMNS.join(',')) {
    throw new ChaosError(
      `pipelines/${PIPELINE}.yaml has the input columns ${columns.join(', ')}; bench/chaos-model.ts writes ${INPUT_COLUMNS.join(', ')}: update the model`,
    );
  }
  const squash = (sql: string) => sql.replace(/\s+/g, ' ').trim();
  if (squash(pipeline.transform) !== squash(MODELLED_TRANSFORM)) {
    throw new ChaosError(
      `pipelines/${PIPELINE}.yaml's transform is not the one bench/chaos-model.ts models (${MODELLED_TRANSFORM}): update the model`,
    );
  }
}

/** One action, drawn with the weights of {@link WEIGHTS} among those possible now. */
function weightedPick(random: () => number, possible: readonly Action[]): Action {
  let draw = random() * possible.reduce((n, a) => n + WEIGHTS[a], 0);
  for (const action of possible) {
    draw -= WEIGHTS[action];
    if (draw < 0) return action;
  }
  return possible[0] ?? 'upload';
}

interface Written {
  /** The version's VersionId and ETag (unquoted). */
  readonly versions: readonly string[];
  readonly rows: readonly Readonly<Record<string, string | number>>[];
  readonly rejectedLines: readonly number[];
}

/** The pipeline file with `onDelete: remove` (the repository's keeps rows of deleted objects). */
function setOnDelete(text: string): string {
  if (/^onDelete:/m.test(text)) return text.replace(/^onDelete:.*$/m, 'onDelete: remove');
  return `${text.trimEnd()}\nonDelete: remove\n`;
}

async function main(args: readonly string[]): Promise<number> {
  const options = parseOptions(args);
  if (!options) {
    say(USAGE);
    return 0;
  }
  const dir = resolve(options.dir ?? mkdtempSync(join(tmpdir(), 'sluice-chaos-')));
  // The repository's pipelines, with onDelete: remove, so that deletes remove rows (sluice dev --pipelines).
  const pipelinesDir = join(dir, 'pipelines');
  mkdirSync(pipelinesDir, { recursive: true });
  for (const name of readdirSync(join(REPO_ROOT, 'pipelines'))) {
    const text = readFileSync(join(REPO_ROOT, 'pipelines', name), 'utf8');
    writeFileSync(join(pipelinesDir, name), name === `${PIPELINE}.yaml` ? setOnDelete(text) : text);
  }
  const pipeline = loadPipelines(pipelinesDir).get(PIPELINE);
  if (!pipeline) throw new ChaosError(`no pipeline named ${PIPELINE} in pipelines/`);
  checkModel(pipeline);
  const onDelete = pipeline.onDelete;
  const deletes = options.actions.includes('delete') && onDelete === 'remove';
  const faultsLog = join(dir, 'faults.jsonl');
  const devLog = join(dir, 'dev.log');
  rmSync(faultsLog, { force: true });
  rmSync(devLog, { force: true });
  let generation = 0;
  const env = () => ({
    ...process.env,
    SLUICE_FAULTS:
      options.faults && !/seed=/.test(options.faults)
        ? `${options.faults},seed=${options.seed * 1000 + generation}`
        : options.faults,
    SLUICE_FAULTS_LOG: faultsLog,
    SLUICE_CHUNK_SIZE: CHUNK_SIZE,
  });

  say(`chaos: ${options.runs} runs, seed ${options.seed}, faults ${options.faults || 'none'}, folder ${dir}`);
  if (options.actions.includes('delete') && !deletes) {
    say(
      `deletes skipped: pipelines/${PIPELINE}.yaml has onDelete: ${onDelete} (a delete keeps the rows; set onDelete: remove to test deletes)`,
    );
  }
  let dev = await startDev(dir, env(), devLog);
  const stopDev = () => dev.child.kill('SIGKILL');
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      stopDev();
      process.exit(130);
    });
  }

  const random = randomGenerator(options.seed);
  const objects = new Map<string, Written>();
  const done: Record<Action, number> = { upload: 0, reupload: 0, delete: 0, schedule: 0, kill: 0 };
  let files = 0;
  let versions = 0;
  let leftUnfinished = 0;
  const write = async (key: string) => {
    const tag = `v${++versions}`;
    const lines = 20 + Math.floor(random() * (options.maxLines - 19));
    const file = generateFile(random, tag, lines, Math.floor(random() * 4));
    const out = await dev.s3.send(
      new PutObjectCommand({ Bucket: INPUT_BUCKET, Key: key, Body: file.body, ContentType: 'text/csv' }),
    );
    if (!out.VersionId)
      throw new ChaosError(`PutObject of ${key} returned no VersionId: the input bucket must be versioned`);
    const etag = (out.ETag ?? '').replaceAll('"', '');
    objects.set(key, { versions: [out.VersionId, etag], rows: file.rows, rejectedLines: file.rejectedLines });
    return `${key} (${file.rows.length} rows, ${file.rejectedLines.length} bad lines)`;
  };

  try {
    for (let run = 1; run <= options.runs; run++) {
      const possible = options.actions.filter(
        (a) => (a !== 'reupload' && a !== 'delete') || (objects.size > 0 && (a !== 'delete' || deletes)),
      );
      const action = weightedPick(random, possible);
      const keys = [...objects.keys()];
      let what: string;
      switch (action) {
        case 'upload':
          what = await write(`${pipeline.input.prefix}chaos/f${String(++files).padStart(4, '0')}.csv`);
          break;
        case 'reupload':
          what = await write(keys[Math.floor(random() * keys.length)] ?? '');
          break;
        case 'delete': {
          const key = keys[Math.floor(random() * keys.length)] ?? '';
          await dev.s3.send(new DeleteObjectCommand({ Bucket: INPUT_BUCKET, Key: key }));
          objects.delete(key);
          what = key;
          break;
        }
        case 'schedule':
          what = (await scheduledRun(dev)).split(':').at(-1) ?? '';
          break;
        case 'kill': {
          // In the middle of whatever is running: the runs it leaves are what a restart must finish.
          await sleep(Math.floor(random() * 2000));
          const running = (await listExecutions(dev, 'RUNNING')).length;
          const pid = dev.pid;
          dev.child.kill('SIGKILL');
          await dev.exited;
          logFault(faultsLog, 'kill', `pid ${pid}, ${running} execution(s) running`);
          leftUnfinished += running;
          generation++;
          const restartedAt = new Date(Date.now() - 1000);
          dev = await startDev(dir, env(), devLog);
          // sluice dev redrives the runs it left unfinished at start-up (issue 8); until it does, a scheduled run follows.
          await sleep(1500);
          let redriven = 0;
          for (const execution of await listExecutions(dev)) {
            if (!execution.startDate || execution.startDate < restartedAt || !execution.executionArn) continue;
            if (await isRedrive(dev, execution.executionArn)) redriven++;
          }
          what = `pid ${pid} with ${running} execution(s) running; restarted as pid ${dev.pid}`;
          if (running > 0 && redriven === 0) {
            await scheduledRun(dev);
            what += ', no redrive at start-up seen: a scheduled run follows';
          } else if (redriven > 0) what += `, ${redriven} redriven at start-up`;
          break;
        }
      }
      done[action]++;
      say(`[${run}/${options.runs}] ${action} ${what}`);
      await sleep(Math.floor(random() * 400));
    }

    say('waiting for the runs to end...');
    await waitIdle(dev, options.timeoutMinutes);
    let finalRuns = 0;
    for (;;) {
      finalRuns++;
      const outcome = await finalStatus(dev, await scheduledRun(dev));
      say(`final scheduled run: ${outcome.status}${outcome.error ? ` (${outcome.error})` : ''}`);
      await waitIdle(dev, options.timeoutMinutes);
      if (outcome.status === 'SUCCEEDED') break;
      if (finalRuns >= 3) throw new ChaosError('three final scheduled runs failed; see the dev log');
    }

    // What the tables must hold: the current version of every object, computed here.
    const columns: readonly ColumnSpec[] = pipeline.table.columns;
    const current: CurrentObject[] = [...objects].map(([key, written]) => ({
      key,
      versions: written.versions,
      rows: written.rows.map((row) => rowText(columns, row)),
      rejectedLines: written.rejectedLines,
    }));
    const table = pipeline.table.name;
    const names = columns.map((c) => c.name);
    const present: PresentRow[] = (
      await queryOrEmpty(dev, `SELECT ${names.join(', ')}, source_key, source_version FROM ${table}`)
    ).map((values) => ({
      key: values[names.length] ?? '',
      version: values[names.length + 1] ?? '',
      text: rowText(columns, Object.fromEntries(names.map((name, i) => [name, values[i] ?? null]))),
    }));
    const rows = compareTable(current, present);
    const rejects = compareRejects(
      current,
      (await queryOrEmpty(dev, `SELECT source_key, source_version, line_number FROM ${table}_rejects`)).map(
        ([key, version, line]): PresentReject => ({ key: key ?? '', version: version ?? '', line: Number(line) }),
      ),
    );
    const modelsTraffic = pipeline.derived.some((d) => d.name === 'daily_traffic');
    const traffic = modelsTraffic
      ? compareTraffic(
          expectedTraffic([...objects.values()].flatMap((o) => o.rows)),
          (
            await queryOrEmpty(
              dev,
              'SELECT day, path, requests, unique_users, server_errors, avg_latency_ms FROM daily_traffic',
            )
          ).map(
            ([day, path, requests, users, errors, latency]): TrafficRow => ({
              day: (day ?? '').slice(0, 10),
              path: path ?? '',
              requests: Number(requests),
              uniqueUsers: Number(users),
              serverErrors: Number(errors),
              avgLatencyMs: Number(latency),
            }),
          ),
        )
      : undefined;

    const executions = await listExecutions(dev);
    let redrives = 0;
    for (const execution of executions) {
      if (execution.executionArn && (await isRedrive(dev, execution.executionArn))) redrives++;
    }
    const byStatus: Record<string, number> = {};
    for (const e of executions) byStatus[e.status ?? '?'] = (byStatus[e.status ?? '?'] ?? 0) + 1;
    const injected = countFaultLog(faultsLog);
    const retries = countRetries(devLog);
    const retryTotal = Object.values(retries).reduce((n, r) => n + r, 0);
    const exact =
      rows.lost === 0 &&
      rows.duplicated === 0 &&
      rows.stale === 0 &&
      rows.unexpected === 0 &&
      rejects.missing + rejects.duplicated + rejects.unexpected === 0 &&
      (traffic?.wrong ?? 0) === 0;

    const list = (counts: Readonly<Record<string, number>>) =>
      Object.entries(counts)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ') || 'none';
    const figures = [
      `runs: ${options.runs} (${list(done)}; ${finalRuns} final scheduled run(s))`,
      `executions: ${executions.length} (${list(byStatus)})`,
      `faults injected: ${FAULT_KINDS.reduce((n, k) => n + injected[k], 0)} (${list(injected as Record<FaultKind, number>)})`,
      `retries: ${retryTotal} (${list(retries)})`,
      `runs left unfinished by kills: ${leftUnfinished}; redrives (executions with redriveOf): ${redrives}`,
      `rows expected: ${rows.expected} (checksum ${rows.expectedChecksum})`,
      `rows present: ${rows.present} (checksum ${rows.presentChecksum})`,
      `rows lost: ${rows.lost}`,
      `rows duplicated: ${rows.duplicated}`,
      `stale rows: ${rows.stale}`,
      `unexpected rows: ${rows.unexpected}`,
      `rejects of current versions: expected ${rejects.expected}, present ${rejects.present} (missing ${rejects.missing}, duplicated ${rejects.duplicated}, unexpected ${rejects.unexpected})`,
      traffic
        ? `daily_traffic (day, path) rows: expected ${traffic.expected}, present ${traffic.present}, wrong ${traffic.wrong}`
        : 'daily_traffic: not modelled (the pipeline has no such derived table)',
      ...(deletes ? [] : [`deletes: skipped (onDelete: ${onDelete})`]),
    ];
    say('');
    for (const line of figures) say(line);
    for (const line of [...rows.examples, ...(traffic?.examples ?? [])]) say(`  ${line}`);
    say(exact ? 'RESULT: exact (no row lost, duplicated or stale)' : 'RESULT: NOT exact');
    if (options.record) {
      const cpu = cpus();
      const block = [
        '',
        `### ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC: ${exact ? 'exact' : 'NOT exact'}`,
        '',
        `- command: \`${options.command}\` (seed ${options.seed})`,
        `- machine: ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, ${platform()} ${release()}, Node ${process.version}`,
        `- commit: ${commit()}`,
        `- faults: ${options.faults || 'none'}; chunk size ${CHUNK_SIZE}`,
        ...figures.map((line) => `- ${line}`),
        '',
      ];
      appendFileSync(join(REPO_ROOT, 'docs', 'reliability.md'), block.join('\n'));
      say('appended to docs/reliability.md');
    }
    stopDev();
    await dev.exited;
    if (exact && !options.keep && !options.dir) rmSync(dir, { recursive: true, force: true });
    else say(`runtime folder kept: ${dir} (dev log: ${devLog})`);
    return exact ? 0 : 1;
  } finally {
    stopDev();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    // Plain sentences for the user; a bug in the script itself still shows where it is.
    console.error(error instanceof ChaosError ? `chaos: ${error.message}` : error);
    process.exit(2);
  },
);
