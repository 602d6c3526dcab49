/**
 * Loads exactly once (docs/loads.md), end to end on the embedded runtime: the real S3 API,
 * the ASL file, the handlers and the DuckDB warehouse. A copy of the access-logs pipeline with
 * `onDelete: remove` and a tolerated failure percentage.
 */
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DeleteObjectCommand, DeleteObjectsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunRecord } from '../../functions/contracts.ts';
import { S3ObjectStore } from '../../functions/storage/s3-store.ts';
import { type Embedded, startEmbedded } from '../../runtime/dev.ts';
import type { ExecutionRecord } from '../../runtime/executions.ts';
import { localS3Client } from '../../runtime/s3-client.ts';
import { startS3Server } from '../../runtime/s3-server.ts';
import { uploadFile } from '../../runtime/upload.ts';
import { HEADER, logRow } from '../support/fixtures.ts';
import { tempDir } from '../support/temp.ts';

process.env.SLUICE_CHUNK_SIZE = '8KB';

const REPO_ROOT = join(import.meta.dirname, '../..');
const root = tempDir('loads-');
const dir = join(root, '.sluice');
mkdirSync(join(root, 'pipelines'));
symlinkSync(join(REPO_ROOT, 'state-machines'), join(root, 'state-machines'));
symlinkSync(join(REPO_ROOT, 'functions'), join(root, 'functions'));
const definition = readFileSync(join(REPO_ROOT, 'pipelines', 'access-logs.yaml'), 'utf8')
  .replace('toleratedFailurePercentage: 0', 'toleratedFailurePercentage: 60')
  .replace('onDelete: keep', 'onDelete: remove');
writeFileSync(join(root, 'pipelines', 'access-logs.yaml'), definition);
writeFileSync(
  join(root, 'pipelines', 'access-logs.tables.json'),
  readFileSync(join(REPO_ROOT, 'pipelines', 'access-logs.tables.json')),
);

let embedded: Embedded;
/** The runs object events started, by `created:<key>` and `deleted:<key>`. */
const runs = new Map<string, Promise<ExecutionRecord>>();

async function start(): Promise<void> {
  embedded = await startEmbedded({
    dir,
    repoRoot: root,
    port: 0,
    log: () => {},
    onExecution: (event, execution) => runs.set(`${'etag' in event ? 'created' : 'deleted'}:${event.key}`, execution),
  });
}

async function waitForRun(name: string): Promise<ExecutionRecord> {
  for (let i = 0; i < 200 && !runs.has(name); i++) await new Promise((r) => setTimeout(r, 50));
  const run = runs.get(name);
  if (!run) throw new Error(`no run started for ${name}`);
  return run;
}

async function upload(key: string, body: string): Promise<ExecutionRecord> {
  const file = join(dir, 'upload.tmp');
  writeFileSync(file, body);
  runs.delete(`created:${key}`);
  await uploadFile(embedded.runtime.s3, 'sluice-input', key, file);
  return waitForRun(`created:${key}`);
}

const query = (sql: string) => embedded.runtime.warehouse.query(sql);
const count = async (sql: string) => Number((await query(sql))[0]?.n);
const csv = (rows: readonly string[]) => `${HEADER}\n${rows.join('\n')}\n`;
const runRecord = (id: string) =>
  new S3ObjectStore(embedded.runtime.s3).getJson<RunRecord>('sluice-working', `runs/access-logs/${id}/run.json`);

/** daily_traffic as it is, and as recomputed from access_logs: equal when every derived day is exact. */
async function derivedAndRecomputed() {
  const derived = await query(
    'SELECT CAST("day" AS VARCHAR) AS d, path, requests::INTEGER AS n FROM daily_traffic ORDER BY 1, 2',
  );
  const recomputed = await query(
    'SELECT CAST(CAST(event_time AS DATE) AS VARCHAR) AS d, path, count(*)::INTEGER AS n FROM access_logs GROUP BY 1, 2 ORDER BY 1, 2',
  );
  return { derived, recomputed };
}

beforeAll(async () => {
  await start();
});
afterAll(async () => {
  await embedded.stop();
  rmSync(root, { recursive: true, force: true });
});

