/**
 * Issue 7: every bad file gets a clear answer and nothing is lost. Runs each case of
 * test/fixtures/bad-inputs/cases.yaml through the embedded runtime (one stack, each case
 * under its own key) and checks the outcome the manifest promises: the rows loaded, the
 * rows rejected with their line and true reason, or a FAILED run with a short, plain
 * message naming the file; and, for every run, rows read = rows loaded + rows rejected,
 * in the run's output and in the tables.
 */
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { literal } from '../../functions/pipeline/sql.ts';
import { type Embedded, startEmbedded } from '../../runtime/dev.ts';
import { type ExecutionRecord, toRunRow } from '../../runtime/executions.ts';
import { uploadFile } from '../../runtime/upload.ts';
import { accessLogs, HEADER, logRow } from '../support/fixtures.ts';
import { tempDir } from '../support/temp.ts';

/** True when the text holds a control character other than tab, newline and carriage return. */
const hasControlBytes = (text: string) =>
  [...text].some((ch) => {
    const code = ch.charCodeAt(0);
    return code < 9 || (code > 13 && code < 32) || code === 127;
  });

// Small chunks, so that the generated files are read by several workers.
process.env.SLUICE_CHUNK_SIZE = '64KB';

const FIXTURES = join(import.meta.dirname, '../fixtures/bad-inputs');
const REPO_ROOT = join(import.meta.dirname, '../..');

interface ExpectedReject {
  readonly line: number;
  readonly column?: string;
  readonly reason: string;
}

interface Expected {
  readonly loaded?: number;
  readonly rejected?: readonly ExpectedReject[] | { readonly count: number; readonly reason: string };
  readonly failed?: string;
  readonly ignored?: boolean;
  readonly where?: readonly { readonly sql: string; readonly rows: number }[];
}

interface Case {
  readonly name: string;
  readonly file?: string;
  readonly generate?: string;
  readonly key: string;
  readonly expect: Expected;
}

interface RunOutput {
  readonly rowsRead: number;
  readonly rowsLoaded: number;
  readonly rowsRejected: number;
}

const cases = (parse(readFileSync(join(FIXTURES, 'cases.yaml'), 'utf8')) as { cases: Case[] }).cases;

const rows = (n: number, at: (i: number) => string) => Array.from({ length: n }, (_, i) => at(i + 1));
const csv = (lines: readonly string[]) => `${lines.join('\n')}\n`;

/** Files too large or too repetitive to commit; named by `generate` in the manifest. */
const GENERATORS: Record<string, () => Buffer> = {
  /** 5,000 rows, every 5th row from the 3rd on (2 in 5) with an extra unquoted comma in user_agent. */
  'extra-comma-40pct': () =>
    Buffer.from(csv([HEADER, ...rows(5000, (i) => (i % 5 >= 3 ? logRow(i, { user_agent: 'a,b' }) : logRow(i)))])),
  /** 5,000 rows, 2 in 5 without their last field. */
  'missing-field-40pct': () =>
    Buffer.from(
      csv([HEADER, ...rows(5000, (i) => (i % 5 >= 3 ? logRow(i).slice(0, logRow(i).lastIndexOf(',')) : logRow(i)))]),
    ),
  /** Ten rows; line 4 (the third row) is 2 MB long, over the default maxLineBytes of 1 MB. */
  'long-line': () =>
    Buffer.from(
      csv([HEADER, ...rows(10, (i) => (i === 3 ? logRow(i, { user_agent: 'x'.repeat(2 * 1024 * 1024) }) : logRow(i)))]),
    ),
  /** A header, then 200 MB of NUL bytes: about 200 KB compressed. */
  'gzip-bomb': () => gzipSync(Buffer.concat([Buffer.from(`${HEADER}\n`), Buffer.alloc(200 * 1024 * 1024)])),
  /** 100 rows, 80 with a status that is not a number: over rejects.maxShare (50%). */
  'mostly-bad': () => Buffer.from(csv([HEADER, ...rows(100, (i) => logRow(i, i % 5 ? { status: 'OK' } : {}))])),
};

