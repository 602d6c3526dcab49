import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localS3Client } from '../../runtime/s3-client.ts';
import { OBJECTS_FOLDER, startS3Server } from '../../runtime/s3-server.ts';
import { keyPath, type ObjectVersion } from '../../runtime/s3-store.ts';
import { tempDir } from '../support/temp.ts';
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

/** The bytes on disk of an object's current version (read past the server, through the store's layout). */
const stored = (bucket: string, key: string) => {
  const { dirs, stem } = keyPath(key);
  const dir = join(t.dir, OBJECTS_FOLDER, bucket, ...dirs);
  const version = JSON.parse(readFileSync(join(dir, `${stem}~o.json`), 'utf8')) as ObjectVersion;
  // A completed multipart upload is its parts' files, one after the other.
  return Buffer.concat((version.parts ?? [version]).map((part) => readFileSync(join(dir, part.data))));
};
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

  it('reports created objects with their decoded key, ETag, size and (input bucket) version id', async () => {
    const put = await t.s3.send(
      new PutObjectCommand({ Bucket: 'sluice-input', Key: 'access-logs/a b+c%.csv', Body: 'x' }),
    );
    const working = await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-working', Key: 'w/a.json', Body: '{}' }));

    expect(put.VersionId).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(t.events).toContainEqual({
      bucket: 'sluice-input',
      key: 'access-logs/a b+c%.csv',
      etag: put.ETag?.replaceAll('"', ''),
      size: 1,
      versionId: put.VersionId,
    });
    expect(t.events).toContainEqual({
      bucket: 'sluice-working',
      key: 'w/a.json',
      etag: working.ETag?.replaceAll('"', ''),
      size: 2,
    });
  });
});

