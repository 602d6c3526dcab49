/**
 * Loads into one table are serialized by the pipeline's load lease (functions/lease/), not by
 * hoping retries win: on the embedded runtime (the ASL file, the real handlers, the local S3 with
 * conditional writes, the DuckDB warehouse that fails overlapping commits as Iceberg does),
 * 20 files uploaded at once give 20 runs that all succeed with every row once; an upload racing
 * the scheduled run is loaded once; injected commit conflicts are retried to the same result.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { leaseKey } from '../../functions/lease/lease.ts';
import { type Embedded, startEmbedded } from '../../runtime/dev.ts';
import type { ExecutionRecord } from '../../runtime/executions.ts';
import { parseFaults, setFaults } from '../../runtime/faults.ts';
import { HEADER, logRow } from '../support/fixtures.ts';
import { tempDir } from '../support/temp.ts';

delete process.env.SLUICE_CHUNK_SIZE;

const REPO_ROOT = join(import.meta.dirname, '../..');
let dir: string;
let embedded: Embedded;
/** The runs the object events started, by key. */
const runs = new Map<string, Promise<ExecutionRecord>[]>();

beforeAll(async () => {
  dir = tempDir('concurrent-');
  embedded = await startEmbedded({
    dir,
    repoRoot: REPO_ROOT,
    port: 0,
    log: () => {},
    onExecution: (event, execution) => runs.set(event.key, [...(runs.get(event.key) ?? []), execution]),
  });
}, 120_000);
afterAll(async () => {
  await embedded.stop();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => setFaults(undefined));

/** A file of `rows` access-log rows, numbered from `first`. */
const file = (first: number, rows: number) =>
  `${HEADER}\n${Array.from({ length: rows }, (_, i) => logRow(first + i)).join('\n')}\n`;

const put = (key: string, body: string) =>
  embedded.runtime.s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: key, Body: body }));

/** The run the upload of `key` started (waits for its object event). */
async function runOf(key: string): Promise<ExecutionRecord> {
  for (let i = 0; i < 400 && !runs.get(key)?.length; i++) await new Promise((r) => setTimeout(r, 25));
  const [run] = runs.get(key) ?? [];
  if (!run) throw new Error(`no run started for ${key}`);
  return run;
}

const failures = (records: readonly ExecutionRecord[]) =>
  records.filter((r) => r.status !== 'SUCCEEDED').map((r) => `${r.id}: ${r.error}: ${r.message ?? r.cause}`);

/** Rows under a key prefix, and how many distinct lineages (key, version, offset) they have. */
const rowsUnder = (prefix: string) =>
  embedded.runtime.warehouse.query(
    `SELECT count(*) AS n, count(DISTINCT (source_key, source_version, source_offset)) AS lineages FROM access_logs WHERE starts_with(source_key, '${prefix}')`,
  );

/** The queries the local Athena failed with an Iceberg commit conflict (runs that loaded at the same time). */
async function commitConflicts(): Promise<number> {
  const { athena } = embedded.runtime;
  let conflicts = 0;
  let token: string | undefined;
  do {
    const page = await athena.listQueryExecutions({ MaxResults: 50, ...(token ? { NextToken: token } : {}) });
    for (const id of page.QueryExecutionIds) {
      const { Status } = (await athena.getQueryExecution({ QueryExecutionId: id })).QueryExecution;
      if (Status.StateChangeReason?.includes('ICEBERG_COMMIT_ERROR')) conflicts++;
    }
    token = page.NextToken;
  } while (token);
  return conflicts;
}

const leaseHeld = async () => {
  try {
    await embedded.runtime.s3.send(new HeadObjectCommand({ Bucket: 'sluice-working', Key: leaseKey('access-logs') }));
    return true;
  } catch {
    return false;
  }
};

