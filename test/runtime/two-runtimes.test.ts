/**
 * The handlers are built by their factories with each runtime's own store, configuration and
 * pipelines (not from `process.env`), so two embedded runtimes on two endpoints can run in one
 * process, each loading into its own warehouse from its own buckets.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from '../support/embedded.ts';
import { HEADER, logRow } from '../support/fixtures.ts';

const stacks: TestStack[] = [];
afterAll(async () => {
  await Promise.all(stacks.map((s) => s.close()));
});

const csv = (rows: number, from = 0) =>
  `${HEADER}\n${Array.from({ length: rows }, (_, i) => logRow(from + i)).join('\n')}\n`;
const count = async (stack: TestStack) => (await stack.query('SELECT count(*) AS n FROM access_logs'))[0]?.n;

describe('two embedded runtimes in one process', () => {
  it('each runs its handlers against its own endpoint, one after the other and at once', async () => {
    const a = await startTestStack();
    stacks.push(a);
    // A's handlers are built and used before B exists.
    expect(await a.upload('access-logs/a.csv', csv(30))).toMatchObject({
      status: 'SUCCEEDED',
      output: { rowsLoaded: 30 },
    });

    const b = await startTestStack();
    stacks.push(b);
    expect(b.embedded.runtime.endpoint).not.toBe(a.embedded.runtime.endpoint);
    expect(await b.upload('access-logs/b.csv', csv(12, 100))).toMatchObject({
      status: 'SUCCEEDED',
      output: { rowsLoaded: 12 },
    });
    // Both at once: each run reads its own input bucket and loads its own warehouse.
    const [a2, b2] = await Promise.all([
      a.upload('access-logs/a2.csv', csv(5, 200)),
      b.upload('access-logs/b2.csv', csv(7, 300)),
    ]);
    expect(a2).toMatchObject({ status: 'SUCCEEDED', output: { rowsLoaded: 5 } });
    expect(b2).toMatchObject({ status: 'SUCCEEDED', output: { rowsLoaded: 7 } });

    expect(await count(a)).toBe(35);
    expect(await count(b)).toBe(19);
    const keys = async (stack: TestStack) =>
      (await stack.query('SELECT DISTINCT source_key FROM access_logs ORDER BY 1')).map((r) => r.source_key);
    expect(await keys(a)).toEqual(['access-logs/a.csv', 'access-logs/a2.csv']);
    expect(await keys(b)).toEqual(['access-logs/b.csv', 'access-logs/b2.csv']);
  });
});