const bodyOf = (c: Case): Buffer => {
  if (c.generate) {
    const generate = GENERATORS[c.generate];
    if (!generate) throw new Error(`cases.yaml: no generator ${c.generate}`);
    return generate();
  }
  return readFileSync(join(FIXTURES, c.file ?? ''));
};

const pattern = (source: string) => new RegExp(source, 'is');

let dir: string;
let embedded: Embedded;
const logs: string[] = [];
const runs = new Map<string, Promise<ExecutionRecord>>();

beforeAll(async () => {
  dir = tempDir('bad-inputs-');
  embedded = await startEmbedded({
    dir,
    repoRoot: REPO_ROOT,
    port: 0,
    log: (line) => logs.push(line),
    onExecution: (event, execution) => runs.set(event.key, execution),
  });
});
afterAll(async () => {
  await embedded?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Uploads the body under the key and returns the run it starts, or null when none starts in `waitMs`. */
async function upload(key: string, body: Buffer, waitMs: number): Promise<ExecutionRecord | null> {
  const file = join(dir, 'upload.tmp');
  writeFileSync(file, body);
  runs.delete(key);
  await uploadFile(embedded.runtime.s3, 'sluice-input', key, file);
  for (let waited = 0; waited < waitMs && !runs.has(key); waited += 25) await new Promise((r) => setTimeout(r, 25));
  return (await runs.get(key)) ?? null;
}

const query = (sql: string) => embedded.runtime.warehouse.query(sql);

/** Rows of the key in a table; 0 while no run has created the table yet. */
async function countOf(table: string, key: string): Promise<number> {
  try {
    const [row] = await query(`SELECT count(*) AS n FROM ${table} WHERE source_key = ${literal(key)}`);
    return Number(row?.n ?? 0);
  } catch (error) {
    if (/does not exist/.test(String(error))) return 0;
    throw error;
  }
}

async function tableCounts(key: string): Promise<{ loaded: number; rejected: number }> {
  return { loaded: await countOf('access_logs', key), rejected: await countOf('access_logs_rejects', key) };
}

/** Files named after the key's last segment in the folders above the data folder, up to the root. */
function strayFiles(key: string): string[] {
  const found: string[] = [];
  for (let up = dirname(dir); ; up = dirname(up)) {
    try {
      for (const name of readdirSync(up)) if (name.startsWith(basename(key))) found.push(join(up, name));
    } catch {
      // An unreadable folder holds nothing the runtime wrote.
    }
    if (up === dirname(up)) return found;
  }
}

/** What a user reads of a failed run (`sluice runs`, the notification): its plain message. */
const messageOf = (run: ExecutionRecord) => toRunRow(run).message ?? '';

/** A message fit for a user: bounded, one or two sentences, no stack trace, path or raw bytes. */
function expectPlain(message: string, key: string): void {
  expect(message.length, 'a bounded message').toBeLessThanOrEqual(1000);
  expect(message, 'no stack trace').not.toMatch(/\n\s+at |\bat .*\.(ts|js):\d+/);
  expect(message, 'no absolute path of the machine').not.toMatch(/(^|[\s"'(])\/(tmp|work|home|root|var|Users)\//);
  expect(message, 'no raw Lambda JSON').not.toMatch(/"errorType"|"stackTrace"|"trace"\s*:/);
  expect(hasControlBytes(message), 'no raw control bytes').toBe(false);
  expect(message, 'names the file').toContain(basename(key));
}

describe('bad inputs of access-logs, each through the embedded runtime', () => {
  it('has at least 40 cases, each with its own key and one expected outcome', () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
    expect(new Set(cases.map((c) => c.key)).size).toBe(cases.length);
    for (const c of cases) {
      expect(Boolean(c.file) !== Boolean(c.generate), c.name).toBe(true);
      if (c.file) expect(existsSync(join(FIXTURES, c.file)), c.file).toBe(true);
      const outcomes = [c.expect.loaded !== undefined, c.expect.failed !== undefined, c.expect.ignored === true];
      expect(outcomes.filter(Boolean), c.name).toHaveLength(1);
    }
  });

  it.each(cases.map((c) => [c.name, c] as const))(
    '%s',
    async (_name, c) => {
      const key = c.key;
      const before = new Set(strayFiles(key));
      const run = await upload(key, bodyOf(c), c.expect.ignored ? 1500 : 20_000);

      if (c.expect.ignored) {
        expect(run, 'no pipeline takes this key, so no run starts').toBeNull();
        const said = logs.filter((line) => line.includes(key));
        expect(said.join('\n'), 'the log says the object was not taken').toMatch(
          /no pipeline|not (taken|matched|loaded)|ignor|skip/i,
        );
        return;
      }
      expect(run, `a run for ${key}`).not.toBeNull();
      if (!run) return;
      const counts = await tableCounts(key);

      if (c.expect.failed !== undefined) {
        expect(run.status, `the run fails; output ${JSON.stringify(run.output)}`).toBe('FAILED');
        const row = toRunRow(run);
        const message = row.message ?? '';
        expect(message).toMatch(pattern(c.expect.failed));
        expectPlain(message, key);
        // The cause `sluice runs` shows next to it is readable too (the error type is kept apart).
        expectPlain(row.cause ?? '', key);
        expect(counts, 'nothing of a failed file is loaded').toEqual({ loaded: 0, rejected: 0 });
        return;
      }

      expect(run.status, `the run succeeds; it says ${messageOf(run).slice(0, 2000)}`).toBe('SUCCEEDED');
      const output = run.output as RunOutput;
      // The books balance, in the run's output and in the tables.
      expect(output.rowsRead).toBe(output.rowsLoaded + output.rowsRejected);
      expect(counts).toEqual({ loaded: output.rowsLoaded, rejected: output.rowsRejected });
      expect(output.rowsLoaded).toBe(c.expect.loaded);

      const rejects = (await query(
        `SELECT line_number, column_name, reason, raw_line FROM access_logs_rejects
       WHERE source_key = ${literal(key)} ORDER BY line_number`,
      )) as { line_number: unknown; column_name: string | null; reason: string; raw_line: string | null }[];
      const expected = c.expect.rejected ?? [];
      if (Array.isArray(expected)) {
        expect(
          rejects.map((r) => Number(r.line_number)),
          'the lines rejected',
        ).toEqual(expected.map((r) => r.line));
        for (const [i, want] of expected.entries()) {
          const got = rejects[i];
          expect(got?.reason, `the reason of line ${want.line}`).toMatch(pattern(want.reason));
          if (want.column) expect(got?.column_name, `the column of line ${want.line}`).toBe(want.column);
          expect(got?.raw_line, `line ${want.line} keeps its text`).toMatch(/\S/);
          expect(got?.raw_line?.length ?? 0).toBeLessThanOrEqual(accessLogs.rejects.maxRawLineChars);
        }
      } else {
        const bulk = expected as { count: number; reason: string };
        expect(rejects).toHaveLength(bulk.count);
        const wrong = rejects.filter((r) => !pattern(bulk.reason).test(r.reason));
        expect(wrong.slice(0, 3), `reasons not matching /${bulk.reason}/`).toEqual([]);
        expect(new Set(rejects.map((r) => Number(r.line_number))).size, 'one reject per line').toBe(bulk.count);
      }
      for (const { sql, rows } of c.expect.where ?? []) {
        const [row] = await query(
          `SELECT count(*) AS n FROM access_logs WHERE source_key = ${literal(key)} AND (${sql})`,
        );
        expect(Number(row?.n), `rows where ${sql}`).toBe(rows);
      }
      // Keys are data: the key comes back byte for byte, and nothing was written outside the data folder.
      const [stored] = await query(`SELECT DISTINCT source_key FROM access_logs WHERE source_key = ${literal(key)}`);
      if (output.rowsLoaded > 0) expect(stored?.source_key).toBe(key);
      const stray = strayFiles(key).filter((f) => !before.has(f));
      for (const file of stray) rmSync(file, { force: true });
      expect(stray, 'files written outside the data folder').toEqual([]);
    },
    60_000,
  );
});
