/**
 * Completed multipart uploads on the embedded S3. Their parts become the object's data files
 * without being copied (runtime/s3-store.ts, linkParts), and the object is still S3's: its bytes,
 * ranges across parts, the multipart ETag, visible only once completed, served whole while a newer
 * version replaces it. And runtime/upload.ts's uploads, byte for byte.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore, UPLOAD_PART_BYTES } from '../../functions/storage/s3-store.ts';
import { OBJECTS_FOLDER } from '../../runtime/s3-server.ts';
import { keyPath, MAX_LINKED_PARTS, type ObjectVersion } from '../../runtime/s3-store.ts';
import { uploadFile } from '../../runtime/upload.ts';
import { s3Failure, startTestS3, type TestS3 } from './helpers.ts';

let t: TestS3;
beforeAll(async () => {
  t = await startTestS3();
});
afterAll(() => t.close());

const BUCKET = 'sluice-input';
const MiB = 1024 * 1024;

const md5 = (bytes: Buffer) => createHash('md5').update(bytes).digest('hex');

/** S3's ETag of a multipart upload: the MD5 of the parts' binary MD5s, a dash, the number of parts. */
const multipartEtag = (parts: readonly Buffer[]) =>
  `"${md5(Buffer.concat(parts.map((part) => Buffer.from(md5(part), 'hex'))))}-${parts.length}"`;

/** Starts a multipart upload and uploads its parts (not completed). */
async function uploadParts(key: string, parts: readonly Buffer[]) {
  const { UploadId } = await t.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
  const etags: string[] = [];
  for (const [i, body] of parts.entries()) {
    const out = await t.s3.send(
      new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: i + 1, Body: body }),
    );
    etags.push(out.ETag ?? '');
  }
  const complete = (condition: { IfNoneMatch?: string } = {}, named = etags) =>
    t.s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: BUCKET,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: named.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        ...condition,
      }),
    );
  return { complete };
}

const getBytes = async (key: string, range?: string) => {
  const out = await t.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, Range: range }));
  return Buffer.from(await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
};

/** The key's folder on disk and its files (record, data files). */
const keyFiles = (key: string) => {
  const { dirs, stem } = keyPath(key);
  const dir = join(t.dir, OBJECTS_FOLDER, BUCKET, ...dirs);
  const names = existsSync(dir) ? readdirSync(dir).filter((name) => name.startsWith(`${stem}~`)) : [];
  const record = names.includes(`${stem}~o.json`)
    ? (JSON.parse(readFileSync(join(dir, `${stem}~o.json`), 'utf8')) as ObjectVersion)
    : undefined;
  return { names: names.sort(), record, data: names.filter((name) => name.endsWith('.data')).sort() };
};

async function exists(key: string): Promise<boolean> {
  try {
    await t.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    return true;
  } catch (error) {
    if (error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404) return false;
    throw error;
  }
}

