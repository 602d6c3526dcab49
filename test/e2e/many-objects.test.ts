/**
 * A scheduled run over 5,000 small objects at the pipeline's own chunk size (64 MB): bin
 * packing alone would put every object in one chunk whose Distributed Map item passes
 * 256 KiB. Every object is loaded once, and the next scheduled run loads nothing.
 */
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localS3Client } from '../../runtime/s3-client.ts';
import { startS3Server } from '../../runtime/s3-server.ts';
import { newStackDir, startTestStack, type TestStack } from '../support/embedded.ts';
import { HEADER, logRow } from '../support/fixtures.ts';

delete process.env.SLUICE_CHUNK_SIZE;

const OBJECTS = 5000;
let stack: TestStack;
beforeAll(async () => {
  // The folder fills before the schedule fires: objects go in through an S3 server without triggers.
  const dir = newStackDir();
  const server = await startS3Server({ dir, port: 0 });
  const s3 = localS3Client(server.endpoint);
  try {
    await putObjects(s3, OBJECTS);
  } finally {
    s3.destroy();
    await server.close();
  }
  stack = await startTestStack(dir);
}, 600_000);
afterAll(() => stack.close());

async function putObjects(s3: S3Client, count: number): Promise<void> {
  const keys = Array.from({ length: count }, (_, i) => i);
  const put = async () => {
    for (let i = keys.shift(); i !== undefined; i = keys.shift()) {
      const key = `access-logs/small/part-${String(i).padStart(5, '0')}.csv`;
      await s3.send(
        new PutObjectCommand({
          Bucket: 'sluice-input',
          Key: key,
          Body: `${HEADER}\n${logRow(i)}\n${logRow(i + OBJECTS)}\n`,
        }),
      );
    }
  };
  await Promise.all(Array.from({ length: 16 }, put));
}

describe('a scheduled run over 5,000 small objects', () => {
  it('loads every object once, in chunks whose items stay under the limits', { timeout: 900_000 }, async () => {
    const run = await stack.embedded.runtime.startExecution({ pipeline: 'access-logs', trigger: 'schedule' });

    expect(`${run.error ?? ''} ${run.cause ?? ''}`.trim()).toBe('');
    expect(run.output).toMatchObject({
      inputs: OBJECTS,
      rowsRead: 2 * OBJECTS,
      rowsLoaded: 2 * OBJECTS,
      rowsRejected: 0,
    });
    expect((run.output as { chunks: number }).chunks).toBeGreaterThan(1);
    expect(await stack.query('SELECT count(*) AS n, count(DISTINCT source_key) AS keys FROM access_logs')).toEqual([
      { n: 2 * OBJECTS, keys: OBJECTS },
    ]);

    const again = await stack.embedded.runtime.startExecution({ pipeline: 'access-logs', trigger: 'schedule' });
    expect(again).toMatchObject({ status: 'SUCCEEDED', output: { inputs: 0, rowsRead: 0 } });
  });
});
