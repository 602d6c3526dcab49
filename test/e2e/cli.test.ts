/**
 * End to end, as a user works: `sluice dev` in its own process, files dropped through the
 * S3 API, and `sluice runs` / `sluice query` / `sluice run` as separate commands.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADER, logRow } from '../support/fixtures.ts';

const root = join(import.meta.dirname, '../..');
const cli = join(root, 'cli/sluice.ts');
const dir = mkdtempSync(join(tmpdir(), 'sluice-e2e-'));
let dev: ChildProcess;
let s3: S3Client;
let devLog = '';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === 'object' && address ? address.port : 0;
}

async function sluice(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [cli, ...args, '--dir', dir], {
      cwd: root,
      env: { ...process.env, SLUICE_CHUNK_SIZE: '64KB' },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const json = async <T>(...args: string[]): Promise<T> => JSON.parse((await sluice(...args, '--json')).stdout) as T;
const count = async (table: string): Promise<number> =>
  (await json<{ n: number }[]>('query', `SELECT count(*) AS n FROM ${table}`))[0]?.n ?? Number.NaN;

interface Run {
  id: string;
  status: string;
  trigger: string;
  chunks: number;
  rowsRead: number;
  rowsLoaded: number;
  rowsRejected: number;
  cause?: string;
}

/** Drops a file through the S3 API, then waits for `sluice runs` to show one more finished run. */
async function drop(key: string, body: string | Buffer): Promise<Run> {
  const before = (await json<Run[]>('runs')).length;
  await s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: key, Body: body }));
  for (let i = 0; i < 240; i++) {
    const runs = await json<Run[]>('runs');
    const newest = runs[0];
    if (runs.length > before && newest && newest.status !== 'RUNNING') return newest;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`no run finished for ${key}; sluice dev said:\n${devLog}`);
}

const rows = Array.from({ length: 3000 }, (_, i) => logRow(i));
rows[5] = logRow(5, { status: 'OK' });
rows[1500] = 'not,enough,fields';
rows[2999] = logRow(2999, { event_time: '2024-03-01 10:00:00' });
const file = `${HEADER}\n${rows.join('\n')}\n`;

beforeAll(async () => {
  const port = await freePort();
  dev = spawn(process.execPath, [cli, 'dev', '--port', String(port), '--dir', dir], {
    cwd: root,
    env: { ...process.env, SLUICE_CHUNK_SIZE: '64KB' },
  });
  dev.stdout?.on('data', (b: Buffer) => {
    devLog += b.toString();
  });
  dev.stderr?.on('data', (b: Buffer) => {
    devLog += b.toString();
  });
  s3 = new S3Client({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'anything', secretAccessKey: 'anything' },
  });
  for (let i = 0; i < 120 && !/S3 at http/.test(devLog); i++) await new Promise((r) => setTimeout(r, 250));
});

afterAll(async () => {
  dev.kill('SIGINT');
  await new Promise((resolve) => dev.once('exit', resolve));
});

describe('sluice dev, end to end through the S3 API and the CLI', () => {
  it('loads a dropped file: good rows in access_logs, malformed rows in access_logs_rejects, none lost', async () => {
    const run = await drop('access-logs/e2e.csv', file);
    expect(run).toMatchObject({
      status: 'SUCCEEDED',
      trigger: 'object',
      rowsRead: 3000,
      rowsLoaded: 2997,
      rowsRejected: 3,
    });
    expect(run.chunks).toBeGreaterThan(3);
    expect((await count('access_logs')) + (await count('access_logs_rejects'))).toBe(3000);
    const rejects = await json<{ line_number: number; reason: string }[]>(
      'query',
      "SELECT line_number, reason FROM access_logs_rejects WHERE source_key = 'access-logs/e2e.csv' ORDER BY line_number",
    );
    expect(rejects.map((r) => r.line_number)).toEqual([7, 1502, 3001]);
    expect(await json<{ n: number }[]>('query', 'SELECT sum(requests) AS n FROM daily_traffic')).toEqual([{ n: 2997 }]);
  });

  it('changes nothing when the same file is dropped again', async () => {
    const tables = ['access_logs', 'access_logs_rejects', 'daily_traffic'];
    const before = await Promise.all(tables.map(count));
    const traffic = await json('query', 'SELECT * FROM daily_traffic ORDER BY day, path');
    const run = await drop('access-logs/e2e.csv', file);
    expect(run.status).toBe('SUCCEEDED');
    expect(await Promise.all(tables.map(count))).toEqual(before);
    expect(await json('query', 'SELECT * FROM daily_traffic ORDER BY day, path')).toEqual(traffic);
  });

  it('loads a gzip file streamed from the S3 API', async () => {
    const gz = gzipSync(`${HEADER}\n${Array.from({ length: 20000 }, (_, i) => logRow(i + 10000)).join('\n')}\n`);
    const run = await drop('access-logs/e2e-2.csv.gz', gz);
    expect(run).toMatchObject({ status: 'SUCCEEDED', rowsRead: 20000, rowsLoaded: 20000, chunks: 1 });
  });

  it('succeeds with zero rows for a header-only file', async () => {
    const run = await drop('access-logs/empty-day.csv', `${HEADER}\n`);
    expect(run).toMatchObject({ status: 'SUCCEEDED', rowsRead: 0, rowsLoaded: 0, rowsRejected: 0 });
  });

  it('fails a run on a file that is not the pipeline CSV, naming the file and the expected header', async () => {
    const run = await drop('access-logs/not-logs.csv', 'name,price\napple,3\n');
    expect(run.status).toBe('FAILED');
    expect(run.cause).toContain('s3://sluice-input/access-logs/not-logs.csv is not a CSV file of pipeline access-logs');
    expect(run.cause).toContain('event_time,user_id,session_id');
  });

  it('runs a file with `sluice run` while dev is running, and the scheduled run on demand', async () => {
    const path = join(dir, 'extra.csv');
    writeFileSync(path, `${HEADER}\n${logRow(77777)}\n`);
    const byFile = await sluice('run', 'access-logs', '--file', path);
    expect(byFile.stdout).toMatch(/status\s+SUCCEEDED/);
    expect(byFile.code).toBe(0);
    // The scheduled run loads every input not yet loaded, but skips the version a run refused.
    const scheduled = await sluice('run', 'access-logs', '--scheduled');
    expect(scheduled.stdout).toMatch(/status\s+SUCCEEDED/);
    expect(scheduled.code).toBe(0);
    const [newest] = await json<Run[]>('runs');
    expect(newest).toMatchObject({ status: 'SUCCEEDED', trigger: 'schedule', rowsRead: 0 });
  });

  it('answers a bad query with the error and exit code 1', async () => {
    const bad = await sluice('query', 'SELECT nope FROM access_logs');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('nope');
  });
});
