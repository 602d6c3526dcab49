/**
 * `npm run bench:cold-start`: a fresh worker process to its first row, as a Lambda cold start.
 * The Work handler is bundled with esbuild the way CDK's NodejsFunction bundles it
 * (infra/handlers.ts: ESM, node24, minified, source map, the AWS SDK bundled, the DuckDB
 * binding left to node_modules). Each of `--runs` (default 5) fresh Node processes, started with
 * the Lambda's NODE_OPTIONS and the handler's environment, imports the bundle and calls the
 * handler once with a one-row chunk on the embedded S3 server (in this process): DuckDB starts,
 * reads the row, writes its Parquet. Timed from the spawn to the handler's answer; target <= 500 ms.
 * Prints the bundle's size and the size of what the zip holds besides (the DuckDB packages).
 */
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { build } from 'esbuild';
import { ENV } from '../functions/catalog.ts';
import { loadPipelines, type Pipeline } from '../functions/pipeline/definition.ts';
import { splitIntoChunks } from '../functions/planning/planner.ts';
import { localS3Client } from '../runtime/s3-client.ts';
import { LOCAL_BUCKETS, startS3Server } from '../runtime/s3-server.ts';
import { benchDir, median, report, root, runNode, spread } from './report.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    'no-append': { type: 'boolean', default: false },
  },
});
const TARGET_MS = 500;
const dir = join(benchDir, 'cold-start');
/** The banner infra/handlers.ts gives ESM bundles, so that bundled CommonJS can `require`. */
const REQUIRE_SHIM =
  "import { createRequire as __sluiceCreateRequire } from 'node:module'; const require = __sluiceCreateRequire(import.meta.url);";

/** The driver each fresh process runs: import the bundle, call the handler once, say when. */
const DRIVER = `
const imported0 = performance.now();
const { handler } = await import('./work.mjs');
const imported = performance.now();
const summary = await handler(JSON.parse(process.env.BENCH_CHUNK));
const answered = performance.now();
console.log(JSON.stringify({ boot: imported0, import: imported - imported0, call: answered - imported, rows: summary.rowsRead ?? summary.rows ?? null }));
`;

const sizeOf = (path: string): number => {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.size;
  return readdirSync(path).reduce((sum, name) => sum + sizeOf(join(path, name)), 0);
};
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

interface Sample {
  readonly total: number;
  readonly boot: number;
  readonly import: number;
  readonly call: number;
}

async function fresh(env: NodeJS.ProcessEnv): Promise<Sample> {
  const started = performance.now();
  const { code, stdout, stderr } = await runNode([join(dir, 'driver.mjs')], { cwd: dir, env });
  const total = performance.now() - started;
  const line = stdout.trim().split('\n').at(-1) ?? '';
  if (code !== 0 || !line.startsWith('{')) throw new Error(`the fresh worker failed (${code}):\n${stderr}`);
  return { total, ...(JSON.parse(line) as Omit<Sample, 'total'>) };
}

async function main(): Promise<void> {
  const runs = Number(values.runs);
  if (!(runs >= 1)) throw new Error(`--runs "${values.runs}" is not a positive number`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const bundle = join(dir, 'work.mjs');
  await build({
    entryPoints: [join(root, 'functions/handlers/work.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    mainFields: ['module', 'main'],
    banner: { js: REQUIRE_SHIM },
    minify: true,
    sourcemap: true,
    sourcesContent: false,
    external: ['@duckdb/node-api'],
    logLevel: 'warning',
  });
  writeFileSync(join(dir, 'driver.mjs'), DRIVER);
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const duckdbPackages = readdirSync(join(root, 'node_modules/@duckdb')).map((name) =>
    join(root, 'node_modules/@duckdb', name),
  );
  const duckdbBytes = duckdbPackages.reduce((sum, path) => sum + sizeOf(path), 0);

  const server = await startS3Server({ dir: join(dir, 'runtime'), port: 0 });
  try {
    const pipeline = loadPipelines(join(root, 'pipelines')).get('access-logs') as Pipeline;
    const key = `${pipeline.input.prefix}cold-start.csv`;
    const body =
      'event_time,user_id,session_id,method,path,status,bytes_sent,latency_ms,user_agent,country\n' +
      '2024-03-01T00:00:01Z,u1,s1,GET,/,200,512,12.5,bench,DE\n';
    const s3 = localS3Client(server.endpoint);
    const put = await s3.send(new PutObjectCommand({ Bucket: LOCAL_BUCKETS.input, Key: key, Body: body }));
    s3.destroy();
    const object = { key, size: Buffer.byteLength(body), version: (put.ETag ?? '').replaceAll('"', '') };
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      NODE_OPTIONS: '--enable-source-maps',
      AWS_ENDPOINT_URL_S3: server.endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'bench',
      AWS_SECRET_ACCESS_KEY: 'bench',
      [ENV.s3ForcePathStyle]: 'true',
      [ENV.inputBucket]: LOCAL_BUCKETS.input,
      [ENV.workingBucket]: LOCAL_BUCKETS.working,
      [ENV.warehouseBucket]: LOCAL_BUCKETS.warehouse,
      [ENV.pipelinesDir]: join(root, 'pipelines'),
      [ENV.tmpDir]: join(dir, 'tmp'),
    };
    const samples: Sample[] = [];
    for (let run = 1; run <= runs; run++) {
      const chunk = splitIntoChunks(
        [{ ...object, columns: pipeline.schema.map((c) => c.name) }],
        pipeline,
        pipeline.processing.chunkSize,
        `bench-cold-start-${run}`,
      )[0];
      const sample = await fresh({ ...env, BENCH_CHUNK: JSON.stringify(chunk) });
      samples.push(sample);
      console.log(
        `run ${run}: ${sample.total.toFixed(0)} ms (Node start ${sample.boot.toFixed(0)}, bundle import ${sample.import.toFixed(0)}, first call with DuckDB's start ${sample.call.toFixed(0)})`,
      );
    }
    const totals = samples.map((s) => s.total);
    const lines = [
      `Work handler bundled as CDK does (esbuild ESM, node24, minified, AWS SDK bundled): ${mb(statSync(bundle).size)} of JavaScript (+ ${mb(statSync(`${bundle}.map`).size)} source map), plus ${mb(duckdbBytes)} of @duckdb packages in node_modules (this machine's ${process.arch} binding)`,
      `fresh process to the first row (spawn to the answer of a one-row chunk; ${runs} runs): ${spread(totals, 'ms', 0)} (target <= ${TARGET_MS} ms): ${median(totals) <= TARGET_MS ? 'met' : 'not met'}`,
      `of which (medians): Node start ${median(samples.map((s) => s.boot)).toFixed(0)} ms, bundle import ${median(samples.map((s) => s.import)).toFixed(0)} ms, first call (DuckDB start, GET, parse, Parquet, PUTs) ${median(samples.map((s) => s.call)).toFixed(0)} ms`,
    ];
    report('bench:cold-start', lines, !values['no-append']);
  } finally {
    await server.close();
  }
}

await main();
