/**
 * `npm run bench:e2e`: `sluice run access-logs --file` of a generated access-log file (about
 * 220 MB, kept in `.bench/`), from a fresh `--dir` each time, against plain DuckDB
 * `COPY (SELECT * FROM read_csv(...)) TO 'x.parquet'` of the same file with DuckDB's default
 * threads. The two alternate, `--runs` times (default 3); each is a fresh process timed from
 * its start to its exit. Prints medians, min and max, the ratio (target <= 2.0x) and where the
 * run's time went, from the execution's history (Step Functions GetExecutionHistory through
 * the embedded runtime's API, read after the run):
 *
 *   start    process start to the embedded runtime up (the CLI's first log line)
 *   upload   to the execution's start (the upload's last part makes the object, which starts it)
 *   plan     execution start to the Process state (Plan, HasChunks)
 *   process  the Process Distributed Map (the workers)
 *   verify   AcquireLease and Verify
 *   load     the Load Map's setup and load statements
 *   derive   its derive statements
 *   finish   Finish, ReleaseLease, and the CLI's summary and exit
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { GetExecutionHistoryCommand, type HistoryEvent, ListExecutionsCommand } from '@aws-sdk/client-sfn';
import { DuckDBInstance } from '@duckdb/node-api';
import { openTarget } from '../cli/target.ts';
import { loadPipelines, type Pipeline } from '../functions/pipeline/definition.ts';
import { duckType } from '../functions/pipeline/duck-types.ts';
import { accessLogFile, benchDir, median, report, root, spread } from './report.ts';

const { values } = parseArgs({
  options: {
    case: { type: 'string' },
    file: { type: 'string' },
    rows: { type: 'string', default: '1900000' },
    runs: { type: 'string', default: '3' },
    'no-append': { type: 'boolean', default: false },
  },
});

const PHASES = ['start', 'upload', 'plan', 'process', 'verify', 'load', 'derive', 'finish'] as const;
type Phase = (typeof PHASES)[number];
const TARGET_RATIO = 2.0;

/** The baseline, in its own process: DuckDB's default threads, the pipeline's columns typed, zstd Parquet. */
async function duckdbCopy(file: string): Promise<void> {
  const pipeline = loadPipelines(join(root, 'pipelines')).get('access-logs') as Pipeline;
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  const columns = pipeline.schema.map((column) => `'${column.name}': '${duckType(column)}'`).join(', ');
  await connection.run(
    `COPY (SELECT * FROM read_csv('${file}', header = true, auto_detect = false, columns = {${columns}}, ignore_errors = true))
     TO '${join(benchDir, 'e2e-duckdb.parquet')}' (FORMAT parquet, COMPRESSION zstd)`,
  );
  connection.closeSync();
  instance.closeSync();
}

interface Timed {
  readonly seconds: number;
  /** Epoch ms of the process start, of its end, and of the stderr line that says the embedded runtime is up. */
  readonly spawnedAt: number;
  readonly exitedAt: number;
  readonly runtimeUpAt?: number;
}

function timedChild(args: readonly string[], what: string): Promise<Timed> {
  const spawnedAt = Date.now();
  const started = performance.now();
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, SLUICE_DEBUG: '' } });
  let runtimeUpAt: number | undefined;
  let output = '';
  child.stdout.on('data', (b: Buffer) => {
    output += b.toString();
  });
  child.stderr.on('data', (b: Buffer) => {
    const text = b.toString();
    if (runtimeUpAt === undefined && /using the embedded runtime|embedded runtime at/.test(text))
      runtimeUpAt = Date.now();
    output += text;
  });
  return new Promise((resolve, reject) => {
    child.on('close', (code) => {
      const seconds = (performance.now() - started) / 1000;
      if (code !== 0) reject(new Error(`${what} exited with ${code}:\n${output.slice(-3000)}`));
      else resolve({ seconds, spawnedAt, exitedAt: Date.now(), ...(runtimeUpAt ? { runtimeUpAt } : {}) });
    });
  });
}

/** The run's history, read through the Step Functions API of an embedded runtime on the run's folder. */
async function history(dir: string): Promise<HistoryEvent[]> {
  const session = await openTarget({ target: 'local', dir, repoRoot: root, log: () => {} });
  try {
    const listed = await session.sfn.send(
      new ListExecutionsCommand({ stateMachineArn: session.names.stateMachineArn }),
    );
    const executionArn = listed.executions?.[0]?.executionArn;
    if (!executionArn) throw new Error(`no execution in ${dir}`);
    const events: HistoryEvent[] = [];
    let nextToken: string | undefined;
    do {
      const page = await session.sfn.send(
        new GetExecutionHistoryCommand({ executionArn, nextToken, maxResults: 1000 }),
      );
      events.push(...(page.events ?? []));
      nextToken = page.nextToken;
    } while (nextToken);
    return events;
  } finally {
    await session.close();
  }
}

