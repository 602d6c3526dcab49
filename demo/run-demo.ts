/**
 * `npm run demo`: from a clean state, generates a seeded sample of access logs (three days,
 * three files, one gzip, one big enough to split into several chunks, a few malformed rows),
 * uploads it through the S3 API of the embedded runtime, waits for the three runs the
 * uploads start (the ASL file, the real handlers, DuckDB as the warehouse), and prints the
 * run summaries, the row accounting and the top of daily_traffic.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { printSummary, printTable } from '../cli/format.ts';
import { startEmbedded } from '../runtime/dev.ts';
import type { ExecutionRecord } from '../runtime/executions.ts';
import { toRunRow } from '../runtime/executions.ts';
import { uploadFile } from '../runtime/upload.ts';
import { writeSample } from './generate.ts';

const root = resolve(import.meta.dirname, '..');
const dir = join(root, '.sluice-demo');
// Small chunks so that the 14 MB file splits into several byte ranges, as a large file would at 64 MB.
process.env.SLUICE_CHUNK_SIZE ??= '4MB';

const SAMPLES = [
  { name: '2024-03-01.csv', day: '2024-03-01', rows: 120_000, malformed: 6, seed: 1 },
  { name: '2024-03-02.csv.gz', day: '2024-03-02', rows: 60_000, malformed: 4, seed: 2 },
  { name: '2024-03-03.csv', day: '2024-03-03', rows: 40_000, malformed: 3, seed: 3 },
] as const;

async function main(): Promise<number> {
  const started = performance.now();
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'samples'), { recursive: true });
  const files = await Promise.all(
    SAMPLES.map((s) => writeSample(join(dir, 'samples', s.name), s.day, s.rows, s.malformed, s.seed)),
  );
  const totalRows = files.reduce((n, f) => n + f.rows, 0);
  console.log(
    `generated ${files.length} files, ${totalRows} rows (${files.reduce((n, f) => n + f.malformed, 0)} malformed) in ${dir}/samples`,
  );

  const runs = new Map<string, Promise<ExecutionRecord>>();
  const embedded = await startEmbedded({
    dir,
    repoRoot: root,
    port: 0,
    onExecution: (event, execution) => runs.set(event.key, execution),
  });
  try {
    console.log(`embedded S3 API on ${embedded.endpoint}; uploading to s3://sluice-input/access-logs/`);
    const keys = SAMPLES.map((s) => `access-logs/${s.name}`);
    await Promise.all(
      SAMPLES.map((s, i) =>
        uploadFile(embedded.runtime.s3, 'sluice-input', keys[i] as string, join(dir, 'samples', s.name)),
      ),
    );
    for (let i = 0; i < 200 && keys.some((k) => !runs.has(k)); i++) await new Promise((r) => setTimeout(r, 50));
    const records = await Promise.all(
      keys.map((k) => runs.get(k) ?? Promise.reject(new Error(`no run started for ${k}`))),
    );
    for (const record of records) printSummary(toRunRow(record));

    const [loaded] = await embedded.runtime.warehouse.query('SELECT count(*) AS n FROM access_logs');
    const [rejected] = await embedded.runtime.warehouse.query('SELECT count(*) AS n FROM access_logs_rejects');
    const n = (row: Record<string, unknown> | undefined) => Number(row?.n ?? 0);
    console.log(
      `\naccess_logs ${n(loaded)} rows + access_logs_rejects ${n(rejected)} rows = ${n(loaded) + n(rejected)} of ${totalRows} rows in the files`,
    );
    console.log('\nrejected rows (first 5):');
    printTable(
      await embedded.runtime.warehouse.query(
        'SELECT source_key, line_number, column_name, reason FROM access_logs_rejects ORDER BY source_key, line_number LIMIT 5',
      ),
    );
    console.log('\ndaily_traffic, the three busiest paths of each day:');
    printTable(
      await embedded.runtime.warehouse.query(
        `SELECT day, path, requests, unique_users, server_errors, round(avg_latency_ms, 1) AS avg_latency_ms
       FROM daily_traffic QUALIFY row_number() OVER (PARTITION BY day ORDER BY requests DESC) <= 3
       ORDER BY day, requests DESC`,
      ),
    );
    const ok = records.every((r) => r.status === 'SUCCEEDED') && n(loaded) + n(rejected) === totalRows;
    console.log(`\n${ok ? 'demo SUCCEEDED' : 'demo FAILED'} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    console.log('Look around (the same data, with or without `npx sluice dev`):');
    console.log('  npx sluice runs --dir .sluice-demo');
    console.log('  npx sluice query "SELECT * FROM daily_traffic ORDER BY requests DESC LIMIT 5" --dir .sluice-demo');
    return ok ? 0 : 1;
  } finally {
    await embedded.stop();
  }
}

process.exitCode = await main();
