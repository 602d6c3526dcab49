/**
 * In-memory stand-ins for S3 in unit tests of the domain code (the embedded runtime tests
 * use real S3 APIs). The bucket they model is VERSIONED, like the stack's input bucket:
 * every put makes a new version with its own VersionId, which HeadObject and GetObject
 * report next to the ETag while ListObjectsV2 reports only the ETag. `MemoryStore` is the
 * ObjectStore the domain code sees; `store.s3Client()` speaks S3's commands over the same
 * objects, so that the real `S3ObjectStore` adapter can be tested against a versioned
 * bucket; `TimedStore` charges simulated time per request, for tests of how Plan and
 * Finish scale.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { type ObjectInfo, type ObjectStore, objectReplaced } from '../../functions/storage/object-store.ts';

/** One stored version of an object. */
export interface StoredObject {
  readonly body: Buffer;
  /** Unquoted, as the domain code uses it (S3 sends it quoted). */
  readonly etag: string;
  /** What HeadObject and GetObject return on a versioned bucket; ListObjectsV2 does not. */
  readonly versionId: string;
}

/** A read served, for tests of the planner's and the worker's I/O. */
export interface ReadLog {
  readonly key: string;
  readonly start?: number;
  readonly end?: number;
  readonly ifMatch?: string;
}

/** S3 lists keys in UTF-8 binary order; UTF-16 order is the same for the keys tests use (no characters past U+FFFF). */
const byBinary = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** A chunked stream, as S3 bodies arrive. */
function streamOf(bytes: Buffer): Readable {
  const pieces: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 7919) pieces.push(bytes.subarray(i, i + 7919));
  return Readable.from(pieces);
}

export class MemoryStore implements ObjectStore {
  readonly objects = new Map<string, StoredObject>();
  readonly reads: ReadLog[] = [];
  /** Every `bucket/key` in S3's order (after `merge`), so that a listing is a binary search and a scan of its prefix. */
  private sorted: string[] = [];
  /** Keys added since the last listing, merged into `sorted` by the next one. */
  private added: string[] = [];
  /** What a listing says of each object, made once per version. */
  private readonly infos = new Map<string, ObjectInfo>();
  private versions = 0;

  private merge(): void {
    if (this.added.length === 0) return;
    const added = this.added.sort(byBinary);
    const merged: string[] = [];
    let i = 0;
    let j = 0;
    while (i < this.sorted.length || j < added.length) {
      if (j >= added.length || (i < this.sorted.length && byBinary(this.sorted[i] as string, added[j] as string) < 0)) {
        merged.push(this.sorted[i++] as string);
      } else {
        merged.push(added[j++] as string);
      }
    }
    this.sorted = merged;
    this.added = [];
  }

