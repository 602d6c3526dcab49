/**
 * Issue 7, security: whatever an object key, an event or a file says reaches SQL only as an
 * escaped literal or as an identifier checked against a strict pattern. Hostile keys and
 * header names go through the planner, the worker and Verify (on DuckDB, as in a run), the
 * key comes back byte for byte in source_key, and no statement breaks; the SQL builders'
 * quoting is run on DuckDB with the same hostile text.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Chunk, ChunkResult, RunState } from '../../functions/contracts.ts';
import { errorMessage } from '../../functions/errors.ts';
import { loadPipelines, type Pipeline } from '../../functions/pipeline/definition.ts';
import { literal, loadStatements, quoteDdlIdentifier, quoteIdentifier } from '../../functions/pipeline/sql.ts';
import { decodeEventKey, plan } from '../../functions/planning/planner.ts';
import { verify } from '../../functions/run/verify.ts';
import { layout } from '../../functions/storage/layout.ts';
import { withConnection } from '../../functions/worker/duckdb.ts';
import { checkHeader } from '../../functions/worker/header.ts';
import { processChunk } from '../../functions/worker/worker.ts';
import { backticksToDoubleQuotes, translate } from '../../runtime/dialect.ts';
import { accessLogs, HEADER, logRow, pipelines, testConfig } from '../support/fixtures.ts';
import { MemoryStore } from '../support/memory-store.ts';
import { readParquet } from '../support/parquet.ts';
import { tempDir } from '../support/temp.ts';

/** True when the text holds a control character other than tab, newline and carriage return. */
const hasControlBytes = (text: string) =>
  [...text].some((ch) => {
    const code = ch.charCodeAt(0);
    return code < 9 || (code > 13 && code < 32) || code === 127;
  });

/** Keys S3 accepts, each meant to break a statement that pastes it in, or a path built from it. */
const HOSTILE_KEYS = [
  "access-logs/it's.csv",
  "access-logs/'; DROP TABLE parts; --.csv",
  "access-logs/x'); DELETE FROM rejected; SELECT ('.csv",
  'access-logs/"quoted" name.csv',
  "access-logs/back\\slash\\'.csv",
  'access-logs/$$dollar$$ $1 $tag$.csv',
  'access-logs/--comment /* open.csv',
  'access-logs/new\nline\r.csv',
  'access-logs/tab\there.csv',
  'access-logs/a+b %41 %.csv',
  'access-logs/데이터/café ☕ 𝔘 \u200b.csv',
  'access-logs/../../../etc/passwd.csv',
  'access-logs/`backtick`.csv',
  "access-logs/ends with quote'.csv",
] as const;

/** Five data rows; the third (line 4 of the file) has a status that is not a number. */
const fileOf = (seed: number) =>
  `${[HEADER, ...[1, 2, 3, 4, 5].map((i) => (i === 3 ? logRow(seed + i, { status: 'OK' }) : logRow(seed + i)))].join('\n')}\n`;

interface Outcome {
  readonly state: RunState;
  readonly results: ChunkResult[];
  readonly staged: Record<string, unknown>[];
  readonly rejects: Record<string, unknown>[];
  readonly statements: string[];
}

/** Plan, work every chunk and verify, as the state machine would; returns what a run stages and rejects. */
async function run(
  store: MemoryStore,
  request:
    | { pipeline: string; trigger: 'object'; bucket: string; key: string }
    | { pipeline: string; trigger: 'schedule' },
  chunkSize: number,
  pipelineSet: ReadonlyMap<string, Pipeline> = pipelines,
  runId = 'run-hostile',
): Promise<Outcome> {
  const config = testConfig({ chunkSizeOverride: chunkSize });
  const pipeline = pipelineSet.get(request.pipeline) as Pipeline;
  const state = await plan(
    { request, runId, startedAt: '2024-03-05T00:00:00Z' },
    { store, config, pipelines: pipelineSet },
  );
  const chunks = (await store.getJson<Chunk[]>(config.workingBucket, state.manifest.key)) ?? [];
  const results: ChunkResult[] = [];
  for (const chunk of chunks) results.push(await processChunk(chunk, { store, config, pipeline }));
  const verified = await verify(state, { store, config, pipelines: pipelineSet, today: () => '2024-03-05' });
  const staged: Record<string, unknown>[] = [];
  for (const r of results) {
    if (r.stagingKey)
      staged.push(...(await readParquet(store.body(config.workingBucket, r.stagingKey), config.tmpDir)));
  }
  const rejectsKey = layout.rejects(pipeline.name, runId);
  const rejects = store.objects.has(`${config.workingBucket}/${rejectsKey}`)
    ? await readParquet(store.body(config.workingBucket, rejectsKey), config.tmpDir)
    : [];
  return { state, results, staged, rejects, statements: verified.statements.map((s) => s.sql) };
}