describe('completed multipart uploads on the embedded S3', () => {
  it('serves the parts byte for byte, ranges across them, with S3 multipart ETag, linked not copied', async () => {
    const parts = [randomBytes(1000), randomBytes(1), randomBytes(4000), randomBytes(2000)];
    const body = Buffer.concat(parts);
    const { complete } = await uploadParts('mp/linked.bin', parts);
    const done = await complete();

    expect(done.ETag).toBe(multipartEtag(parts));
    const head = await t.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'mp/linked.bin' }));
    expect(head).toMatchObject({ ETag: multipartEtag(parts), ContentLength: body.length });
    expect(t.events.at(-1)).toMatchObject({ key: 'mp/linked.bin', size: body.length });
    expect((await getBytes('mp/linked.bin')).equals(body)).toBe(true);
    for (const [start, end] of [
      [0, 0],
      [10, 999],
      [999, 1000],
      [999, 1001],
      [500, 6500],
      [1001, 5000],
      [5000, 7000],
      [0, body.length - 1],
    ] as const) {
      expect((await getBytes('mp/linked.bin', `bytes=${start}-${end}`)).equals(body.subarray(start, end + 1))).toBe(
        true,
      );
    }
    expect((await getBytes('mp/linked.bin', 'bytes=4990-')).equals(body.subarray(4990))).toBe(true);
    // The record lists the parts' files, each holding its part's bytes; the upload's folder is gone.
    const { record, data } = keyFiles('mp/linked.bin');
    expect(record?.parts?.map((part) => part.size)).toEqual(parts.map((part) => part.length));
    expect(data).toEqual(record?.parts?.map((part) => part.data).sort());
    expect(readdirSync(join(t.dir, OBJECTS_FOLDER, BUCKET, '~uploads'))).toEqual([]);
  });

  it('is not visible before it completes, nor after a completion that fails, and leaves no data behind', async () => {
    const parts = [randomBytes(3000), randomBytes(100)];
    const { complete } = await uploadParts('mp/failed.bin', parts);
    expect(await exists('mp/failed.bin')).toBe(false);

    const wrong = await s3Failure(complete({}, ['"0123456789abcdef0123456789abcdef"', multipartEtag(parts)]));
    expect(wrong).toEqual({ name: 'InvalidPart', status: 400 });
    expect(await exists('mp/failed.bin')).toBe(false);
    expect(keyFiles('mp/failed.bin').names).toEqual([]);

    // A conditional completion that fails links nothing in, and the upload can still complete.
    await t.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'mp/failed.bin', Body: 'there' }));
    const before = keyFiles('mp/failed.bin').names;
    expect(await s3Failure(complete({ IfNoneMatch: '*' }))).toEqual({ name: 'PreconditionFailed', status: 412 });
    expect(keyFiles('mp/failed.bin').names).toEqual(before);
    expect((await getBytes('mp/failed.bin')).toString()).toBe('there');
    await complete();
    expect((await getBytes('mp/failed.bin')).equals(Buffer.concat(parts))).toBe(true);
  });

  it('serves the version it started with whole while a newer one replaces it, then keeps only the new one', async () => {
    const parts = [randomBytes(2 * MiB), randomBytes(2 * MiB), randomBytes(2 * MiB)];
    await (await uploadParts('mp/replaced.bin', parts)).complete();

    const out = await t.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'mp/replaced.bin' }));
    const reading = (out.Body as Readable)[Symbol.asyncIterator]();
    const first = await reading.next();
    // The new version's commit deletes the old parts' names while this GET has read only a little.
    await t.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'mp/replaced.bin', Body: 'new' }));
    const chunks: Buffer[] = [first.value as Buffer];
    for (let chunk = await reading.next(); !chunk.done; chunk = await reading.next())
      chunks.push(chunk.value as Buffer);

    expect(md5(Buffer.concat(chunks))).toBe(md5(Buffer.concat(parts)));
    expect((await getBytes('mp/replaced.bin')).toString()).toBe('new');
    const { record, data } = keyFiles('mp/replaced.bin');
    expect(record?.parts).toBeUndefined();
    expect(data).toEqual([record?.data]);
  });

  it(`copies more than ${MAX_LINKED_PARTS} parts into one data file`, async () => {
    const parts = Array.from({ length: MAX_LINKED_PARTS + 1 }, () => randomBytes(100));
    const done = await (await uploadParts('mp/many.bin', parts)).complete();

    expect(done.ETag).toBe(multipartEtag(parts));
    expect((await getBytes('mp/many.bin')).equals(Buffer.concat(parts))).toBe(true);
    const { record, data } = keyFiles('mp/many.bin');
    expect(record?.parts).toBeUndefined();
    expect(data).toEqual([record?.data]);
  });

  it.skipIf(!existsSync('/proc/self/fd'))(
    'closes the part files a HEAD or a reader that stops never read',
    async () => {
      const parts = [randomBytes(MiB), randomBytes(MiB), randomBytes(MiB)];
      await (await uploadParts('mp/fds.bin', parts)).complete();
      const openFiles = () => readdirSync('/proc/self/fd').length;
      const stopEarly = async () => {
        const out = await t.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'mp/fds.bin' }));
        const body = out.Body as Readable;
        await body[Symbol.asyncIterator]().next();
        body.destroy();
      };
      await t.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'mp/fds.bin' }));
      await stopEarly();
      const before = openFiles();

      for (let i = 0; i < 20; i++) {
        await t.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'mp/fds.bin' }));
        await stopEarly();
      }
      await new Promise((resolve) => setTimeout(resolve, 200));

      // Leaking, each HEAD would keep 3 files open and each reader that stops 2.
      expect(openFiles()).toBeLessThan(before + 10);
    },
  );
});

