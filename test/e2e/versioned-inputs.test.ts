/**
 * The input bucket is versioned, on AWS and in the embedded S3: HeadObject and GetObject
 * return a VersionId, ListObjectsV2 does not. An upload's run and the next scheduled run must
 * see the same identity of the object, or the scheduled run loads the file a second time.
 */
import { HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshot, startTestStack, type TestStack } from '../support/embedded.ts';
import { HEADER, logRow } from '../support/fixtures.ts';

process.env.SLUICE_CHUNK_SIZE = '8KB';

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(() => stack.close());

describe('an uploaded file, then the scheduled run, on a versioned input bucket', () => {
  const rows = Array.from({ length: 600 }, (_, i) => logRow(i));
  rows[42] = logRow(42, { status: 'OK' });
  const file = `${HEADER}\n${rows.join('\n')}\n`;

  it('the embedded input bucket answers like a versioned S3 bucket', async () => {
    const run = await stack.upload('access-logs/versioned.csv', file);
    expect(run).toMatchObject({ status: 'SUCCEEDED', output: { rowsRead: 600, rowsLoaded: 599, rowsRejected: 1 } });
    const s3 = stack.embedded.runtime.s3;
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'sluice-input', Key: 'access-logs/versioned.csv' }));
    expect(head.VersionId).toMatch(/\S/);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'sluice-input', Prefix: 'access-logs/' }));
    expect(listed.Contents?.[0]).not.toHaveProperty('VersionId');
  });

  it('leaves every table unchanged when the scheduled run follows the upload run', async () => {
    const before = await snapshot(stack);
    expect((before.access_logs as unknown[]).length).toBe(599);

    const scheduled = await stack.embedded.runtime.startExecution({ pipeline: 'access-logs', trigger: 'schedule' });

    expect(scheduled).toMatchObject({ status: 'SUCCEEDED', output: { rowsRead: 0, inputs: 0 } });
    expect(await snapshot(stack)).toEqual(before);
  });
});
