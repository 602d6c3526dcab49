import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestS3, type TestS3 } from './helpers.ts';

let t: TestS3;
beforeAll(async () => {
  t = await startTestS3();
});
afterAll(() => t.close());

/** The SDK as a user's code would build it: default flexible checksums (CRC32, aws-chunked for streams). */
const defaultClient = () =>
  new S3Client({
    endpoint: t.server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'any', secretAccessKey: 'any' },
  });

const stored = (bucket: string, key: string) => readFileSync(join(t.dir, 's3', bucket, `${key}._S3rver_object`));
const get = async (key: string, range?: string) => {
  const out = await t.s3.send(new GetObjectCommand({ Bucket: 'sluice-input', Key: key, Range: range }));
  return Buffer.from(await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
};

describe('embedded S3 server', () => {
  it('stores a streamed PutObject of the default SDK (aws-chunked + CRC32 trailer) byte for byte', async () => {
    const body = randomBytes(300_000);

    await defaultClient().send(
      new PutObjectCommand({
        Bucket: 'sluice-input',
        Key: 'streamed.bin',
        Body: Readable.from([body]),
        ContentLength: body.length,
      }),
    );

    expect(stored('sluice-input', 'streamed.bin').equals(body)).toBe(true);
  });

  it('stores a 20 MB multipart upload byte for byte and serves ranges of it', async () => {
    const body = randomBytes(20 * 1024 * 1024);

    await new Upload({
      client: defaultClient(),
      params: {
        Bucket: 'sluice-input',
        Key: 'big/multi part.bin',
        Body: Readable.from([body.subarray(0, 7e6), body.subarray(7e6)]),
      },
    }).done();

    expect(stored('sluice-input', 'big/multi part.bin').equals(body)).toBe(true);
    expect((await get('big/multi part.bin', 'bytes=5242870-5242889')).equals(body.subarray(5242870, 5242890))).toBe(
      true,
    );
  });

  it('decodes a SigV4 streaming body with chunk signatures (what the AWS CLI sends)', async () => {
    const body = randomBytes(70_000);
    const sig = `chunk-signature=${'a'.repeat(64)}`;
    const framed = Buffer.concat([
      Buffer.from(`10000;${sig}\r\n`),
      body.subarray(0, 0x10000),
      Buffer.from(`\r\n${(body.length - 0x10000).toString(16)};${sig}\r\n`),
      body.subarray(0x10000),
      Buffer.from(`\r\n0;${sig}\r\n\r\n`),
    ]);

    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: t.server.port,
          method: 'PUT',
          path: '/sluice-input/cli/signed.bin',
          headers: {
            'content-encoding': 'aws-chunked',
            'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
            'x-amz-decoded-content-length': String(body.length),
            'content-length': String(framed.length),
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(framed);
    });

    expect(status).toBe(200);
    expect(stored('sluice-input', 'cli/signed.bin').equals(body)).toBe(true);
  });

  it('lists and deletes objects', async () => {
    await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-working', Key: 'x/1.json', Body: '1' }));
    await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-working', Key: 'x/2.json', Body: '2' }));

    await t.s3.send(new DeleteObjectsCommand({ Bucket: 'sluice-working', Delete: { Objects: [{ Key: 'x/1.json' }] } }));
    const listed = await t.s3.send(new ListObjectsV2Command({ Bucket: 'sluice-working', Prefix: 'x/' }));

    expect(listed.Contents?.map((o) => o.Key)).toEqual(['x/2.json']);
  });

  it('reports created objects with their decoded key and ETag', async () => {
    const put = await t.s3.send(
      new PutObjectCommand({ Bucket: 'sluice-input', Key: 'access-logs/a b+c%.csv', Body: 'x' }),
    );

    expect(t.events).toContainEqual({
      bucket: 'sluice-input',
      key: 'access-logs/a b+c%.csv',
      etag: put.ETag?.replaceAll('"', ''),
      size: 1,
    });
  });
});
