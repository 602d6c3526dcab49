/**
 * Crash recovery (issue 8): a `sluice dev` process killed with SIGKILL in the middle of a run
 * leaves that run RUNNING; the next `sluice dev` on the same folder marks it FAILED and redrives
 * it at once, and the file's rows end up in the table exactly once. The killed process runs the
 * real stack (startDev, the ASL file, the real handlers) with a Work function that wraps the real
 * one and kills its own process after its third chunk, so the crash always falls mid-run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Embedded, startDev } from '../../runtime/dev.ts';
import type { ExecutionRecord } from '../../runtime/executions.ts';
import { HEADER, logRow } from '../support/fixtures.ts';
import { tempDir } from '../support/temp.ts';

const REPO_ROOT = join(import.meta.dirname, '../..');
const ROWS = 3000;

/** The real Work function, which kills its process (as SIGKILL would) once it has done `after` chunks. */
const DYING_WORK = (real: string, after: number) => `
import * as real from ${JSON.stringify(real)};
let done = 0;
const dying = (handler) => async (event, context) => {
  const result = await handler(event, context);
  if (++done === ${after}) process.kill(process.pid, 'SIGKILL');
  return result;
};
export const createHandler = (deps) => dying(real.createHandler(deps));
export const handler = dying(real.handler);
`;

/** A repository whose handlers are the real ones but Work, which dies mid-run. */
function dyingRepo(root: string): string {
  const repo = join(root, 'repo');
  const handlers = join(repo, 'functions', 'handlers');
  mkdirSync(handlers, { recursive: true });
  symlinkSync(join(REPO_ROOT, 'pipelines'), join(repo, 'pipelines'));
  symlinkSync(join(REPO_ROOT, 'state-machines'), join(repo, 'state-machines'));
  for (const entry of ['plan.ts', 'verify.ts', 'finish.ts', 'record-failure.ts', 'lease.ts', 'shared.ts']) {
    symlinkSync(join(REPO_ROOT, 'functions', 'handlers', entry), join(handlers, entry));
  }
  writeFileSync(join(handlers, 'work.ts'), DYING_WORK(join(REPO_ROOT, 'functions', 'handlers', 'work.ts'), 3));
  return repo;
}

/** Runs `sluice dev` (startDev) in a child process on `dir`, uploads `file` as `key`, and resolves when the process dies. */
function devThatDies(
  dir: string,
  repoRoot: string,
  file: string,
  key: string,
): Promise<{ signal: string | null; log: string }> {
  const script = `
    import { startDev } from ${JSON.stringify(join(REPO_ROOT, 'runtime', 'dev.ts'))};
    import { uploadFile } from ${JSON.stringify(join(REPO_ROOT, 'runtime', 'upload.ts'))};
    const embedded = await startDev({ dir: ${JSON.stringify(dir)}, repoRoot: ${JSON.stringify(repoRoot)}, port: 0 });
    await uploadFile(embedded.runtime.s3, 'sluice-input', ${JSON.stringify(key)}, ${JSON.stringify(file)});
  `;
  const child: ChildProcess = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, SLUICE_CHUNK_SIZE: '16KB' },
  });
  let log = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    log += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    log += chunk.toString();
  });
  return new Promise((resolve) => child.once('exit', (_code, signal) => resolve({ signal, log })));
}

let root: string | undefined;
let embedded: Embedded | undefined;
const chunkSize = process.env.SLUICE_CHUNK_SIZE;

afterAll(async () => {
  await embedded?.stop();
  if (chunkSize === undefined) delete process.env.SLUICE_CHUNK_SIZE;
  else process.env.SLUICE_CHUNK_SIZE = chunkSize;
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('crash recovery of sluice dev', () => {
  it('marks a run whose dev process was killed FAILED, redrives it at once, and loads its rows once', async () => {
    root = tempDir('recovery-');
    const dir = join(root, '.sluice');
    const file = join(root, 'logs.csv');
    writeFileSync(file, `${HEADER}\n${Array.from({ length: ROWS }, (_, i) => logRow(i)).join('\n')}\n`);

    const killed = await devThatDies(dir, dyingRepo(root), file, 'access-logs/2024/03/logs.csv');

    expect(killed.signal, killed.log).toBe('SIGKILL');
    const executions = join(dir, 'executions');
    const [left] = readdirJson(executions);
    expect(left, killed.log).toMatchObject({ status: 'RUNNING', pipeline: 'access-logs' });
    const run = String(left?.id);

    const lines: string[] = [];
    process.env.SLUICE_CHUNK_SIZE = '16KB';
    embedded = await startDev({ dir, repoRoot: REPO_ROOT, port: 0, log: (line) => lines.push(line) });
    const redrive = `${run}-redrive-1`;
    let record: ExecutionRecord | undefined;
    for (let i = 0; i < 1200; i++) {
      record = embedded.runtime.executions.read(redrive);
      if (record && record.status !== 'RUNNING') break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    expect(lines).toContain(
      `${run}: its runtime (process ${left?.pid}) exited before it finished; marked FAILED and redriven as ${redrive}`,
    );
    expect(embedded.runtime.executions.read(run)).toMatchObject({
      status: 'FAILED',
      error: 'Sluice.RuntimeExited',
      stoppedAt: expect.any(String),
    });
    expect(record, lines.join('\n')).toMatchObject({ status: 'SUCCEEDED', input: { redriveOf: run } });
    const [count] = await embedded.runtime.warehouse.query('SELECT count(*) AS n FROM access_logs');
    expect(Number(count?.n)).toBe(ROWS);
  });
});

/** The execution records of a folder (not their histories). */
function readdirJson(folder: string): ExecutionRecord[] {
  return readdirSync(folder)
    .filter((name) => /^[A-Za-z0-9_-]+\.json$/.test(name))
    .map((name) => JSON.parse(readFileSync(join(folder, name), 'utf8')) as ExecutionRecord);
}