describe('replace: a new version of an object replaces its rows in one load', () => {
  const key = 'access-logs/replaced.csv';
  // Version 1: days 2024-03-01..03 (logRow spreads rows over three days), one rejected row.
  const v1 = Array.from({ length: 90 }, (_, i) => logRow(i));
  v1[10] = logRow(10, { status: 'x' });
  // Version 2: days 2024-03-02 and 2024-03-04 only, other paths, no rejected row.
  const v2 = Array.from({ length: 40 }, (_, i) =>
    logRow(i, { event_time: `2024-03-0${i % 2 ? 2 : 4}T10:00:00Z`, path: `/v2/${i % 3}` }),
  );

  it('keeps only the new version: rows, rejects and every day daily_traffic had from either', async () => {
    expect(await upload(key, csv(v1))).toMatchObject({
      status: 'SUCCEEDED',
      output: { rowsLoaded: 89, rowsRejected: 1 },
    });
    expect(await count(`SELECT count(*) AS n FROM access_logs_rejects WHERE source_key = '${key}'`)).toBe(1);

    const replaced = await upload(key, csv(v2));

    expect(replaced).toMatchObject({ status: 'SUCCEEDED', output: { rowsLoaded: 40, rowsRejected: 0 } });
    expect(
      await query(
        `SELECT count(*)::INTEGER AS n, count(DISTINCT source_version)::INTEGER AS versions FROM access_logs`,
      ),
    ).toEqual([{ n: 40, versions: 1 }]);
    expect(await count('SELECT count(*) AS n FROM access_logs_rejects')).toBe(0);
    const { derived, recomputed } = await derivedAndRecomputed();
    expect(derived).toEqual(recomputed);
    expect(derived.map((r) => r.d)).not.toContain('2024-03-01');
  });

  it('adds nothing when the same version is loaded again after its ledger marker was lost (fails if the load were a plain INSERT)', async () => {
    const before = await query('SELECT source_key, source_version, source_offset FROM access_logs ORDER BY 1, 2, 3');
    // A crash between Load and Finish: the rows are in the table, the ledger does not say so.
    const listed = await embedded.runtime.s3.send(
      new ListObjectsV2Command({ Bucket: 'sluice-working', Prefix: 'loaded/access-logs/' }),
    );
    const markers = (listed.Contents ?? []).map((o) => ({ Key: o.Key as string }));
    expect(markers.length).toBe(1);
    await embedded.runtime.s3.send(
      new DeleteObjectsCommand({ Bucket: 'sluice-working', Delete: { Objects: markers } }),
    );

    const again = await embedded.runtime.startExecution({
      pipeline: 'access-logs',
      trigger: 'object',
      bucket: 'sluice-input',
      key,
    });

    expect(again).toMatchObject({ status: 'SUCCEEDED', output: { inputs: 1, rowsLoaded: 40 } });
    expect(await query('SELECT source_key, source_version, source_offset FROM access_logs ORDER BY 1, 2, 3')).toEqual(
      before,
    );
  });

  it('redrive: a run with redriveOf plans the request again, adds nothing, and records what it continues', async () => {
    const before = await count('SELECT count(*) AS n FROM access_logs');

    const redrive = await embedded.runtime.startExecution({
      pipeline: 'access-logs',
      trigger: 'object',
      bucket: 'sluice-input',
      key,
      redriveOf: 'failed-run-1',
    });

    expect(redrive).toMatchObject({ status: 'SUCCEEDED', output: { inputs: 0, redriveOf: 'failed-run-1' } });
    expect((await runRecord(redrive.id))?.redriveOf).toBe('failed-run-1');
    expect(await count('SELECT count(*) AS n FROM access_logs')).toBe(before);
  });
});

describe('backfill', () => {
  it('without reload, rebuilds the derived days of the window and loads nothing', async () => {
    const rows = await query('SELECT source_key, source_offset FROM access_logs ORDER BY 1, 2');
    await embedded.runtime.warehouse.execute('DELETE FROM daily_traffic');

    const run = await embedded.runtime.startExecution({
      pipeline: 'access-logs',
      trigger: 'backfill',
      from: '2024-03-01',
      to: '2024-03-04',
    });

    expect(run).toMatchObject({ status: 'SUCCEEDED', output: { chunks: 0, inputs: 0, rowsLoaded: 0 } });
    const { derived, recomputed } = await derivedAndRecomputed();
    expect(derived.length).toBeGreaterThan(0);
    expect(derived).toEqual(recomputed);
    expect(await query('SELECT source_key, source_offset FROM access_logs ORDER BY 1, 2')).toEqual(rows);
  });

  it('with reload, loads the loaded versions of the window again, replacing their rows, not adding them', async () => {
    const before = await query(
      'SELECT source_key, source_version, source_offset, path FROM access_logs ORDER BY 1, 2, 3',
    );

    const run = await embedded.runtime.startExecution({
      pipeline: 'access-logs',
      trigger: 'backfill',
      from: '2024-03-04',
      to: '2024-03-04',
      reload: true,
    });

    expect(run).toMatchObject({ status: 'SUCCEEDED', output: { inputs: 1, rowsLoaded: 40 } });
    expect(
      await query('SELECT source_key, source_version, source_offset, path FROM access_logs ORDER BY 1, 2, 3'),
    ).toEqual(before);
  });
});