describe('concurrent loads into one table', () => {
  it('gives 20 files uploaded in the same second 20 runs that all succeed, every row once', {
    timeout: 600_000,
  }, async () => {
    const keys = Array.from({ length: 20 }, (_, i) => `access-logs/burst/file-${String(i).padStart(2, '0')}.csv`);

    await Promise.all(keys.map((key, i) => put(key, file(i * 100, 25))));
    const records = await Promise.all(keys.map(runOf));

    expect(failures(records)).toEqual([]);
    expect(records.map((r) => (r.output as { rowsLoaded?: number }).rowsLoaded)).toEqual(keys.map(() => 25));
    expect(await rowsUnder('access-logs/burst/')).toEqual([{ n: 500, lineages: 500 }]);
    // One run loaded at a time: no load lost a commit to another, and every run gave the lease back.
    expect(await commitConflicts()).toBe(0);
    expect(await leaseHeld()).toBe(false);
  });

  it('loads a file uploaded while the scheduled run starts once', { timeout: 300_000 }, async () => {
    const key = 'access-logs/race/racing.csv';

    const [, scheduled] = await Promise.all([
      put(key, file(5000, 40)),
      embedded.runtime.startExecution({ pipeline: 'access-logs', trigger: 'schedule' }),
    ]);
    const uploaded = await runOf(key);

    expect(failures([scheduled, uploaded])).toEqual([]);
    expect(await rowsUnder('access-logs/race/')).toEqual([{ n: 40, lineages: 40 }]);
    const next = await embedded.runtime.startExecution({ pipeline: 'access-logs', trigger: 'schedule' });
    expect(next).toMatchObject({ status: 'SUCCEEDED', output: { inputs: 0 } });
    expect(await rowsUnder('access-logs/race/')).toEqual([{ n: 40, lineages: 40 }]);
  });

  it('succeeds with every row once when half the commits fail with a commit conflict', {
    timeout: 600_000,
  }, async () => {
    const faults = parseFaults('commit-conflict=0.5,seed=7');
    setFaults(faults);
    const key = 'access-logs/conflicts/file.csv';

    await put(key, file(9000, 30));
    const run = await runOf(key);

    expect(failures([run])).toEqual([]);
    expect(faults.counts()['commit-conflict']).toBeGreaterThan(0);
    expect(await rowsUnder('access-logs/conflicts/')).toEqual([{ n: 30, lineages: 30 }]);
  });

  it('takes over at once the lease of a run that was stopped while holding it', { timeout: 120_000 }, async () => {
    // A run stopped with StopExecution (or left by a crashed runtime) never reaches ReleaseLease:
    // the lease still names it, as here. The next run asks Step Functions, finds it ended, takes over.
    const stopped = embedded.runtime.startExecution({ pipeline: 'access-logs', trigger: 'manual', keys: [] });
    const name = (await embedded.runtime.executions.list())[0]?.id ?? '';
    await embedded.runtime.stopExecution(name, { error: 'Test.Stopped' });
    expect((await stopped).status).toBe('ABORTED');
    const lease = {
      pipeline: 'access-logs',
      holder: name,
      execution: `arn:aws:states:us-east-1:000000000000:execution:sluice-pipeline:${name}`,
      acquiredAt: new Date().toISOString(),
      expiresAt: new Date(Date.now() + 2 * 60 * 60 * 1000).toISOString(),
    };
    await embedded.runtime.s3.send(
      new PutObjectCommand({ Bucket: 'sluice-working', Key: leaseKey('access-logs'), Body: JSON.stringify(lease) }),
    );
    const started = Date.now();

    await put('access-logs/after-stop/file.csv', file(12000, 10));
    const run = await runOf('access-logs/after-stop/file.csv');

    expect(failures([run])).toEqual([]);
    // Without the check it would wait for the lease to expire (2 h) and fail with Sluice.LeaseBusy.
    expect(Date.now() - started).toBeLessThan(40_000);
    expect(await rowsUnder('access-logs/after-stop/')).toEqual([{ n: 10, lineages: 10 }]);
    expect(await leaseHeld()).toBe(false);
  });
});