/** Seconds per phase; they add up to the process's wall time. */
function phases(run: Timed, events: readonly HistoryEvent[]): Record<Phase, number> {
  const at = (event: HistoryEvent | undefined) => event?.timestamp?.getTime();
  const entered = (name: string) =>
    at(events.find((e) => e.type?.endsWith('StateEntered') && e.stateEnteredEventDetails?.name === name));
  const firstDerive = events.find((e) => {
    if (e.type !== 'ParallelStateEntered') return false;
    try {
      return (JSON.parse(e.stateEnteredEventDetails?.input ?? '{}') as { step?: string }).step === 'derive';
    } catch {
      return false;
    }
  });
  const started = at(events.find((e) => e.type === 'ExecutionStarted')) ?? run.spawnedAt;
  const up = run.runtimeUpAt ?? started;
  const finish = entered('Finish') ?? run.exitedAt;
  const load = entered('Load') ?? finish;
  const marks: Record<Phase, [number, number]> = {
    start: [run.spawnedAt, up],
    upload: [up, started],
    plan: [started, entered('Process') ?? started],
    process: [entered('Process') ?? started, entered('AcquireLease') ?? load],
    verify: [entered('AcquireLease') ?? load, load],
    load: [load, at(firstDerive) ?? finish],
    derive: [at(firstDerive) ?? finish, finish],
    finish: [finish, run.exitedAt],
  };
  return Object.fromEntries(PHASES.map((p) => [p, Math.max(0, (marks[p][1] - marks[p][0]) / 1000)])) as Record<
    Phase,
    number
  >;
}

async function main(): Promise<void> {
  const file = await accessLogFile(Number(values.rows));
  const mb = statSync(file).size / 1e6;
  const runs = Number(values.runs);
  if (!(runs >= 1)) throw new Error(`--runs "${values.runs}" is not a positive number`);
  const runDir = join(benchDir, 'e2e-run');
  mkdirSync(benchDir, { recursive: true });
  const sluice: number[] = [];
  const duckdb: number[] = [];
  const split: Record<Phase, number>[] = [];
  for (let run = 1; run <= runs; run++) {
    // Alternating which goes first, so that a slow moment of the machine hits both alike.
    const order = run % 2 ? (['duckdb', 'sluice'] as const) : (['sluice', 'duckdb'] as const);
    for (const name of order) {
      if (name === 'duckdb') {
        const timed = await timedChild([import.meta.filename, '--case', 'duckdb', '--file', file], 'DuckDB COPY');
        duckdb.push(timed.seconds);
        console.log(`run ${run} duckdb COPY   ${timed.seconds.toFixed(2)} s`);
      } else {
        rmSync(runDir, { recursive: true, force: true });
        const timed = await timedChild(
          [join(root, 'cli/sluice.ts'), 'run', 'access-logs', '--file', file, '--dir', runDir],
          'sluice run',
        );
        sluice.push(timed.seconds);
        const phase = phases(timed, await history(runDir));
        split.push(phase);
        console.log(
          `run ${run} sluice run    ${timed.seconds.toFixed(2)} s  (${PHASES.map((p) => `${p} ${phase[p].toFixed(2)}`).join(', ')})`,
        );
      }
    }
  }
  const ratio = median(sluice) / median(duckdb);
  const lines = [
    `file ${mb.toFixed(0)} MB, ${values.rows} rows; ${runs} runs of each, alternating; each a fresh process (sluice: a fresh --dir, the embedded runtime in the CLI's process)`,
    `sluice run access-logs --file: ${spread(sluice)}`,
    `plain DuckDB COPY read_csv -> zstd Parquet, default threads: ${spread(duckdb)}`,
    `sluice / DuckDB: ${ratio.toFixed(1)}x (target <= ${TARGET_RATIO.toFixed(1)}x)`,
    `where the run's time went (medians, s): ${PHASES.map((p) => `${p} ${median(split.map((s) => s[p])).toFixed(2)}`).join(', ')}`,
  ];
  report('bench:e2e', lines, !values['no-append']);
}

if (values.case === 'duckdb') {
  await duckdbCopy(values.file as string);
} else {
  await main();
}