const countBy = (rows: Record<string, unknown>[]) => {
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(String(r.source_key), (counts.get(String(r.source_key)) ?? 0) + 1);
  return counts;
};

/** S3's event encoding of a key: form-encoded, `/` kept. */
const eventEncoded = (key: string) => encodeURIComponent(key).replaceAll('%20', '+').replaceAll('%2F', '/');

describe('hostile object keys through the planner, the worker and Verify', () => {
  it.each(HOSTILE_KEYS.map((k) => [JSON.stringify(k), k]))(
    '%s: rows and rejects carry the key byte for byte, over several chunks',
    async (_, key) => {
      const store = new MemoryStore();
      const config = testConfig();
      store.put(config.inputBucket, key, fileOf(0));
      const outcome = await run(
        store,
        { pipeline: 'access-logs', trigger: 'object', bucket: config.inputBucket, key },
        300,
      );
      expect(outcome.results.length).toBeGreaterThan(1);
      expect(outcome.staged).toHaveLength(4);
      expect([...new Set(outcome.staged.map((r) => r.source_key))]).toEqual([key]);
      expect(outcome.rejects.map((r) => [r.source_key, Number(r.line_number)])).toEqual([[key, 4]]);
      expect(Buffer.from(String(outcome.staged[0]?.source_key)).equals(Buffer.from(key))).toBe(true);
    },
  );

  it('finds each object from its event-encoded key too', async () => {
    const store = new MemoryStore();
    const config = testConfig();
    for (const key of HOSTILE_KEYS.filter((k) => !k.includes('%'))) {
      store.put(config.inputBucket, key, fileOf(0));
      const encoded = eventEncoded(key);
      expect(decodeEventKey(encoded)).toBe(key);
      const outcome = await run(
        store,
        { pipeline: 'access-logs', trigger: 'object', bucket: config.inputBucket, key: encoded },
        1 << 20,
        pipelines,
        `run-${HOSTILE_KEYS.indexOf(key)}`,
      );
      expect([...countBy(outcome.staged)]).toEqual([[key, 4]]);
    }
  });

  it('keeps every key apart in one chunk of many small files (lineage by part number)', async () => {
    const store = new MemoryStore();
    const config = testConfig();
    for (const [i, key] of HOSTILE_KEYS.entries()) store.put(config.inputBucket, key, fileOf(i * 10));
    const outcome = await run(store, { pipeline: 'access-logs', trigger: 'schedule' }, 1 << 20);
    expect(outcome.results).toHaveLength(1);
    expect(new Map([...countBy(outcome.staged)].sort())).toEqual(new Map(HOSTILE_KEYS.map((k) => [k, 4] as const)));
    expect(new Map([...countBy(outcome.rejects)])).toEqual(new Map(HOSTILE_KEYS.map((k) => [k, 1] as const)));
    for (const r of outcome.rejects) expect(Number(r.line_number)).toBe(4);
    // What reaches the warehouse names no key: the run id and the days, as literals.
    for (const sql of outcome.statements) {
      for (const key of HOSTILE_KEYS) expect(sql).not.toContain(key);
    }
  });
});

/** The access-logs definition with `input.extraColumns: ignore`, in a folder of its own. */
function lenientPipelines(): ReadonlyMap<string, Pipeline> {
  const dir = tempDir('hostile-');
  const yaml = readFileSync(accessLogs.file, 'utf8').replace(
    '  splittable: true',
    '  splittable: true\n  extraColumns: ignore',
  );
  expect(yaml).toContain('extraColumns: ignore');
  writeFileSync(join(dir, 'access-logs.yaml'), yaml);
  return loadPipelines(dir);
}

/** Header names (as they appear in the file, CSV-quoted where needed) that must not reach SQL as written. */
const HOSTILE_HEADERS = [
  '"x""; DROP TABLE parts; --"',
  "'it''s'",
  'back\\slash',
  '데이터 ☕',
  'source_key',
  '__part',
  '__extra_0',
  '"a,b"',
  '$$',
  '`tick`',
];

