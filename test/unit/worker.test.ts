import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import type { Chunk, ChunkResult } from '../../functions/contracts.ts';
import { TransientError } from '../../functions/errors.ts';
import { splitIntoChunks } from '../../functions/planning/planner.ts';
import { S3ObjectStore } from '../../functions/storage/s3-store.ts';
import { processChunk } from '../../functions/worker/worker.ts';
import { accessLogs, HEADER, logRow, testConfig } from '../support/fixtures.ts';
import { MemoryStore } from '../support/memory-store.ts';
import { readParquet } from '../support/parquet.ts';

const config = testConfig();

async function runAll(text: string | Buffer, key: string, chunkSize: number) {
  const store = new MemoryStore();
  store.put(config.inputBucket, key, text);
  const info = await store.head(config.inputBucket, key);
  const chunks: Chunk[] = splitIntoChunks(info ? [info] : [], accessLogs, chunkSize, 'run-1');
  const results: ChunkResult[] = [];
  for (const chunk of chunks) results.push(await processChunk(chunk, { store, config, pipeline: accessLogs }));
  const staged = [];
  const rejects = [];
  for (const r of results) {
    if (r.stagingKey)
      staged.push(...(await readParquet(store.body(config.workingBucket, r.stagingKey), config.tmpDir)));
    if (r.rejectsKey)
      rejects.push(...(await readParquet(store.body(config.workingBucket, r.rejectsKey), config.tmpDir)));
  }
  return { results, staged, rejects, chunks };
}

describe('processChunk', () => {
  const rows = Array.from({ length: 300 }, (_, i) => logRow(i));
  const clean = `${HEADER}\r\n${rows.join('\r\n')}\r\n`;

  it('stages every row exactly once whatever the chunk size, with offsets that do not depend on it', async () => {
    const whole = await runAll(clean, 'access-logs/a.csv', 1 << 20);
    const split = await runAll(clean, 'access-logs/a.csv', 997);
    expect(split.chunks.length).toBeGreaterThan(20);
    const offsets = (r: typeof whole) => r.staged.map((s) => Number(s.source_offset)).sort((a, b) => a - b);
    expect(offsets(split)).toEqual(offsets(whole));
    expect(whole.staged).toHaveLength(300);
    expect(new Set(offsets(whole)).size).toBe(300);
  });

  it('converts event_time to UTC and keeps quoted commas', async () => {
    const text = `${HEADER}\n2024-03-01T10:00:00+09:00,u1,s1,GET,/a,200,5,1.5,"Mozilla, 5.0",KR\n`;
    const { staged } = await runAll(text, 'access-logs/tz.csv', 1 << 20);
    expect(staged[0]).toMatchObject({
      event_time: '2024-03-01 01:00:00',
      user_agent: 'Mozilla, 5.0',
      source_offset: String(HEADER.length + 1),
    });
  });

  it('rejects malformed rows with their line number and reason, and loses none', async () => {
    const lines = [
      HEADER,
      logRow(1),
      logRow(2, { status: 'abc' }),
      '',
      logRow(3, { event_time: '2024-03-01 10:00:00' }),
      'only,three,fields',
      logRow(4, { bytes_sent: '12.5' }),
      logRow(5),
    ];
    const { results, staged, rejects } = await runAll(lines.join('\n'), 'access-logs/bad.csv', 1 << 20);
    expect(results[0]).toMatchObject({ rowsRead: 6, rowsStaged: 2, rowsRejected: 4 });
    const byLine = Object.fromEntries(rejects.map((r) => [r.local_line, r]));
    expect(Object.keys(byLine).sort()).toEqual(['3', '5', '6', '7']);
    expect(byLine['3']).toMatchObject({ column_name: 'status', raw_line: lines[2] });
    expect(String(byLine['5']?.reason)).toContain('with a zone or Z');
    expect(String(byLine['6']?.reason)).toContain('expected 10 columns');
    expect(staged).toHaveLength(2);
  });

  it('reads gzip objects whole and UTF-8 with a BOM', async () => {
    const text = `\uFEFF${HEADER}\n${logRow(1, { user_id: '사용자' })}\n${logRow(2)}`;
    const { staged, chunks } = await runAll(gzipSync(Buffer.from(text)), 'access-logs/z.csv.gz', 10);
    expect(chunks).toHaveLength(1);
    expect(staged.map((s) => s.user_id).sort()).toEqual(['u2', '사용자']);
  });

  it('fails a chunk whose file has the wrong header', async () => {
    await expect(runAll('a,b,c\n1,2,3\n', 'access-logs/wrong.csv', 1 << 20)).rejects.toThrow(
      /line 1 should be the header/,
    );
  });
});

describe('a read that fails mid-object', () => {
  it('fails the chunk with a TransientError (the Work state retries it), plain or compressed, through the S3 store', async () => {
    const text = `${HEADER}\n${Array.from({ length: 5000 }, (_, i) => logRow(i)).join('\n')}\n`;
    const bodies: Record<string, Buffer> = { '/b/plain.csv': Buffer.from(text), '/b/packed.csv.gz': gzipSync(text) };
    // An S3 endpoint whose GETs send the headers and 1,000 bytes of the body, then reset the connection.
    const server = createServer((request, response) => {
      const body = bodies[(request.url ?? '').split('?')[0] ?? ''] ?? Buffer.alloc(0);
      response.writeHead(200, { 'content-length': body.length, etag: '"v1"' });
      response.write(body.subarray(0, 1000), () => setTimeout(() => request.socket.destroy(), 20));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = new S3Client({
      endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
      maxAttempts: 1,
    });
    try {
      const store = new S3ObjectStore(client);
      for (const key of ['plain.csv', 'packed.csv.gz']) {
        const size = bodies[`/b/${key}`]?.length ?? 0;
        const [chunk] = splitIntoChunks([{ key, size, version: 'v1' }], accessLogs, 1 << 20, 'run-1');
        const work = processChunk(chunk as Chunk, {
          store,
          config: { ...config, inputBucket: 'b' },
          pipeline: accessLogs,
        });
        await expect(work).rejects.toBeInstanceOf(TransientError);
        await expect(work).rejects.toThrow(
          new RegExp(`^s3://b/${key.replace('.', '\\.')}: reading the object failed \\(.+\\); retried$`),
        );
      }
    } finally {
      client.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('rows the transform cannot place', () => {
  it('rejects a row whose partition column is empty, with its line number', async () => {
    const text = `${HEADER}\n${logRow(1)}\n${logRow(2, { event_time: '' })}\n`;
    const { rejects, staged } = await runAll(text, 'access-logs/empty-day.csv', 1 << 20);
    expect(staged).toHaveLength(1);
    expect(rejects).toEqual([
      expect.objectContaining({ local_line: '3', column_name: 'event_time', raw_line: logRow(2, { event_time: '' }) }),
    ]);
    expect(String(rejects[0]?.reason)).toContain('MISSING: event_time is empty');
  });
});
