/**
 * A short chaos run in `npm test` (bench/chaos.ts; the full one is `npm run chaos -- --runs 50`):
 * `sluice dev` in a child process with worker, S3 and commit faults at high rates, two uploads,
 * a scheduled run and a SIGKILL of the runtime while its runs are in flight (seed 86 draws
 * upload, schedule, kill, upload), then every row of the table compared with the rows computed
 * from the files. Re-uploads and deletes are left to the full run.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { compareTable, generateFile, rowText } from '../../bench/chaos-model.ts';
import { randomGenerator } from '../../runtime/faults.ts';
import { tempDir } from '../support/temp.ts';

const REPO_ROOT = join(import.meta.dirname, '../..');

it('a chaos run with faults and a killed runtime loads every row once', { timeout: 300_000 }, () => {
  const dir = tempDir('chaos-test-');
  try {
    const chaos = spawnSync(
      process.execPath,
      [
        join(REPO_ROOT, 'bench', 'chaos.ts'),
        ...['--runs', '4', '--seed', '86', '--dir', dir, '--no-record', '--timeout', '3'],
        ...['--actions', 'upload,schedule,kill'],
        ...['--faults', 'worker-error=0.2,worker-partial=0.1,s3-5xx=0.02,commit-conflict=0.3'],
      ],
      { encoding: 'utf8', timeout: 290_000 },
    );
    const output = `${chaos.stdout}\n${chaos.stderr}`;
    expect(output, 'the runtime was killed once').toMatch(/^\[3\/4\] kill pid \d+/m);
    expect(output).toMatch(/faults injected: \d+ \(.*kill 1\)/);
    expect(output).toMatch(/^rows expected: [1-9]\d* /m);
    for (const figure of ['rows lost', 'rows duplicated', 'stale rows', 'unexpected rows']) {
      expect(output, output).toMatch(new RegExp(`^${figure}: 0$`, 'm'));
    }
    expect(output).toMatch(/missing 0, duplicated 0, unexpected 0/);
    expect(output).toMatch(/daily_traffic \(day, path\) rows: expected \d+, present \d+, wrong 0/);
    expect(chaos.status, output).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('the chaos check counts lost, duplicated, stale and unexpected rows (it is not blind)', () => {
  const columns = [
    { name: 'event_time', type: 'timestamp' },
    { name: 'session_id', type: 'string' },
    { name: 'latency_ms', type: 'double' },
  ];
  const file = generateFile(randomGenerator(5), 'v1', 6, 0);
  const texts = file.rows.map((row) => rowText(columns, row));
  const current = [{ key: 'a.csv', versions: ['v-a', 'etag-a'], rows: texts, rejectedLines: [] }];
  const [first = '', second = '', , , , sixth = ''] = texts;
  // The table as Athena prints it: the same rows read back as text match.
  const printed = file.rows.map((row) =>
    rowText(columns, {
      event_time: new Date(Number(row.event_time)).toISOString().replace('T', ' ').replace('Z', ''),
      session_id: row.session_id ?? '',
      latency_ms: String(row.latency_ms),
    }),
  );
  expect(printed).toEqual(texts);
  const exact = compareTable(
    current,
    texts.map((text) => ({ key: 'a.csv', version: 'etag-a', text })),
  );
  expect(exact).toMatchObject({ expected: 6, present: 6, lost: 0, duplicated: 0, stale: 0, unexpected: 0 });
  expect(exact.presentChecksum).toBe(exact.expectedChecksum);

  const wrong = compareTable(current, [
    ...texts.slice(0, 4).map((text) => ({ key: 'a.csv', version: 'v-a', text })), // lines 5 and 6 lost
    { key: 'a.csv', version: 'v-a', text: first }, // loaded twice
    { key: 'a.csv', version: 'old', text: second }, // an older version's row
    { key: 'deleted.csv', version: 'x', text: sixth }, // a deleted object's row
    { key: 'a.csv', version: 'v-a', text: `${sixth.slice(0, sixth.lastIndexOf('\u001f') + 1)}-1` }, // a changed value
  ]);
  expect(wrong).toMatchObject({ lost: 2, duplicated: 1, stale: 2, unexpected: 1 });
  expect(wrong.presentChecksum).not.toBe(wrong.expectedChecksum);
});