  /** Index of the first entry of `sorted` not before `k`. */
  private lowerBound(k: string): number {
    this.merge();
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (byBinary(this.sorted[mid] as string, k) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Writes a new version of the object (a new VersionId; the ETag is the MD5 of the body, as S3's single-part ETag). */
  put(bucket: string, key: string, body: string | Buffer): void {
    const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
    this.versions++;
    const versionId = `${this.versions.toString(36).padStart(8, '0')}.vId_NotAnETag`;
    const etag = createHash('md5').update(bytes).digest('hex');
    const k = `${bucket}/${key}`;
    if (!this.objects.has(k)) this.added.push(k);
    this.objects.set(k, { body: bytes, etag, versionId });
    this.infos.set(k, { key, size: bytes.length, version: etag });
  }
  body(bucket: string, key: string): Buffer | undefined {
    return this.objects.get(`${bucket}/${key}`)?.body;
  }
  stored(bucket: string, key: string): StoredObject | undefined {
    return this.objects.get(`${bucket}/${key}`);
  }
  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    const o = this.stored(bucket, key);
    return o ? { key, size: o.body.length, version: o.etag } : undefined;
  }
  async getStream(bucket: string, key: string, start?: number, end?: number, ifMatch?: string): Promise<Readable> {
    return streamOf(await this.getBytes(bucket, key, start, end, ifMatch));
  }
  async getBytes(bucket: string, key: string, start?: number, end?: number, ifMatch?: string): Promise<Buffer> {
    const o = this.stored(bucket, key);
    if (!o) throw Object.assign(new Error(`NoSuchKey ${key}`), { name: 'NoSuchKey' });
    if (ifMatch !== undefined && ifMatch !== o.etag) throw objectReplaced(bucket, key, ifMatch);
    this.reads.push({ key, start, end, ...(ifMatch !== undefined ? { ifMatch } : {}) });
    return o.body.subarray(start ?? 0, end ?? o.body.length);
  }
  async getJson<T>(bucket: string, key: string): Promise<T | undefined> {
    const body = this.body(bucket, key);
    return body ? (JSON.parse(body.toString('utf8')) as T) : undefined;
  }
  async putJson(bucket: string, key: string, value: unknown): Promise<void> {
    this.put(bucket, key, JSON.stringify(value));
  }
  async putFile(bucket: string, key: string, path: string): Promise<void> {
    this.put(bucket, key, readFileSync(path));
  }
  async downloadFile(bucket: string, key: string, path: string): Promise<void> {
    const body = this.body(bucket, key);
    if (!body) throw new Error(`NoSuchKey ${key}`);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, body);
  }
  async list(bucket: string, prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    const start = `${bucket}/${prefix}`;
    for (let i = this.lowerBound(start); i < this.sorted.length; i++) {
      const k = this.sorted[i] as string;
      if (!k.startsWith(start)) break;
      out.push(this.infos.get(k) as ObjectInfo);
    }
    return out;
  }
  async deleteKeys(bucket: string, keys: readonly string[]): Promise<void> {
    const gone = new Set<string>();
    for (const key of keys) {
      const k = `${bucket}/${key}`;
      this.infos.delete(k);
      if (this.objects.delete(k)) gone.add(k);
    }
    if (gone.size === 0) return;
    this.sorted = this.sorted.filter((k) => !gone.has(k));
    this.added = this.added.filter((k) => !gone.has(k));
  }
  async deletePrefix(bucket: string, prefix: string): Promise<number> {
    const keys = (await this.list(bucket, prefix)).map((o) => o.key);
    await this.deleteKeys(bucket, keys);
    return keys.length;
  }

  /**
   * An S3 client over these objects, for `new S3ObjectStore(store.s3Client())`: answers
   * HeadObject and GetObject with ETag (quoted) AND VersionId, ListObjectsV2 (1,000 keys a
   * page) with the ETag only, GetObject's `If-Match` with 412 PreconditionFailed, as S3
   * does on a versioned bucket. PutObject and DeleteObjects too; nothing else.
   */
  s3Client(): S3Client {
    const failure = (name: string, status: number, message: string) =>
      new S3ServiceException({ name, $fault: 'client', $metadata: { httpStatusCode: status }, message });
    const send = async (command: unknown): Promise<unknown> => {
      if (command instanceof HeadObjectCommand) {
        const o = this.stored(command.input.Bucket ?? '', command.input.Key ?? '');
        if (!o) throw failure('NotFound', 404, 'Not Found');
        return { ContentLength: o.body.length, ETag: `"${o.etag}"`, VersionId: o.versionId };
      }
      if (command instanceof GetObjectCommand) {
        const { Bucket = '', Key = '', Range, IfMatch } = command.input;
        const o = this.stored(Bucket, Key);
        if (!o) throw failure('NoSuchKey', 404, 'The specified key does not exist.');
        if (IfMatch !== undefined && IfMatch.replaceAll('"', '') !== o.etag) {
          throw failure('PreconditionFailed', 412, 'At least one of the pre-conditions you specified did not hold');
        }
        const m = Range ? /^bytes=(\d+)-(\d*)$/.exec(Range) : null;
        const start = m ? Number(m[1]) : 0;
        const end = m?.[2] ? Number(m[2]) + 1 : o.body.length;
        this.reads.push({ key: Key, start, end, ...(IfMatch !== undefined ? { ifMatch: IfMatch } : {}) });
        const bytes = o.body.subarray(start, end);
        return { Body: streamOf(bytes), ContentLength: bytes.length, ETag: `"${o.etag}"`, VersionId: o.versionId };
      }
      if (command instanceof PutObjectCommand) {
        const { Bucket = '', Key = '', Body } = command.input;
        this.put(Bucket, Key, typeof Body === 'string' ? Body : Buffer.from(Body as Uint8Array));
        const o = this.stored(Bucket, Key) as StoredObject;
        return { ETag: `"${o.etag}"`, VersionId: o.versionId };
      }
      if (command instanceof ListObjectsV2Command) {
        const { Bucket = '', Prefix = '', ContinuationToken } = command.input;
        const all = await this.list(Bucket, Prefix);
        const from = ContinuationToken ? Number(ContinuationToken) : 0;
        const page = all.slice(from, from + 1000);
        const more = from + 1000 < all.length;
        return {
          Contents: page.map((o) => ({ Key: o.key, Size: o.size, ETag: `"${o.version}"` })),
          IsTruncated: more,
          ...(more ? { NextContinuationToken: String(from + 1000) } : {}),
        };
      }
      if (command instanceof DeleteObjectsCommand) {
        const keys = (command.input.Delete?.Objects ?? []).map((o) => o.Key ?? '');
        await this.deleteKeys(command.input.Bucket ?? '', keys);
        return { Deleted: keys.map((Key) => ({ Key })), Errors: [] };
      }
      throw new Error(`the in-memory S3 client does not serve ${(command as object).constructor.name}`);
    };
    return { send } as unknown as S3Client;
  }
}

/**
 * A simulated clock for I/O: every request takes `latencyMs` of simulated time, requests
 * in flight together overlap, and nothing really waits. `now` is the simulated time spent.
 * Requests complete in rounds: all those started before the event loop next turns are
 * one round.
 */
export class SimulatedClock {
  now = 0;
  readonly latencyMs: number;
  private pending: { due: number; resolve: () => void }[] = [];
  private scheduled = false;
  constructor(latencyMs: number) {
    this.latencyMs = latencyMs;
  }

