import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Embedded, startEmbedded } from '../../runtime/dev.ts';
import type { ExecutionRecord } from '../../runtime/executions.ts';
import { uploadFile } from '../../runtime/upload.ts';
import { HEADER, logRow } from '../support/fixtures.ts';

// Read by the planner when the handlers are first imported: several chunks from a small file.
process.env.SLUICE_CHUNK_SIZE = '4KB';

const REPO_ROOT = join(import.meta.dirname, '../..');
let dir: string;
let embedded: Embedded;
const runs = new Map<string, Promise<ExecutionRecord>>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-embedded-'));
  embedded = await startEmbedded({
    dir,
    repoRoot: REPO_ROOT,
    port: 0,
    log: () => {},
    onExecution: (event, execution) => runs.set(event.key, execution),
  });
});
afterAll(() => embedded.stop());

/** Uploads a file under access-logs/ and waits for the run its object event starts. */
async function upload(name: string, text: string): Promise<ExecutionRecord> {
  const file = join(dir, name);
  writeFileSync(file, text);
  const key = `access-logs/${name}`;
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
});