describe('runtime/upload.ts', () => {
  it('uploads a file byte for byte: one PutObject up to 8 MiB, else parts of 8 MiB', async () => {
    const small = randomBytes(1000);
    const large = randomBytes(20 * MiB + 5);
    writeFileSync(join(t.dir, 'small.bin'), small);
    writeFileSync(join(t.dir, 'large.bin'), large);

    await uploadFile(t.s3, BUCKET, 'up/small.bin', join(t.dir, 'small.bin'));
    await uploadFile(t.s3, BUCKET, 'up/large.bin', join(t.dir, 'large.bin'));

    const smallHead = await t.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'up/small.bin' }));
    expect(smallHead.ETag).toBe(`"${md5(small)}"`);
    expect((await getBytes('up/small.bin')).equals(small)).toBe(true);
    const largeHead = await t.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'up/large.bin' }));
    const eight = 8 * MiB;
    expect(largeHead.ETag).toBe(
      multipartEtag([large.subarray(0, eight), large.subarray(eight, 2 * eight), large.subarray(2 * eight)]),
    );
    expect(md5(await getBytes('up/large.bin'))).toBe(md5(large));
  });

  it('uploads with the SDK default checksums too (CRC32 per part)', async () => {
    const client = new S3Client({
      endpoint: t.server.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'any', secretAccessKey: 'any' },
    });
    const body = randomBytes(9 * MiB);
    writeFileSync(join(t.dir, 'checksums.bin'), body);

    await uploadFile(client, BUCKET, 'up/checksums.bin', join(t.dir, 'checksums.bin'));

    expect(md5(await getBytes('up/checksums.bin'))).toBe(md5(body));
    client.destroy();
  });
});

describe("the functions' uploads (functions/storage/s3-store.ts putFile)", () => {
  it(`sends a file up to ${UPLOAD_PART_BYTES / MiB} MiB (a chunk's staging Parquet) as one PutObject, a larger one in parts of that size`, async () => {
    const store = new S3ObjectStore(t.s3);
    // A 64 MB chunk's staging Parquet is about 12 MB: one request, so its ETag is its plain MD5.
    const staging = randomBytes(12 * MiB);
    writeFileSync(join(t.dir, 'staging.parquet'), staging);
    await store.putFile(BUCKET, 'fn/staging.parquet', join(t.dir, 'staging.parquet'));
    const one = await t.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'fn/staging.parquet' }));
    expect(one.ETag).toBe(`"${md5(staging)}"`);

    const large = randomBytes(UPLOAD_PART_BYTES + 3);
    writeFileSync(join(t.dir, 'large.parquet'), large);
    await store.putFile(BUCKET, 'fn/large.parquet', join(t.dir, 'large.parquet'));
    const parts = await t.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'fn/large.parquet' }));
    expect(parts.ETag).toBe(multipartEtag([large.subarray(0, UPLOAD_PART_BYTES), large.subarray(UPLOAD_PART_BYTES)]));
    expect(md5(await getBytes('fn/large.parquet'))).toBe(md5(large));
  });
});
