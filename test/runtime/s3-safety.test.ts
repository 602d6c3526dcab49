/**
 * The embedded S3 keeps every byte inside its folder, whatever the key, bucket name, query or
 * header (keys are data: `access-logs/../../x.csv` is a valid S3 key), serves each object
 * version whole while writers overlap, and listens on 127.0.0.1 only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localS3Client } from '../../runtime/s3-client.ts';
import { OBJECTS_FOLDER, type S3Server, startS3Server } from '../../runtime/s3-server.ts';
import { isValidBucketName, keyPath, type ObjectVersion } from '../../runtime/s3-store.ts';
import { tempDir } from '../support/temp.ts';

const md5 = (bytes: Uint8Array) => createHash('md5').update(bytes).digest('hex');
const tag = randomBytes(4).toString('hex');

/** A sandbox several levels deep, so keys climbing out of the data folder land in the sandbox, where they are seen. */
let sandbox: string;
let dataDir: string;
let server: S3Server;
let s3: S3Client;

beforeAll(async () => {
  sandbox = tempDir('s3-safety-');
  dataDir = join(sandbox, 'a', 'b', 'c', 'd', 'e', 'f', '.sluice');
  mkdirSync(dataDir, { recursive: true });
  server = await startS3Server({ dir: dataDir, port: 0 });
  s3 = localS3Client(server.endpoint);
});
afterAll(async () => {
  s3.destroy();
  await server.close();
  rmSync(sandbox, { recursive: true, force: true });
});

/** Every file under a folder, relative to it. */
function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => !entry.isDirectory())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)));
}

/** Files of the sandbox outside the data folder: there must be none. */
const outside = () => files(sandbox).filter((file) => !join(sandbox, file).startsWith(`${dataDir}/`));

const getBytes = async (client: S3Client, bucket: string, key: string) => {
  const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return { out, body: Buffer.from((await out.Body?.transformToByteArray()) ?? []) };
};