describe('delete: with onDelete: remove, deleting an input object removes its rows', () => {
  it('removes the rows and rejects of the deleted object, re-derives its days, and forgets it in the ledger', async () => {
    const kept = 'access-logs/kept.csv';
    expect(await upload(kept, csv([logRow(1), logRow(2), logRow(4, { status: 'x' })]))).toMatchObject({
      status: 'SUCCEEDED',
    });
    const gone = 'access-logs/replaced.csv';

    await embedded.runtime.s3.send(new DeleteObjectCommand({ Bucket: 'sluice-input', Key: gone }));
    const run = await waitForRun(`deleted:${gone}`);

    expect(run).toMatchObject({ status: 'SUCCEEDED', output: { removed: gone } });
    expect(await query('SELECT DISTINCT source_key FROM access_logs')).toEqual([{ source_key: kept }]);
    expect(await query('SELECT DISTINCT source_key FROM access_logs_rejects')).toEqual([{ source_key: kept }]);
    const { derived, recomputed } = await derivedAndRecomputed();
    expect(derived).toEqual(recomputed);
    const markers = await embedded.runtime.s3.send(
      new ListObjectsV2Command({ Bucket: 'sluice-working', Prefix: 'loaded/access-logs/' }),
    );
    expect(markers.Contents ?? []).toHaveLength(1);
  });

  it('does nothing when the object exists again when the delete run verifies', async () => {
    const key = 'access-logs/kept.csv';
    const before = await count('SELECT count(*) AS n FROM access_logs');

    const run = await embedded.runtime.startExecution({
      pipeline: 'access-logs',
      trigger: 'delete',
      bucket: 'sluice-input',
      key,
    });

    expect(run.status).toBe('SUCCEEDED');
    expect(run.output).not.toHaveProperty('removed');
    expect(await count('SELECT count(*) AS n FROM access_logs')).toBe(before);
  });
});

describe('partial failure: objects with a failed chunk are not loaded, the others are', () => {
  const good = 'access-logs/partial-good.csv';
  const bad = 'access-logs/partial-bad.csv.gz';

  it('loads the objects whose chunks all succeeded and names the other; a cut file is refused until it changes', async () => {
    // Both files arrive while the runtime is down (no object event), so one scheduled run plans both.
    await embedded.stop();
    const server = await startS3Server({ dir, port: 0 });
    const s3 = localS3Client(server.endpoint);
    const rows = Array.from({ length: 50 }, (_, i) => logRow(1000 + i));
    // A gzip file cut short: its header and first lines read, then its chunk fails in Work, which refuses it.
    const gzip = gzipSync(csv(Array.from({ length: 200 }, (_, i) => logRow(2000 + i))));
    for (const [key, body] of [
      [good, csv(rows)],
      [bad, gzip.subarray(0, gzip.length - 200)],
    ] as const) {
      const file = join(dir, 'upload.tmp');
      writeFileSync(file, body);
      await uploadFile(s3, 'sluice-input', key, file);
    }
    await server.close();
    await start();

    const run = await embedded.runtime.startExecution({ pipeline: 'access-logs', trigger: 'schedule' });

    expect(run).toMatchObject({
      status: 'SUCCEEDED',
      output: { inputs: 2, rowsLoaded: 50, inputsNotLoaded: 1, notLoaded: [{ key: bad, reason: 'chunk-failed' }] },
    });
    expect(await count(`SELECT count(*) AS n FROM access_logs WHERE source_key = '${bad}'`)).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM access_logs WHERE source_key = '${good}'`)).toBe(50);

    // The cut file was refused: the next scheduled run does not fail on it again, nor plan it.
    const next = await embedded.runtime.startExecution({ pipeline: 'access-logs', trigger: 'schedule' });
    expect(next.status).toBe('SUCCEEDED');
    expect((await runRecord(next.id))?.inputKeys).toEqual([]);

    // A new version of it (uploaded whole) is planned and loaded by the run its upload starts.
    const fixed = join(dir, 'fixed.csv.gz');
    writeFileSync(fixed, gzip);
    runs.delete(`created:${bad}`);
    await uploadFile(embedded.runtime.s3, 'sluice-input', bad, fixed);
    expect(await waitForRun(`created:${bad}`)).toMatchObject({ status: 'SUCCEEDED' });
    expect(await count(`SELECT count(*) AS n FROM access_logs WHERE source_key = '${bad}'`)).toBe(200);
  });
});