  /** One request's latency. */
  request(): Promise<void> {
    return new Promise((resolve) => {
      this.pending.push({ due: this.now + this.latencyMs, resolve });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.advance());
      }
    });
  }

  private advance(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const due = Math.min(...this.pending.map((p) => p.due));
    const ready = this.pending.filter((p) => p.due === due);
    this.pending = this.pending.filter((p) => p.due !== due);
    this.now = due;
    for (const p of ready) p.resolve();
    if (this.pending.length > 0) {
      this.scheduled = true;
      setImmediate(() => this.advance());
    }
  }
}

/**
 * An ObjectStore over a MemoryStore whose every S3 request costs the clock's latency: a
 * listing costs one request per 1,000 keys, one after another (ListObjectsV2 pages), and
 * deleting costs one request per 1,000 keys (DeleteObjects). Counts requests too.
 */
export class TimedStore implements ObjectStore {
  requests = 0;
  readonly inner: MemoryStore;
  readonly clock: SimulatedClock;
  constructor(inner: MemoryStore, clock: SimulatedClock) {
    this.inner = inner;
    this.clock = clock;
  }
  private async charge<T>(result: () => Promise<T>, requests = 1): Promise<T> {
    for (let i = 0; i < requests; i++) {
      this.requests++;
      await this.clock.request();
    }
    return result();
  }
  head(bucket: string, key: string) {
    return this.charge(() => this.inner.head(bucket, key));
  }
  getStream(bucket: string, key: string, start?: number, end?: number, ifMatch?: string) {
    return this.charge(() => this.inner.getStream(bucket, key, start, end, ifMatch));
  }
  getBytes(bucket: string, key: string, start?: number, end?: number, ifMatch?: string) {
    return this.charge(() => this.inner.getBytes(bucket, key, start, end, ifMatch));
  }
  getJson<T>(bucket: string, key: string) {
    return this.charge(() => this.inner.getJson<T>(bucket, key));
  }
  putJson(bucket: string, key: string, value: unknown) {
    return this.charge(() => this.inner.putJson(bucket, key, value));
  }
  putFile(bucket: string, key: string, path: string) {
    return this.charge(() => this.inner.putFile(bucket, key, path));
  }
  downloadFile(bucket: string, key: string, path: string) {
    return this.charge(() => this.inner.downloadFile(bucket, key, path));
  }
  async list(bucket: string, prefix: string) {
    const all = await this.inner.list(bucket, prefix);
    return this.charge(async () => all, Math.max(1, Math.ceil(all.length / 1000)));
  }
  deleteKeys(bucket: string, keys: readonly string[]) {
    return this.charge(() => this.inner.deleteKeys(bucket, keys), Math.ceil(keys.length / 1000));
  }
  async deletePrefix(bucket: string, prefix: string) {
    const keys = (await this.list(bucket, prefix)).map((o) => o.key);
    await this.deleteKeys(bucket, keys);
    return keys.length;
  }
}