/** A raw HTTP request to the server (no SDK: paths, queries and headers exactly as given). */
function raw(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: Buffer,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const climb = '../'.repeat(12);
/** Keys S3 accepts (any UTF-8 up to 1,024 bytes): each is a key like any other. */
const HOSTILE_KEYS = [
  'access-logs/../../../../x.csv',
  `access-logs/${climb}tmp/sluice-escape-${tag}.csv`,
  `${climb}sluice-escape-${tag}.csv`,
  `/etc/sluice-absolute-${tag}.csv`,
  '/',
  '//double//slashes//',
  'ends-with-slash/',
  'a/./b/../c',
  '.',
  '..',
  '...',
  'access-logs\\..\\..\\..\\backslash.csv',
  '..\\..\\..\\x.csv',
  '%2e%2e/%2e%2e/percent.csv',
  '..%2F..%2Fencoded-slash.csv',
  'nul\u0000byte.csv',
  'controls\u0001\u001f\u007f.csv',
  'line\nbreak\r\ttab.csv',
  'Case.csv',
  'case.csv',
  'CON',
  'nul.csv',
  'aux/com1.txt',
  '~o.json',
  'x~d/y~c/z.data',
  '~uploads/0123456789abcdef0123456789abcdef/upload.json',
  'spaces and + plus & amp ? query # hash.csv',
  '日本語/데이터/😀.csv',
  'k'.repeat(1024),
  `deep/${'é'.repeat(509)}`,
  `${'long/'.repeat(204)}tail`,
  '/'.repeat(1024),
];

describe('embedded S3: hostile keys are keys, stored inside the data folder', () => {
  it('stores each hostile key inside the folder and reads it back byte for byte', async () => {
    const bodies = new Map(HOSTILE_KEYS.map((key) => [key, randomBytes(1000 + Math.floor(Math.random() * 1000))]));

    for (const [key, body] of bodies) {
      expect(Buffer.byteLength(key)).toBeLessThanOrEqual(1024);
      await s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: key, Body: body }));
    }

    for (const [key, body] of bodies) {
      const { out, body: got } = await getBytes(s3, 'sluice-input', key);
      expect(got.equals(body), JSON.stringify(key)).toBe(true);
      expect(out.ETag).toBe(`"${md5(body)}"`);
      const head = await s3.send(new HeadObjectCommand({ Bucket: 'sluice-input', Key: key }));
      expect(head).toMatchObject({ ETag: `"${md5(body)}"`, ContentLength: body.length, VersionId: out.VersionId });
    }
    expect(outside()).toEqual([]);
    expect(existsSync(`/tmp/sluice-escape-${tag}.csv`)).toBe(false);
    expect(existsSync(`/sluice-escape-${tag}.csv`)).toBe(false);
    expect(existsSync(`/etc/sluice-absolute-${tag}.csv`)).toBe(false);
  });

  it('lists hostile keys as they were written (XML-safe ones; S3 needs encoding-type=url for the others)', async () => {
    const xmlSafe = HOSTILE_KEYS.filter((key) => [...key].every((c) => c >= ' ' && c !== '\u007f'));
    for (const key of xmlSafe) await s3.send(new PutObjectCommand({ Bucket: 'sluice-working', Key: key, Body: key }));

    const listed: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({ Bucket: 'sluice-working', ContinuationToken: token, MaxKeys: 7 }),
      );
      listed.push(...(page.Contents ?? []).map((o) => o.Key ?? ''));
      token = page.NextContinuationToken;
    } while (token);

    // S3 lists keys in UTF-8 binary order.
    const expected = [...new Set(xmlSafe)].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect(listed).toEqual(expected);
    const prefixed = await s3.send(new ListObjectsV2Command({ Bucket: 'sluice-working', Prefix: 'access-logs/' }));
    expect(prefixed.Contents?.map((o) => o.Key)).toEqual([
      `access-logs/${climb}tmp/sluice-escape-${tag}.csv`,
      'access-logs/../../../../x.csv',
    ]);
    const delimited = await s3.send(
      new ListObjectsV2Command({ Bucket: 'sluice-working', Prefix: 'a', Delimiter: '/' }),
    );
    expect(delimited.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['a/', 'access-logs/', 'aux/']);
  });

  it('deletes a hostile key without touching anything outside the folder', async () => {
    const key = 'access-logs/../../../../x.csv';
    await s3.send(new DeleteObjectCommand({ Bucket: 'sluice-input', Key: key }));

    await expect(s3.send(new HeadObjectCommand({ Bucket: 'sluice-input', Key: key }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
    expect(outside()).toEqual([]);
  });

  it('refuses what S3 refuses: a key over 1,024 bytes of UTF-8', async () => {
    const put = s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: 'é'.repeat(513), Body: 'x' }));

    await expect(put).rejects.toMatchObject({ name: 'KeyTooLongError', $metadata: { httpStatusCode: 400 } });
    expect(outside()).toEqual([]);
  });

  it('keeps every stored name to letters, digits and percent escapes (no ".", "..", device names or capitals)', () => {
    const names = files(join(dataDir, OBJECTS_FOLDER)).flatMap((file) => file.split('/'));

    for (const name of names) expect(name).toMatch(/^(~[a-z]+|[a-z0-9_%A-F-]*)(~[a-z0-9.]*)?$/);
    expect(keyPath('..').stem).toBe('%2E%2E');
    expect(keyPath('a/../b')).toEqual({ dirs: ['a~d', '%2E%2E~d'], stem: 'b' });
  });
});

