import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import type { ObjectInfo, ObjectStore } from '../../functions/storage/object-store.ts';

/** An in-memory ObjectStore for unit tests of the domain code (the embedded runtime tests use real S3 APIs). */
export class MemoryStore implements ObjectStore {
  readonly objects = new Map<string, Buffer>();
  /** Ranged reads served, for tests of the planner and worker I/O. */
  readonly reads: { key: string; start?: number; end?: number }[] = [];

  put(bucket: string, key: string, body: string | Buffer): void {
    this.objects.set(`${bucket}/${key}`, Buffer.isBuffer(body) ? body : Buffer.from(body));
  }
  body(bucket: string, key: string): Buffer | undefined {
    return this.objects.get(`${bucket}/${key}`);
  }
  private etag(body: Buffer): string {
    let h = 0;
    for (const b of body) h = (h * 31 + b) | 0;
    return `e${(h >>> 0).toString(16)}-${body.length}`;
  }
  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    const body = this.body(bucket, key);
    return body ? { key, size: body.length, version: this.etag(body) } : undefined;
  }
  async getStream(bucket: string, key: string, start?: number, end?: number): Promise<Readable> {
    const bytes = await this.getBytes(bucket, key, start, end);
    const pieces: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 7919) pieces.push(bytes.subarray(i, i + 7919));
    return Readable.from(pieces);
  }
  async getBytes(bucket: string, key: string, start?: number, end?: number): Promise<Buffer> {
    const body = this.body(bucket, key);
    if (!body) throw Object.assign(new Error(`NoSuchKey ${key}`), { name: 'NoSuchKey' });
    this.reads.push({ key, start, end });
    return body.subarray(start ?? 0, end ?? body.length);
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
    for (const [k, body] of [...this.objects].sort(([a], [b]) => a.localeCompare(b))) {
      const key = k.slice(bucket.length + 1);
      if (k.startsWith(`${bucket}/`) && key.startsWith(prefix))
        out.push({ key, size: body.length, version: this.etag(body) });
    }
    return out;
  }
  async deletePrefix(bucket: string, prefix: string): Promise<number> {
    const keys = (await this.list(bucket, prefix)).map((o) => o.key);
    for (const key of keys) this.objects.delete(`${bucket}/${key}`);
    return keys.length;
  }
}
