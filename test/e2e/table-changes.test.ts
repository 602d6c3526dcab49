/**
 * A pipeline whose columns are SQL keywords (`timestamp`, `user`, `order`, `date`), run end to
 * end on the embedded runtime, then changed: a column appended to its table is added to the
 * existing table (ALTER TABLE ... ADD COLUMNS) and loads go on; any other change is refused at
 * start, naming the table and the column. Each step runs in its own process, because handlers
 * read their pipeline definitions once per process (as on Lambda).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../support/temp.ts';

const REPO_ROOT = join(import.meta.dirname, '../..');
const root = tempDir('keywords-');
const dir = join(root, '.sluice');
mkdirSync(join(root, 'pipelines'));
symlinkSync(join(REPO_ROOT, 'state-machines'), join(root, 'state-machines'));
symlinkSync(join(REPO_ROOT, 'functions'), join(root, 'functions'));

const columns = (extra: string) => `
  - { name: timestamp, type: timestamp }
  - { name: user, type: string }
  - { name: order, type: string }
  - { name: date, type: date }${extra}`;
const definition = (tableColumns: string, schemaExtra = '') => `
name: orders
input:
  prefix: orders/
  suffixes: [.csv]
  format: csv
schema:
  - { name: timestamp, type: timestamptz }
  - { name: user, type: string }
  - { name: order, type: string }
  - { name: date, type: date }${schemaExtra}
transform: |
  SELECT * REPLACE (timezone('UTC', "timestamp") AS "timestamp") FROM input
table:
  name: orders
  columns:${tableColumns}
  partitionDay: timestamp
derived:
  - name: daily_orders
    key: [date, user]
    columns:
      - { name: date, type: date }
      - { name: user, type: string }
      - { name: orders, type: bigint }
    sql: |
      SELECT CAST("timestamp" AS DATE) AS "date", "user", count(*) AS orders
      FROM orders WHERE CAST("timestamp" AS DATE) IN ({{days}})
      GROUP BY CAST("timestamp" AS DATE), "user"
`;

interface Step {
  readonly run?: { status: string; error: string | null; cause: string | null; output: Record<string, unknown> };
  readonly rows?: Record<string, unknown>[][];
  readonly error?: string;
}

/** Writes the definition, then uploads one file in a new process and runs the queries. */
async function step(yaml: string, key: string, body: string, ...queries: string[]): Promise<Step> {
  writeFileSync(join(root, 'pipelines', 'orders.yaml'), yaml);
  const file = join(root, 'upload.csv');
  writeFileSync(file, body);
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [join(REPO_ROOT, 'test/support/run-once.ts'), root, dir, key, file, ...queries],
    { cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024 },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Step;
}

const byDay = 'SELECT "date", "user", orders FROM daily_orders ORDER BY "date", "user" NULLS FIRST';

describe('a pipeline with keyword columns, then a changed definition', () => {
  it('loads and derives with columns named timestamp, user, order and date', async () => {
    const body = [
      'timestamp,user,order,date',
      '2024-05-01T10:00:00Z,ann,o-1,2024-05-01',
      '2024-05-01T11:00:00Z,,o-2,2024-05-01',
      '2024-05-01T12:00:00Z,ann,o-3,2024-05-01',
    ].join('\n');

    const result = await step(
      definition(columns('')),
      'orders/a.csv',
      `${body}\n`,
      'SELECT count(*) AS n FROM orders',
      byDay,
    );

    expect(result.error).toBeUndefined();
    expect(result.run?.status).toBe('SUCCEEDED');
    expect(result.rows).toEqual([
      [{ n: 3 }],
      [
        { date: '2024-05-01', user: null, orders: 1 },
        { date: '2024-05-01', user: 'ann', orders: 2 },
      ],
    ]);
    expect(readFileSync(join(root, 'pipelines', 'orders.tables.json'), 'utf8')).toContain('"order"');
  });

  it('adds a column appended to the table to the existing table, and loads it', async () => {
    const amount = '\n  - { name: amount, type: double }';
    const body = ['timestamp,user,order,date,amount', '2024-05-01T13:00:00Z,,o-4,2024-05-01,9.5'].join('\n');

    const result = await step(
      definition(columns(amount), amount),
      'orders/b.csv',
      `${body}\n`,
      'SELECT count(*) AS n, count(amount) AS with_amount FROM orders',
      byDay,
    );

    expect(result.error).toBeUndefined();
    expect(`${result.run?.status} ${result.run?.cause ?? ''}`.trim()).toBe('SUCCEEDED');
    expect(result.rows).toEqual([
      [{ n: 4, with_amount: 1 }],
      // The NULL user's day was rebuilt twice: still one row (a null-safe MERGE key).
      [
        { date: '2024-05-01', user: null, orders: 2 },
        { date: '2024-05-01', user: 'ann', orders: 2 },
      ],
    ]);
    expect(readFileSync(join(root, 'pipelines', 'orders.tables.json'), 'utf8')).toContain('"amount"');
  });

  it('refuses any other change at start, naming the table and the column', async () => {
    const retyped = columns('\n  - { name: amount, type: double }').replace(
      '{ name: order, type: string }',
      '{ name: order, type: bigint }',
    );

    // The input column too, so that the transform still fits and the table change is what is refused.
    const yaml = definition(retyped, '\n  - { name: amount, type: double }').replace(
      '{ name: order, type: string }',
      '{ name: order, type: bigint }',
    );

    const result = await step(yaml, 'orders/c.csv', 'x\n');

    expect(result.run).toBeUndefined();
    expect(result.error).not.toMatch(/transform/);
    expect(result.error).toMatch(/table orders .*column "order" was string and is now bigint/s);
  });
});
