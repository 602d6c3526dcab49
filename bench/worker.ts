/**
 * `npm run bench:worker`: the partition worker against plain DuckDB and a JavaScript
 * baseline, side by side in one run, on the same generated file (>= 200 MB).
 *
 *   worker   - the real worker: ranged GETs from the embedded S3 endpoint, spool, DuckDB
 *              parse + checks + transform, zstd Parquet and rejects written back to S3
 *   duckdb   - `COPY (SELECT * FROM read_csv(<local file>, typed columns)) TO parquet`
 *   csv-parse - csv-parse streaming the local file, converting each field to its type
 *
 * Each case runs in its own child process (so its peak RSS is its own), `--runs` times
 * (default 3), at the same DuckDB thread count (`--threads`, default 1: a 1,769 MB Lambda
 * has one vCPU). Prints MB/s, medians, ratios and the worker's peak RSS, and appends
 * the result to docs/benchmarks.md.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, createReadStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import { parse } from 'csv-parse';
import type { Config } from '../functions/config.ts';
import { loadPipelines, type Pipeline } from '../functions/pipeline/definition.ts';
import { duckType } from '../functions/pipeline/duck-types.ts';
import { splitIntoChunks } from '../functions/planning/planner.ts';
import { createS3Client, S3ObjectStore } from '../functions/storage/s3-store.ts';
import { processChunk } from '../functions/worker/worker.ts';
import { localS3Client } from '../runtime/s3-client.ts';
import { startS3Server } from '../runtime/s3-server.ts';
import { uploadFile } from '../runtime/upload.ts';
import { runNode } from './report.ts';

const root = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    case: { type: 'string' },
    rows: { type: 'string', default: '1900000' },
    runs: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1' },
    'chunk-size': { type: 'string', default: '64MB' },
    endpoint: { type: 'string' },
    file: { type: 'string' },
    'no-append': { type: 'boolean', default: false },
  },
});
const dir = join(root, '.bench');
const pipeline = loadPipelines(join(root, 'pipelines')).get('access-logs') as Pipeline;
const KEY = 'access-logs/bench.csv';

interface Measurement {
  readonly seconds: number;
  readonly rows: number;
  readonly maxRssMb: number;
  /** CPU seconds of the case's process (user + system): steadier than wall time on a shared machine. */
  readonly cpuSeconds: number;
}

/** Child side: run one case once and print its measurement as JSON. */
async function runCase(name: string): Promise<Measurement> {
  const file = values.file as string;
  const threads = Number(values.threads);
  const started = performance.now();
  let rows = 0;
  if (name === 'worker') {
    const config: Config = {
      inputBucket: 'sluice-input',
      workingBucket: 'sluice-working',
      warehouseBucket: 'sluice-warehouse',
      pipelinesDir: join(root, 'pipelines'),
      tmpDir: join(dir, 'tmp'),
      chunkSizeOverride: undefined,
    };
    mkdirSync(config.tmpDir, { recursive: true });
    const store = new S3ObjectStore(createS3Client());
    const info = await store.head(config.inputBucket, KEY);
    if (!info) throw new Error(`${KEY} is missing from the bench S3`);
    const { parseByteSize } = await import('../functions/pipeline/size.ts');
    const chunks = splitIntoChunks([info], pipeline, parseByteSize(values['chunk-size'] as string), 'bench');
    for (const chunk of chunks) rows += (await processChunk(chunk, { store, config, pipeline })).rowsRead;
  } else if (name === 'duckdb') {
    const instance = await DuckDBInstance.create(':memory:', { threads: String(threads) });
    const c = await instance.connect();
    const columns = pipeline.schema.map((col) => `'${col.name}': '${duckType(col)}'`).join(', ');
    const out = join(dir, 'duckdb.parquet');
    const reader = await c.runAndReadAll(
      `COPY (SELECT * FROM read_csv('${file}', header = true, auto_detect = false, columns = {${columns}}, ignore_errors = true))
       TO '${out}' (FORMAT parquet, COMPRESSION zstd)`,
    );
    rows = Number(reader.getRows()[0]?.[0] ?? 0);
    c.closeSync();
  } else if (name === 'csv-parse') {
    const parser = createReadStream(file).pipe(parse({ from_line: 2, relax_column_count: true }));
    let typed = 0;
    for await (const record of parser as AsyncIterable<string[]>) {
      // The same typing the worker does, by hand: timestamps, integers, doubles.
      const t = Date.parse(record[0] ?? '');
      const status = Number.parseInt(record[5] ?? '', 10);
      const bytes = BigInt(/^[0-9]+$/.test(record[6] ?? '') ? (record[6] as string) : '0');
      const latency = Number(record[7]);
      // Every row counts (as the worker's do, loaded or rejected); `typed` keeps the conversions from being optimised away.
      if (!Number.isNaN(t + status + latency) && bytes >= 0n) typed++;
      rows++;
    }
    if (typed === 0) throw new Error('csv-parse typed no row: the baseline is broken');
  } else {
    throw new Error(`unknown case ${name}`);
  }
  const seconds = (performance.now() - started) / 1000;
  const usage = process.resourceUsage();
  return { seconds, rows, maxRssMb: usage.maxRSS / 1024, cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6 };
}

