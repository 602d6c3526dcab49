/**
 * A run of 2,000 chunks: far past the point where a Distributed Map that collects its
 * children's outputs into the state would exceed Step Functions' 256 KiB (the embedded
 * runtime enforces that limit as AWS does). Every row is accounted for.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from '../support/embedded.ts';
import { HEADER, logRow } from '../support/fixtures.ts';

// Read by the planner when the handlers are first imported (this file runs in its own process).
process.env.SLUICE_CHUNK_SIZE = '4KB';

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(() => stack.close());

describe('a run of 2,000 chunks', () => {
  it('succeeds with every row loaded or rejected exactly once', { timeout: 900_000 }, async () => {
    const lines: string[] = [];
    let bytes = HEADER.length + 1;
    for (let i = 0; bytes < 8 * 1024 * 1024; i++) {
      const line = i % 5000 === 7 ? logRow(i, { bytes_sent: 'lots' }) : logRow(i);
      lines.push(line);
      bytes += line.length + 1;
    }
    const rejected = lines.filter((_, i) => i % 5000 === 7).length;

    const run = await stack.upload('access-logs/big.csv', `${HEADER}\n${lines.join('\n')}\n`);

    expect(`${run.error ?? ''} ${run.cause ?? ''}`.trim()).toBe('');
    const output = run.output as { chunks: number; rowsRead: number; rowsLoaded: number; rowsRejected: number };
    expect(output.chunks).toBeGreaterThanOrEqual(2000);
    expect(output).toMatchObject({
      rowsRead: lines.length,
      rowsLoaded: lines.length - rejected,
      rowsRejected: rejected,
    });
    expect(
      await stack.query('SELECT count(*) AS n, count(DISTINCT source_offset) AS offsets FROM access_logs'),
    ).toEqual([{ n: lines.length - rejected, offsets: lines.length - rejected }]);
    expect(await stack.query('SELECT count(*) AS n FROM access_logs_rejects')).toEqual([{ n: rejected }]);
  });
});
