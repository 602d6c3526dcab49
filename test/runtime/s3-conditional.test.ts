/**
 * The embedded S3's conditional writes and deletes answer as S3 does, through the AWS SDK:
 * If-None-Match: * and If-Match on PutObject and CompleteMultipartUpload, If-Match on DeleteObject,
 * 412 PreconditionFailed, 404 NoSuchKey, 409 ConditionalRequestConflict.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OBJECTS_FOLDER } from '../../runtime/s3-server.ts';
import { keyPath } from '../../runtime/s3-store.ts';
import { s3Failure, startTestS3, type TestS3 } from './helpers.ts';

let t: TestS3;
beforeAll(async () => {
  t = await startTestS3();
});
afterAll(() => t.close());

const BUCKET = 'sluice-working';

const put = (key: string, body: string, condition: { IfNoneMatch?: string; IfMatch?: string } = {}) =>
  t.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ...condition }));

const read = async (key: string) =>
  (await (await t.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body?.transformToString()) ?? '';

/** How many data files (versions, uploads in progress) the store holds for a key. */
const dataFiles = (key: string) => {
  const { dirs, stem } = keyPath(key);
  return readdirSync(join(t.dir, OBJECTS_FOLDER, BUCKET, ...dirs)).filter(
    (name) => name.startsWith(`${stem}~`) && name.endsWith('.data'),
  ).length;
};

describe('conditional writes on the embedded S3', () => {
  it('creates with If-None-Match: * only when the key is free (412 otherwise, the object unchanged)', async () => {
    await put('create/a.json', 'first', { IfNoneMatch: '*' });

    expect(await s3Failure(put('create/a.json', 'second', { IfNoneMatch: '*' }))).toEqual({
      name: 'PreconditionFailed',
      status: 412,
    });
    expect(await read('create/a.json')).toBe('first');
  });

  it('lets exactly one of many simultaneous If-None-Match: * writers win', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) => put('race/lease.json', `writer-${i}`, { IfNoneMatch: '*' })),
    );

    const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    expect(winners).toHaveLength(1);
    expect(await read('race/lease.json')).toBe(`writer-${winners[0]}`);
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as S3ServiceException).$metadata.httpStatusCode).toBe(412);
    }
  });

  it('replaces with If-Match only the version it names (412 for another ETag, 404 for no object)', async () => {
    const first = await put('swap/a.json', 'v1');
    const second = await put('swap/a.json', 'v2', { IfMatch: first.ETag });

    expect(await s3Failure(put('swap/a.json', 'v3', { IfMatch: first.ETag }))).toEqual({
      name: 'PreconditionFailed',
      status: 412,
    });
    expect(await read('swap/a.json')).toBe('v2');
    expect(second.ETag).not.toBe(first.ETag);
    expect(await s3Failure(put('swap/missing.json', 'x', { IfMatch: first.ETag }))).toEqual({
      name: 'NoSuchKey',
      status: 404,
    });
  });

  it('refuses an If-None-Match other than * on a write, as S3 does (501)', async () => {
    expect(await s3Failure(put('create/b.json', 'x', { IfNoneMatch: '"abc"' }))).toEqual({
      name: 'NotImplemented',
      status: 501,
    });
  });

  it('deletes with If-Match only the version it names', async () => {
    const first = await put('delete/a.json', 'v1');
    const second = await put('delete/a.json', 'v2');

    expect(
      await s3Failure(
        t.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'delete/a.json', IfMatch: first.ETag })),
      ),
    ).toEqual({ name: 'PreconditionFailed', status: 412 });
    expect(await read('delete/a.json')).toBe('v2');

    await t.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'delete/a.json', IfMatch: second.ETag }));
    expect(await s3Failure(read('delete/a.json'))).toEqual({ name: 'NoSuchKey', status: 404 });
    expect(
      await s3Failure(
        t.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'delete/a.json', IfMatch: second.ETag })),
      ),
    ).toEqual({ name: 'NoSuchKey', status: 404 });
  });

  it('answers 409 ConditionalRequestConflict to a conditional write whose key was deleted while it uploaded', async () => {
    const first = await put('conflict/a.json', 'v1');
    const body = new PassThrough();
    const write = t.s3.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: 'conflict/a.json',
        Body: body,
        ContentLength: 4,
        IfMatch: first.ETag,
      }),
    );
    body.write('v2');
    // The delete lands once the upload has begun: the store is writing its data file beside v1's.
    while (dataFiles('conflict/a.json') < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    await t.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'conflict/a.json' }));
    body.end('!!');

    expect(await s3Failure(write)).toEqual({ name: 'ConditionalRequestConflict', status: 409 });
    expect(await s3Failure(read('conflict/a.json'))).toEqual({ name: 'NoSuchKey', status: 404 });
  });

  it('completes a multipart upload with If-None-Match: * only when the key is free', async () => {
    await put('multipart/a.bin', 'there');
    const { UploadId } = await t.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'multipart/a.bin' }));
    const part = await t.s3.send(
      new UploadPartCommand({ Bucket: BUCKET, Key: 'multipart/a.bin', UploadId, PartNumber: 1, Body: 'new' }),
    );

    const complete = t.s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: BUCKET,
        Key: 'multipart/a.bin',
        UploadId,
        IfNoneMatch: '*',
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
      }),
    );

    expect(await s3Failure(complete)).toEqual({ name: 'PreconditionFailed', status: 412 });
    expect(await read('multipart/a.bin')).toBe('there');
  });
});
