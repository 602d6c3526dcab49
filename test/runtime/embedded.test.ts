import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Embedded, startEmbedded } from '../../runtime/dev.ts';
import type { ExecutionRecord } from '../../runtime/executions.ts';
import { uploadFile } from '../../runtime/upload.ts';
import { HEADER, logRow } from '../support/fixtures.ts';
import { tempDir } from '../support/temp.ts';

// Read by the planner when the handlers are first imported: several chunks from a small file.
process.env.SLUICE_CHUNK_SIZE = '4KB';

const REPO_ROOT = join(import.meta.dirname, '../..');
/** The runtime folder, a few levels down a sandbox so a key that climbed out of it would land in the sandbox. */
let sandbox: string;
let dir: string;
let embedded: Embedded;
const runs = new Map<string, Promise<ExecutionRecord>>();
const logged: string[] = [];

beforeAll(async () => {
  sandbox = tempDir('embedded-');
  dir = join(sandbox, 'a', 'b', 'c', '.sluice');
  mkdirSync(dir, { recursive: true });
  embedded = await startEmbedded({
    dir,
    repoRoot: REPO_ROOT,
    port: 0,
    log: (line) => logged.push(line),
    onExecution: (event, execution) => runs.set(event.key, execution),
  });
});
afterAll(async () => {
  await embedded.stop();
  rmSync(sandbox, { recursive: true, force: true });
});

/** Uploads a file under access-logs/ and waits for the run its object event starts. */
async function upload(name: string, text: string, key = `access-logs/${name}`): Promise<ExecutionRecord> {
  const file = join(dir, name);
  writeFileSync(file, text);
  runs.delete(key);
  await uploadFile(embedded.runtime.s3, 'sluice-input', key, file);
  for (let i = 0; i < 100 && !runs.has(key); i++) await new Promise((r) => setTimeout(r, 50));
  const run = runs.get(key);
  if (!run) throw new Error(`no run started for ${key}`);
  return run;
}

describe('embedded runtime, end to end with the real handlers and ASL', () => {
  it('loads an uploaded CSV into the warehouse through the state machine', async () => {
    const rows = Array.from({ length: 200 }, (_, i) => logRow(i));
    rows[10] = logRow(10, { status: 'OK' });

    const run = await upload('day.csv', `${HEADER}\n${rows.join('\n')}\n`);

    expect(run).toMatchObject({ status: 'SUCCEEDED', output: { rowsRead: 200, rowsLoaded: 199, rowsRejected: 1 } });
    expect((run.output as { chunks: number }).chunks).toBeGreaterThan(1);
    expect(await embedded.runtime.warehouse.query('SELECT count(*) AS n FROM access_logs')).toEqual([{ n: 199 }]);
  });

  it('adds nothing when the same object is uploaded again', async () => {
    const rows = Array.from({ length: 200 }, (_, i) => logRow(i));
    rows[10] = logRow(10, { status: 'OK' });

    const run = await upload('day.csv', `${HEADER}\n${rows.join('\n')}\n`);

    expect(run.status).toBe('SUCCEEDED');
    expect(await embedded.runtime.warehouse.query('SELECT count(*) AS n FROM access_logs')).toEqual([{ n: 199 }]);
  });

  it('fails a run on a file with the wrong header, records why and notifies', async () => {
    const run = await upload('bad.csv', 'a,b,c\n1,2,3\n');

    expect(run.status).toBe('FAILED');
    expect(`${run.error} ${run.cause}`).toMatch(/Sluice\.InputError|Threshold/);
    expect(embedded.runtime.executions.read(run.id)?.status).toBe('FAILED');
    expect(readFileSync(join(dir, 'notifications.jsonl'), 'utf8')).toContain(run.id);
  });

  it('loads an object whose key climbs with ../ like any other, and writes nothing outside its folder', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => logRow(i));

    const run = await upload('climb.csv', `${HEADER}\n${rows.join('\n')}\n`, 'access-logs/../../../../x.csv');

    expect(run).toMatchObject({ status: 'SUCCEEDED', output: { rowsRead: 50, rowsLoaded: 50, rowsRejected: 0 } });
    const files = readdirSync(sandbox, { recursive: true, withFileTypes: true })
      .filter((entry) => !entry.isDirectory())
      .map((entry) => join(entry.parentPath, entry.name));
    expect(files.filter((file) => !file.startsWith(`${dir}/`))).toEqual([]);
  });

  it('says in the log which object no pipeline takes, and why, and starts nothing', async () => {
    const keys = ['access-logs/day.CSV', 'other/day.csv', 'access-logs/notes.txt', 'access-logs/\u0000\n.txt'];
    logged.length = 0;

    for (const key of keys) {
      runs.delete(key);
      await embedded.runtime.s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: key, Body: 'x' }));
    }

    for (const key of keys) expect(runs.has(key)).toBe(false);
    expect(logged).toEqual(
      keys.map(
        (key) =>
          `ignored object ${JSON.stringify(key)} in sluice-input: no pipeline takes it ` +
          '(access-logs: keys starting with "access-logs/" and ending in .csv or .csv.gz; ' +
          'prefixes and suffixes are case-sensitive)',
      ),
    );
  });
});