async function runChild(name: string, file: string, env: NodeJS.ProcessEnv): Promise<string> {
  const args = [import.meta.filename, '--case', name, '--file', file, '--threads', values.threads as string];
  const { code, stdout, stderr } = await runNode([...args, '--chunk-size', values['chunk-size'] as string], { env });
  if (code !== 0) throw new Error(`case ${name} failed:\n${stderr}`);
  return stdout;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function main(): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `access-logs-${values.rows}.csv`);
  if (!existsSync(file)) {
    console.log(`generating ${values.rows} rows into ${file} ...`);
    // Imported here: the worker cases need no generator.
    const { writeSample } = await import('../demo/generate.ts');
    await writeSample(file, '2024-03-01', Number(values.rows), 20, 42);
  }
  const mb = statSync(file).size / 1e6;
  if (mb < 200) console.warn(`warning: the file is ${mb.toFixed(0)} MB, under the 200 MB the comparison calls for`);
  const server = await startS3Server({ dir: join(dir, 'runtime'), port: 0 });
  const env = {
    ...process.env,
    AWS_ENDPOINT_URL_S3: server.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    SLUICE_S3_FORCE_PATH_STYLE: 'true',
    SLUICE_DUCKDB_THREADS: values.threads,
  };
  try {
    await uploadFile(localS3Client(server.endpoint), 'sluice-input', KEY, file);
    const cases = ['worker', 'duckdb', 'csv-parse'];
    const results: Record<string, Measurement[]> = Object.fromEntries(cases.map((c) => [c, []]));
    for (let run = 0; run < Number(values.runs); run++) {
      // Interleaved, so that a slow moment of the machine hits every case alike.
      for (const name of cases) {
        // Asynchronous: the embedded S3 server lives in this process and must keep serving.
        const child = await runChild(name, file, env);
        const m = JSON.parse(child.trim().split('\n').at(-1) as string) as Measurement;
        results[name]?.push(m);
        console.log(
          `run ${run + 1} ${name.padEnd(9)} ${(mb / m.seconds).toFixed(1).padStart(7)} MB/s  ${m.seconds.toFixed(2)} s  CPU ${m.cpuSeconds.toFixed(2)} s  rows ${m.rows}  peak RSS ${m.maxRssMb.toFixed(0)} MB`,
        );
      }
    }
    const speed = (name: string) => median((results[name] ?? []).map((m) => mb / m.seconds));
    const cpu = (name: string) => median((results[name] ?? []).map((m) => m.cpuSeconds));
    const rss = median((results.worker ?? []).map((m) => m.maxRssMb));
    const chunkMb = (await import('../functions/pipeline/size.ts')).parseByteSize(values['chunk-size'] as string) / 1e6;
    const rssLimit = 3 * chunkMb + 256;
    const lines = [
      `file ${mb.toFixed(0)} MB, ${values.rows} rows; DuckDB threads ${values.threads}; chunk size ${values['chunk-size']}; median of ${values.runs}`,
      `worker (S3 -> DuckDB -> Parquet on S3): ${speed('worker').toFixed(1)} MB/s`,
      `plain DuckDB COPY read_csv -> parquet:  ${speed('duckdb').toFixed(1)} MB/s`,
      `csv-parse JavaScript baseline:          ${speed('csv-parse').toFixed(1)} MB/s`,
      `worker / DuckDB COPY: ${(speed('worker') / speed('duckdb')).toFixed(2)} (target >= 0.8)`,
      `by CPU time (process, whole case): worker ${cpu('worker').toFixed(2)} s, DuckDB COPY ${cpu('duckdb').toFixed(2)} s, ratio ${(cpu('duckdb') / cpu('worker')).toFixed(2)}`,
      `worker / csv-parse:   ${(speed('worker') / speed('csv-parse')).toFixed(2)} (target >= 4)`,
      `worker peak RSS: ${rss.toFixed(0)} MB (target <= 3 x chunk + 256 MB = ${rssLimit.toFixed(0)} MB)`,
    ];
    console.log(`\n${lines.join('\n')}`);
    if (!values['no-append']) {
      const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
      const commit = (() => {
        try {
          return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
        } catch {
          return 'unknown';
        }
      })();
      appendFileSync(
        join(root, 'docs/benchmarks.md'),
        `\n## bench:worker, ${new Date().toISOString().slice(0, 16)}Z, commit ${commit}\n\nMachine: ${machine}\n\n${lines.map((l) => `- ${l}`).join('\n')}\n`,
      );
      console.log('appended to docs/benchmarks.md');
    }
  } finally {
    await server.close();
  }
}

if (values.case) {
  console.log(JSON.stringify(await runCase(values.case)));
} else {
  await main();
}