describe('hostile header names', () => {
  it('never reach SQL: unknown columns are ignored by position, and the rows load', async () => {
    const lenient = lenientPipelines();
    const store = new MemoryStore();
    const config = testConfig();
    const key = "access-logs/headers'.csv";
    const extra = HOSTILE_HEADERS.map((_, i) => `"v${i}'"`).join(',');
    const lines = [
      `${HEADER},${HOSTILE_HEADERS.join(',')}`,
      ...[1, 2, 3, 4].map((i) => `${i === 2 ? logRow(i, { status: 'OK' }) : logRow(i)},${extra}`),
    ];
    store.put(config.inputBucket, key, `${lines.join('\n')}\n`);
    const outcome = await run(
      store,
      { pipeline: 'access-logs', trigger: 'object', bucket: config.inputBucket, key },
      1 << 20,
      lenient,
    );
    expect(outcome.staged).toHaveLength(3);
    expect(outcome.rejects.map((r) => Number(r.line_number))).toEqual([3]);
    expect(Object.keys(outcome.staged[0] ?? {}).sort()).toEqual(
      [...accessLogs.table.columns.map((c) => c.name), 'source_key', 'source_version', 'source_offset'].sort(),
    );
    expect(new Set(outcome.staged.map((r) => r.source_key))).toEqual(new Set([key]));
  });

  it('are refused by name when extraColumns is error, in a bounded message without raw control bytes', () => {
    const long = `col${'\u0001'.repeat(5)}${'x'.repeat(20_000)}`;
    const line = Buffer.from(`${long},${HEADER},${HOSTILE_HEADERS.join(',')}`);
    let message = '';
    try {
      checkHeader(accessLogs, line, 's3://sluice-input/access-logs/h.csv');
    } catch (error) {
      message = errorMessage(error);
    }
    expect(message).toMatch(/access-logs\/h\.csv/);
    expect(message.length).toBeLessThanOrEqual(2000);
    expect(hasControlBytes(message)).toBe(false);
  });

  it('cannot name a table or column of a definition: identifiers are checked against a strict pattern', () => {
    const yaml = readFileSync(accessLogs.file, 'utf8');
    for (const [from, to] of [
      ['name: access_logs', "name: 'access_logs\"; DROP TABLE x; --'"],
      ['- { name: country, type: string }\n\n# DuckDB', '- { name: "country\\"", type: string }\n\n# DuckDB'],
      ['name: daily_traffic', 'name: "daily traffic"'],
      ['    - { name: country, type: string }\n  # Iceberg', '    - { name: "Country", type: string }\n  # Iceberg'],
    ] as const) {
      const dir = tempDir('hostile-def-');
      const changed = yaml.replace(from, to);
      expect(changed, from).not.toBe(yaml);
      writeFileSync(join(dir, 'access-logs.yaml'), changed);
      expect(() => loadPipelines(dir), to).toThrow(/identifier|a-z/);
    }
  });
});

/** Text that breaks a statement pasting it in without quoting. */
const HOSTILE_TEXT = [
  "it's",
  "'; DROP TABLE t; --",
  "\\'",
  '\\',
  '"',
  '""',
  '`',
  '$$x$$',
  '/* x',
  '-- x',
  'line\nbreak\r\n',
  '데이터 ☕ 𝔘 \u200b',
  '?',
  '$1',
  '%s',
];

describe('the SQL builders on DuckDB', () => {
  it('literal() gives back every hostile text exactly, in one statement', async () => {
    await withConnection(tmpdir(), async (c) => {
      const reader = await c.runAndReadAll(`SELECT ${HOSTILE_TEXT.map((t, i) => `${literal(t)} AS v${i}`).join(', ')}`);
      expect(reader.getRows()[0]).toEqual(HOSTILE_TEXT);
    });
  });

  it('quoteIdentifier() and quoteDdlIdentifier() (as the dialect rewrites it) name exactly the table and column given', async () => {
    await withConnection(tmpdir(), async (c) => {
      for (const [i, name] of HOSTILE_TEXT.entries()) {
        const table = `t${i}${name}`;
        // DDL in Athena's backticks, as setupStatements writes it, rewritten for DuckDB.
        await c.run(
          backticksToDoubleQuotes(`CREATE TABLE ${quoteDdlIdentifier(table)} (${quoteDdlIdentifier(name)} VARCHAR)`),
        );
        await c.run(`INSERT INTO ${quoteIdentifier(table)} (${quoteIdentifier(name)}) VALUES (${literal(name)})`);
        const reader = await c.runAndReadAll(
          `SELECT table_name, column_name FROM information_schema.columns WHERE table_name = ${literal(table)}`,
        );
        expect(reader.getRows()).toEqual([[table, name]]);
        const value = await c.runAndReadAll(`SELECT ${quoteIdentifier(name)} FROM ${quoteIdentifier(table)}`);
        expect(value.getRows()).toEqual([[name]]);
      }
    });
  });

  it('the dialect translation leaves literals alone, backticks and all', () => {
    const sql = `SELECT ${literal('`a` "b" \'c\'')} AS \`x\`\`y\``;
    expect(translate(sql)).toEqual({ kind: 'sql', sql: `SELECT ${literal('`a` "b" \'c\'')} AS "x\`y"` });
  });

  it('loads take the run id as a literal and refuse a day that is not a date', () => {
    const [merge] = loadStatements(accessLogs, "r'; DROP TABLE access_logs; --", ['2024-03-01'], true, false);
    expect(merge).toContain(`= 'r''; DROP TABLE access_logs; --'`);
    expect(() => loadStatements(accessLogs, 'r', ["2024-03-01') OR ('1'='1"], true, false)).toThrow(RangeError);
  });
});