describe('embedded S3: bucket names, upload ids and headers cannot name a path', () => {
  it("follows S3's bucket naming rules", () => {
    for (const name of ['sluice-input', 'my.bucket-2', 'abc']) expect(isValidBucketName(name)).toBe(true);
    for (const name of ['..', '.', 'ab', 'a'.repeat(64), 'Upper', 'under_score', 'a..b', '-ab', 'ab-', '192.168.1.1']) {
      expect(isValidBucketName(name), name).toBe(false);
    }
    for (const name of ['xn--abc', 'sthree-x', 'amzn-s3-demo-x', 'ab-s3alias', 'ab--ol-s3', 'ab.mrap', 'ab--x-s3']) {
      expect(isValidBucketName(name), name).toBe(false);
    }
  });

  it('answers InvalidBucketName for bucket names that would leave the folder, from the path or the Host header', async () => {
    const attempts = [
      raw('PUT', `/%2E%2E/bucket-escape-${tag}.csv`, {}, Buffer.from('x')),
      raw('PUT', `/..%2F..%2F..%2Fsluice-input/escape-${tag}.csv`, {}, Buffer.from('x')),
      raw('PUT', `/%2E%2E%2F%2E%2E/escape-${tag}.csv`, {}, Buffer.from('x')),
      raw('PUT', '/%2E%2E'),
      raw('PUT', `/escape-${tag}.csv`, { host: '...s3.amazonaws.com' }, Buffer.from('x')),
      raw('GET', '/%2E%2E/objects'),
      raw('GET', '/%2E%2E?list-type=2'),
    ];

    for (const { status, text } of await Promise.all(attempts)) {
      expect(status).toBe(400);
      expect(text).toContain('<Code>InvalidBucketName</Code>');
    }
    expect(outside()).toEqual([]);
  });

  it('creates a well-named bucket inside the folder', async () => {
    await s3.send(new CreateBucketCommand({ Bucket: `new.bucket-${tag}` }));
    await s3.send(new PutObjectCommand({ Bucket: `new.bucket-${tag}`, Key: '../x', Body: 'y' }));

    expect((await getBytes(s3, `new.bucket-${tag}`, '../x')).body.toString()).toBe('y');
    expect(outside()).toEqual([]);
  });

  it('copies only objects of the store, whatever the copy source says', async () => {
    const fromOutside = raw('PUT', '/sluice-input/copied-1', { 'x-amz-copy-source': '/../../../../etc/hostname' });
    const keyClimbing = raw('PUT', '/sluice-input/copied-2', {
      'x-amz-copy-source': '/sluice-input/../../../../../../etc/hostname',
    });

    expect(await fromOutside).toMatchObject({ status: 400, text: expect.stringContaining('InvalidBucketName') });
    expect(await keyClimbing).toMatchObject({ status: 404, text: expect.stringContaining('NoSuchKey') });
    await s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: '../../src', Body: 'copied' }));
    await s3.send(
      new CopyObjectCommand({ Bucket: 'sluice-input', Key: '../../../dst', CopySource: 'sluice-input/../../src' }),
    );
    expect((await getBytes(s3, 'sluice-input', '../../../dst')).body.toString()).toBe('copied');
    expect(outside()).toEqual([]);
  });

  it('refuses upload ids and part numbers that are not the ones it gave', async () => {
    const part = raw('PUT', `/sluice-input/k?partNumber=1&uploadId=..%2F..%2F..%2Fpart-${tag}`, {}, Buffer.from('x'));
    const complete = raw(
      'POST',
      '/sluice-input/k?uploadId=..%2F..%2F..',
      {},
      Buffer.from(
        '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>',
      ),
    );
    const created = await raw('POST', '/sluice-input/k?uploads');
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created.text)?.[1];
    const badPart = raw('PUT', `/sluice-input/k?partNumber=..%2Fx&uploadId=${uploadId}`, {}, Buffer.from('x'));

    expect(await part).toMatchObject({ status: 404, text: expect.stringContaining('NoSuchUpload') });
    expect(await complete).toMatchObject({ status: 404, text: expect.stringContaining('NoSuchUpload') });
    expect(await badPart).toMatchObject({ status: 400, text: expect.stringContaining('InvalidArgument') });
    expect(outside()).toEqual([]);
  });
});