describe('embedded S3 server: listing past 1,000 keys', () => {
  it('pages ListObjectsV2 with continuation tokens (s3rver alone fails the second page)', async () => {
    const keys = Array.from({ length: 1100 }, (_, i) => `page/${String(i).padStart(4, '0')}.json`);
    const queue = [...keys];
    const put = async () => {
      for (let key = queue.shift(); key; key = queue.shift()) {
        await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-working', Key: key, Body: '{}' }));
      }
    };
    await Promise.all(Array.from({ length: 16 }, put));

    const first = await t.s3.send(new ListObjectsV2Command({ Bucket: 'sluice-working', Prefix: 'page/' }));
    const second = await t.s3.send(
      new ListObjectsV2Command({
        Bucket: 'sluice-working',
        Prefix: 'page/',
        ContinuationToken: first.NextContinuationToken,
      }),
    );

    expect(first).toMatchObject({ IsTruncated: true, KeyCount: 1000 });
    expect(first.NextContinuationToken).toBeTruthy();
    expect(second).toMatchObject({ IsTruncated: false, KeyCount: 100, ContinuationToken: first.NextContinuationToken });
    expect(second.NextContinuationToken).toBeUndefined();
    expect([...(first.Contents ?? []), ...(second.Contents ?? [])].map((o) => o.Key)).toEqual(keys);
  });

  it('pages keys spread over nested folders in key order, with a prefix that ends inside a folder name', async () => {
    // Each folder gives a page at most MaxKeys + 1 keys: the pages must still be the sorted keys.
    const keys = ['tree/a', 'tree/a/b/1', 'tree/a/b/2', 'tree/a0', 'tree/a/c', 'tree/ab/1', 'tree/ab/2', 'tree/b']
      .concat(Array.from({ length: 7 }, (_, i) => `tree/a/b/x${i}`))
      .concat(Array.from({ length: 5 }, (_, i) => `tree/aa${i}`));
    for (const key of keys) await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-working', Key: key, Body: '{}' }));
    const pages = async (prefix: string, maxKeys: number) => {
      const listed: string[] = [];
      let token: string | undefined;
      do {
        const page = await t.s3.send(
          new ListObjectsV2Command({
            Bucket: 'sluice-working',
            Prefix: prefix,
            MaxKeys: maxKeys,
            ContinuationToken: token,
          }),
        );
        expect(page.KeyCount).toBeLessThanOrEqual(maxKeys);
        listed.push(...(page.Contents ?? []).map((o) => String(o.Key)));
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return listed;
    };
    const sorted = (prefix: string) =>
      keys.filter((k) => k.startsWith(prefix)).sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    for (const maxKeys of [1, 2, 3, 1000]) {
      expect(await pages('tree/', maxKeys)).toEqual(sorted('tree/'));
      expect(await pages('tree/a', maxKeys)).toEqual(sorted('tree/a'));
      expect(await pages('tree/a/b/x', maxKeys)).toEqual(sorted('tree/a/b/x'));
    }
  });

  it('refuses a continuation token it did not make', async () => {
    const listing = t.s3.send(
      new ListObjectsV2Command({ Bucket: 'sluice-working', ContinuationToken: 'bm90LWEtdG9rZW4' }),
    );

    await expect(listing).rejects.toMatchObject({ name: 'InvalidArgument' });
  });
});

describe('embedded S3 server: the versioned input bucket', () => {
  it('returns the VersionId of a PUT on HeadObject and GetObject, and a new one for each PUT', async () => {
    const first = await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: 'v/a.csv', Body: 'one' }));
    const head = await t.s3.send(new HeadObjectCommand({ Bucket: 'sluice-input', Key: 'v/a.csv' }));
    const second = await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: 'v/a.csv', Body: 'one' }));
    const got = await t.s3.send(new GetObjectCommand({ Bucket: 'sluice-input', Key: 'v/a.csv' }));
    await got.Body?.transformToString();

    expect(first.VersionId).toBeTruthy();
    expect(head.VersionId).toBe(first.VersionId);
    // Same bytes, same ETag: still a new version, as on a versioned S3 bucket.
    expect(second.ETag).toBe(first.ETag);
    expect(second.VersionId).toBeTruthy();
    expect(second.VersionId).not.toBe(first.VersionId);
    expect(got.VersionId).toBe(second.VersionId);
  });

  it('gives a multipart upload and a copy a version id too', async () => {
    const body = randomBytes(6 * 1024 * 1024);
    const uploaded = await new Upload({
      client: t.s3,
      params: { Bucket: 'sluice-input', Key: 'v/multi.bin', Body: body },
      partSize: 5 * 1024 * 1024,
    }).done();
    const copied = await t.s3.send(
      new CopyObjectCommand({ Bucket: 'sluice-input', Key: 'v/copy.bin', CopySource: 'sluice-input/v/multi.bin' }),
    );
    const headMulti = await t.s3.send(new HeadObjectCommand({ Bucket: 'sluice-input', Key: 'v/multi.bin' }));
    const headCopy = await t.s3.send(new HeadObjectCommand({ Bucket: 'sluice-input', Key: 'v/copy.bin' }));

    expect(uploaded.VersionId).toBeTruthy();
    expect(headMulti.VersionId).toBe(uploaded.VersionId);
    expect(copied.VersionId).toBeTruthy();
    expect(headCopy.VersionId).toBe(copied.VersionId);
    expect(t.events.find((e) => e.key === 'v/copy.bin')).toMatchObject({
      etag: headCopy.ETag?.replaceAll('"', ''),
      versionId: copied.VersionId,
    });
  });

  it('lists objects without a VersionId (ListObjectsV2 has none), and the working bucket has no versions', async () => {
    await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: 'v/listed.csv', Body: 'x' }));
    const put = await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-working', Key: 'v/w.json', Body: '1' }));
    const head = await t.s3.send(new HeadObjectCommand({ Bucket: 'sluice-working', Key: 'v/w.json' }));

    const listed = await t.s3.send(new ListObjectsV2Command({ Bucket: 'sluice-input', Prefix: 'v/listed' }));

    expect(listed.Contents?.[0]).toMatchObject({ Key: 'v/listed.csv' });
    expect(listed.Contents?.[0]).not.toHaveProperty('VersionId');
    expect(put.VersionId).toBeUndefined();
    expect(head.VersionId).toBeUndefined();
  });

  it('keeps version ids across a restart of the server', async () => {
    const dir = tempDir('s3-restart-');
    const headAfterRestart = async (put: boolean) => {
      const server = await startS3Server({ dir, port: 0 });
      const s3 = localS3Client(server.endpoint);
      try {
        const written = put
          ? await s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: 'kept.csv', Body: 'k' }))
          : undefined;
        const head = await s3.send(new HeadObjectCommand({ Bucket: 'sluice-input', Key: 'kept.csv' }));
        return written?.VersionId ?? head.VersionId;
      } finally {
        s3.destroy();
        await server.close();
      }
    };

    try {
      const put = await headAfterRestart(true);
      expect(put).toBeTruthy();
      expect(await headAfterRestart(false)).toBe(put);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('embedded S3 server: If-Match', () => {
  it('answers GetObject with a stale If-Match ETag with PreconditionFailed, and the current one with the body', async () => {
    const old = await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: 'm/a.csv', Body: 'old' }));
    const current = await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: 'm/a.csv', Body: 'new' }));

    const stale = t.s3.send(new GetObjectCommand({ Bucket: 'sluice-input', Key: 'm/a.csv', IfMatch: old.ETag }));
    await expect(stale).rejects.toMatchObject({ name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } });
    const got = await t.s3.send(
      new GetObjectCommand({ Bucket: 'sluice-input', Key: 'm/a.csv', IfMatch: current.ETag, Range: 'bytes=0-1' }),
    );
    expect(await got.Body?.transformToString()).toBe('ne');
    const unquoted = await t.s3.send(
      new GetObjectCommand({ Bucket: 'sluice-input', Key: 'm/a.csv', IfMatch: current.ETag?.replaceAll('"', '') }),
    );
    expect(await unquoted.Body?.transformToString()).toBe('new');
  });

  it("answers in S3's XML error shape, and HeadObject with 412 too", async () => {
    await t.s3.send(new PutObjectCommand({ Bucket: 'sluice-working', Key: 'm/b.json', Body: '{}' }));

    const response = await fetch(`${t.server.endpoint}/sluice-working/m/b.json`, {
      headers: { 'If-Match': '"0123456789abcdef0123456789abcdef"' },
    });
    const head = t.s3.send(
      new HeadObjectCommand({ Bucket: 'sluice-working', Key: 'm/b.json', IfMatch: '"0123456789abcdef"' }),
    );

    expect(response.status).toBe(412);
    expect(await response.text()).toMatch(/<Error><Code>PreconditionFailed<\/Code><Message>[^<]+<\/Message>/);
    await expect(head).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
  });
});
