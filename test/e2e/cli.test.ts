/**
 * End to end, as a user works: `sluice dev` in its own process, files dropped through the
 * S3 API, and `sluice runs` / `sluice query` / `sluice run` as separate commands.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, ListExecutionsCommand, SFNClient, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADER, logRow } from '../support/fixtures.ts';
import { tempDir } from '../support/temp.ts';

const root = join(import.meta.dirname, '../..');
const cli = join(root, 'cli/sluice.ts');
const dir = tempDir('e2e-');
let dev: ChildProcess;
let s3: S3Client;
let devLog = '';
let port = 0;
const endpoint = () => `http://127.0.0.1:${port}`;
const STATE_MACHINE = 'arn:aws:states:us-east-1:000000000000:stateMachine:sluice-pipeline';

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
  error?: string;
  message?: string;
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
  port = await freePort();
  dev = spawn(process.execPath, [cli, 'dev', '--port', String(port), '--ui-port', '0', '--dir', dir], {
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
    // Not a terminal: the progress is plain lines on stderr, ending with every chunk done.
    expect(byFile.stderr).toMatch(/ 1\/1 chunks \(100%\), 1 rows, [\d.]+ MB\/s$/m);
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

  it('tells a failed run in plain words: `sluice runs` and `--json` show the message, never Lambda JSON or a stack', async () => {
    // A gzip bomb: 200 MB of NUL bytes in 200 KB.
    const bomb = gzipSync(Buffer.concat([Buffer.from(`${HEADER}\n`), Buffer.alloc(200 * 1024 * 1024)]));
    const run = await drop('access-logs/bomb.csv.gz', bomb);
    expect(run.status).toBe('FAILED');
    expect(run.message).toMatch(/^s3:\/\/sluice-input\/access-logs\/bomb\.csv\.gz /);
    expect(run.message?.length).toBeLessThanOrEqual(1000);
    const text = JSON.stringify(await json<Run[]>('runs'));
    // No Lambda error JSON inside a string (its keys would show as \"errorType\"), no trace, path or NUL.
    expect(text).not.toMatch(/\\"errorType\\"|\\"trace\\"|\/work\/|\\u0000| {4}at /);
    // The table's error column is cut at a word boundary, with an ellipsis.
    const table = (await sluice('runs')).stdout.split('\n');
    const row = table.find((line) => line.startsWith(run.id)) ?? '';
    expect(row).toMatch(/ s3:\/\/sluice-input\/access-logs\/bomb\.csv\.gz [^…]*[a-z)]…$/);
    const shown = row.slice(row.indexOf('s3://'), -1);
    expect(run.message?.startsWith(`${shown} `) || run.message?.startsWith(`${shown}(`)).toBe(true);
  });

  it('shows one run with `sluice runs <run>`: its summary, error, details and steps, not the list', async () => {
    const runs = await json<Run[]>('runs');
    const failed = runs.find((r) => r.status === 'FAILED' && r.message?.includes('bomb.csv.gz'));
    const other = runs.find((r) => r.id !== failed?.id);
    expect(failed && other).toBeTruthy();
    const shown = await sluice('runs', failed?.id ?? '');
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(new RegExp(`^run +${failed?.id}$`, 'm'));
    expect(shown.stdout).toMatch(/^status +FAILED$/m);
    expect(shown.stdout).toMatch(/^error +s3:\/\/sluice-input\/access-logs\/bomb\.csv\.gz /m);
    expect(shown.stdout).toMatch(/^type +Sluice\.InputError \(States\.ExceedToleratedFailureThreshold\)$/m);
    expect(shown.stdout).toMatch(/^chunk 0 +Sluice\.InputError in access-logs\/bomb\.csv\.gz \(bytes 0–\d+\)$/m);
    expect(shown.stdout).toMatch(/^Plan +SUCCEEDED/m);
    expect(shown.stdout).toMatch(/^Process +CAUGHT/m);
    expect(shown.stdout).toMatch(/^RecordFailure +SUCCEEDED/m);
    expect(shown.stdout).not.toContain(other?.id ?? '?');
    const detail = await json<Run & { steps: { name: string }[]; details: { chunks: { parts: unknown[] }[] } }>(
      'runs',
      failed?.id ?? '',
    );
    expect(detail.id).toBe(failed?.id);
    expect(detail.steps.map((s) => s.name).slice(0, 3)).toEqual(['Plan', 'HasChunks', 'Process']);
    expect(detail.details.chunks[0]?.parts).toEqual([
      expect.objectContaining({ key: 'access-logs/bomb.csv.gz', start: 0 }),
    ]);
    const unknown = await sluice('runs', 'no-such-run');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no run named "no-such-run"');
  });

  it("shows each chunk's tries, timings and rows with `sluice logs`, and a failed chunk's error", async () => {
    const runs = await json<Run[]>('runs');
    const several = runs.findLast((r) => r.status === 'SUCCEEDED' && r.rowsRead === 3000);
    const failed = runs.find((r) => r.status === 'FAILED' && r.message?.includes('bomb.csv.gz'));
    expect(several?.chunks).toBeGreaterThan(3);
    interface Logs {
      status: string;
      planned: { chunks: number };
      mapRun: { counts: { total: number; succeeded: number; failed: number }; children: unknown[] | null };
      chunks: {
        index: number;
        status: string;
        attempts: number;
        startedAt: string;
        finishedAt: string;
        ms: number;
        rowsRead: number;
        error: { type: string; message: string; attempt: number; parts: { key: string }[] } | null;
      }[];
      events: { type: string; state?: string }[];
    }
    const logs = await json<Logs>('logs', several?.id ?? '');
    expect(logs.chunks.map((c) => c.index)).toEqual(Array.from({ length: several?.chunks ?? 0 }, (_, i) => i));
    for (const chunk of logs.chunks) {
      expect(chunk).toMatchObject({ status: 'SUCCEEDED', attempts: 1, error: null });
      expect(Date.parse(chunk.finishedAt)).toBeGreaterThanOrEqual(Date.parse(chunk.startedAt));
      expect(chunk.ms).toBe(Date.parse(chunk.finishedAt) - Date.parse(chunk.startedAt));
    }
    expect(logs.chunks.reduce((sum, c) => sum + c.rowsRead, 0)).toBe(3000);
    expect(logs.planned.chunks).toBe(several?.chunks);
    expect(logs.mapRun.counts).toMatchObject({ total: several?.chunks, succeeded: several?.chunks, failed: 0 });
    expect(logs.mapRun.children).toHaveLength(several?.chunks ?? -1);
    expect(logs.events.map((e) => e.type)).toContain('MapRunSucceeded');
    expect(logs.events.at(-1)?.type).toBe('ExecutionSucceeded');
    // The timings are in the chunk's own file in the working bucket.
    const file = await s3.send(
      new GetObjectCommand({ Bucket: 'sluice-working', Key: `runs/access-logs/${several?.id}/chunks/00001.json` }),
    );
    expect(JSON.parse((await file.Body?.transformToString()) ?? '{}')).toMatchObject({
      index: 1,
      attempt: 1,
      startedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      finishedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    });
    const table = await sluice('logs', several?.id ?? '');
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^chunk +status +tries +started +duration +read +staged +rejected$/m);
    expect(table.stdout).toMatch(/^0 +SUCCEEDED +1 +\d\d:\d\d:\d\d\.\d{3} +\d+\.\d s +\d+ +\d+ +\d+$/m);
    expect(table.stdout).toMatch(/^\d\d:\d\d:\d\d\.\d{3} +TaskStateEntered Plan$/m);

    const bomb = await json<Logs>('logs', failed?.id ?? '', '--chunk', '0');
    expect(bomb.status).toBe('FAILED');
    expect(bomb.mapRun.counts).toMatchObject({ total: 1, failed: 1 });
    expect(bomb.chunks).toEqual([
      expect.objectContaining({
        index: 0,
        status: 'FAILED',
        attempts: 1,
        error: expect.objectContaining({
          type: 'Sluice.InputError',
          attempt: 1,
          parts: [expect.objectContaining({ key: 'access-logs/bomb.csv.gz' })],
        }),
      }),
    ]);
    const shown = await sluice('logs', failed?.id ?? '', '--chunk', '0');
    expect(shown.stdout).toMatch(/^chunk 0, try 1 at \d\d:\d\d:\d\d\.\d{3}: Sluice\.InputError$/m);
    expect(shown.stdout).toMatch(/^ {4}s3:\/\/sluice-input\/access-logs\/bomb\.csv\.gz /m);
    expect(shown.stdout).toMatch(/^ {4}in access-logs\/bomb\.csv\.gz \(bytes 0–\d+\)$/m);

    const unknown = await sluice('logs', 'no-such-run');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no run named "no-such-run"');
    const badChunk = await sluice('logs', several?.id ?? '', '--chunk', 'x');
    expect(badChunk.code).toBe(2);
    expect(badChunk.stderr).toContain('--chunk "x" is not a chunk index');
  });

  it('queries read-only unless --write is given', async () => {
    const insert = await sluice('query', "INSERT INTO access_logs (path) VALUES ('/x')");
    expect(insert.code).toBe(1);
    expect(insert.stderr).toMatch(/read-only.*--write/);
    const copy = await sluice('query', `COPY (SELECT 1 AS a) TO '${join(dir, 'out.csv')}'`);
    expect(copy.code).toBe(1);
    expect(copy.stderr).toContain('--write');
    const before = await count('access_logs');
    const created = await sluice('query', 'CREATE TABLE notes AS SELECT 1 AS a', '--write');
    expect(created.code, created.stderr).toBe(0);
    expect(await count('notes')).toBe(1);
    expect(await count('access_logs')).toBe(before);
  });

  it('redrives an aborted run with `sluice redrive`: its rows load once', async () => {
    const sfn = new SFNClient({
      endpoint: endpoint(),
      region: 'us-east-1',
      credentials: { accessKeyId: 'anything', secretAccessKey: 'anything' },
    });
    const key = 'access-logs/to-redrive.csv';
    const body = `${HEADER}\n${Array.from({ length: 20000 }, (_, i) => logRow(i + 40000)).join('\n')}\n`;
    await s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: key, Body: body }));
    let executionArn: string | undefined;
    for (let i = 0; i < 200 && !executionArn; i++) {
      const { executions = [] } = await sfn.send(new ListExecutionsCommand({ stateMachineArn: STATE_MACHINE }));
      for (const e of executions) {
        const described = await sfn.send(new DescribeExecutionCommand({ executionArn: e.executionArn }));
        if (JSON.parse(described.input ?? '{}').key === key) executionArn = e.executionArn;
      }
      if (!executionArn) await new Promise((r) => setTimeout(r, 50));
    }
    expect(executionArn).toBeTruthy();
    await sfn.send(new StopExecutionCommand({ executionArn, error: 'Test.Stopped', cause: 'stopped by the test' }));
    const id = executionArn?.split(':').at(-1) ?? '';
    expect((await json<Run>('runs', id)).status).toBe('ABORTED');
    const redriven = await sluice('redrive', id);
    expect(redriven.code, redriven.stderr).toBe(0);
    expect(redriven.stdout).toMatch(new RegExp(`^run +${id}-redrive-1$`, 'm'));
    expect(redriven.stdout).toMatch(/^status +SUCCEEDED$/m);
    const loaded = await json<{ n: number; lines: number }[]>(
      'query',
      `SELECT count(*) AS n, count(DISTINCT source_offset) AS lines FROM access_logs WHERE source_key = '${key}'`,
    );
    expect(loaded).toEqual([{ n: 20000, lines: 20000 }]);
    // A run that succeeded is not redriven.
    const again = await sluice('redrive', `${id}-redrive-1`);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('is SUCCEEDED: only a run that FAILED, was ABORTED or TIMED_OUT can be redriven');
    sfn.destroy();
  });

  it('shows each pipeline with `sluice status`: its schedule, last run and last success', async () => {
    const [status] = await json<Record<string, unknown>[]>('status');
    const [newest] = await json<Run[]>('runs');
    expect(status).toMatchObject({
      pipeline: 'access-logs',
      schedule: '0 20 * * * Asia/Seoul',
      running: 0,
      lastRun: newest?.id,
      lastStatus: newest?.status,
    });
    const unknown = await sluice('status', 'no-such-pipeline');
    expect(unknown.code).toBe(1);
  });

  it('backfills a window of days as bounded runs with `sluice backfill`', async () => {
    const traffic = await json('query', 'SELECT * FROM daily_traffic ORDER BY day, path');
    const result = await sluice(
      'backfill',
      'access-logs',
      '--from',
      '2024-02-28',
      '--to',
      '2024-03-02',
      '--days-per-run',
      '2',
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('backfill of access-logs 2024-02-28..2024-03-02: 2 runs SUCCEEDED');
    const runs = (await json<Run[]>('runs')).slice(0, 2);
    expect(runs.map((r) => [r.trigger, r.status])).toEqual([
      ['backfill', 'SUCCEEDED'],
      ['backfill', 'SUCCEEDED'],
    ]);
    expect(await json('query', 'SELECT * FROM daily_traffic ORDER BY day, path')).toEqual(traffic);
    const bad = await sluice('backfill', 'access-logs', '--from', '2024-03-05', '--to', '2024-03-01');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--from 2024-03-05 is after --to 2024-03-01');
  });
});