describe('embedded S3: overlapping writers of one key', () => {
  it('serves every GET one whole version with its own ETag, and ends with one of them and its version id', async () => {
    const key = 'access-logs/overlap.csv';
    const bodies = Array.from({ length: 5 }, () => randomBytes(5 * 1024 * 1024));
    const etags = new Set(bodies.map((b) => `"${md5(b)}"`));
    await s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: key, Body: bodies[0] }));
    // Writers as users' code would send them: the SDK's default client streams aws-chunked bodies.
    const writer = new S3Client({
      endpoint: server.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'any', secretAccessKey: 'any' },
    });
    let writing = true;
    const seen: { etag: string | undefined; md5: string; versionId: string | undefined }[] = [];
    const reader = (async () => {
      while (writing || seen.length < 10) {
        const { out, body } = await getBytes(s3, 'sluice-input', key);
        seen.push({ etag: out.ETag, md5: `"${md5(body)}"`, versionId: out.VersionId });
        const head = await s3.send(new HeadObjectCommand({ Bucket: 'sluice-input', Key: key }));
        expect(etags.has(head.ETag ?? '')).toBe(true);
        expect(head.VersionId).toBeTruthy();
      }
    })();

    const puts = await Promise.all(
      bodies.map((body) =>
        writer.send(
          new PutObjectCommand({
            Bucket: 'sluice-input',
            Key: key,
            Body: Readable.from([body.subarray(0, 1e6), body.subarray(1e6)]),
            ContentLength: body.length,
          }),
        ),
      ),
    );
    writing = false;
    await reader;
    writer.destroy();

    for (const get of seen) {
      expect(etags.has(get.md5)).toBe(true);
      expect(get.etag).toBe(get.md5);
      expect(get.versionId).toBeTruthy();
    }
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'sluice-input', Key: key }));
    const last = puts.find((put) => put.ETag === head.ETag);
    expect(last?.VersionId).toBe(head.VersionId);
    expect(new Set(puts.map((p) => p.VersionId)).size).toBe(5);
    const { body } = await getBytes(s3, 'sluice-input', key);
    expect(`"${md5(body)}"`).toBe(head.ETag);
    // The version record on disk is the object served, and no older version's bytes are left behind.
    const { dirs, stem } = keyPath(key);
    const dir = join(dataDir, OBJECTS_FOLDER, 'sluice-input', ...dirs);
    const record = JSON.parse(readFileSync(join(dir, `${stem}~o.json`), 'utf8')) as ObjectVersion;
    expect(record).toMatchObject({ key, etag: head.ETag?.replaceAll('"', ''), versionId: head.VersionId });
    expect(readdirSync(dir).filter((name) => name.startsWith(`${stem}~`))).toEqual(
      [`${stem}~o.json`, record.data].sort(),
    );
  }, 60_000);

  it('never makes an aborted upload visible', async () => {
    const key = 'access-logs/aborted.csv';
    await s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: key, Body: 'complete' }));

    await new Promise<void>((resolve) => {
      const req = request({
        host: '127.0.0.1',
        port: server.port,
        method: 'PUT',
        path: `/sluice-input/${key}`,
        headers: { 'content-length': String(1e6) },
      });
      req.on('error', () => resolve());
      req.write(Buffer.alloc(1000, 'x'), () => setTimeout(() => req.destroy(), 50));
      req.on('close', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 100));

    expect((await getBytes(s3, 'sluice-input', key)).body.toString()).toBe('complete');
  });
});

describe('embedded S3: network', () => {
  it('listens on 127.0.0.1 only', async () => {
    expect(server.address).toBe('127.0.0.1');
    expect(server.endpoint).toBe(`http://127.0.0.1:${server.port}`);
    const external = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
    if (!external) return;
    const reached = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: external, port: server.port, timeout: 2000 });
      socket.on('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
      socket.on('timeout', () => {
        socket.destroy();
        resolve(false);
      });
    });
    expect(reached).toBe(false);
  });
});
