import type { Readable } from 'node:stream';

/** What the domain code needs from S3. Lambda, the embedded runtime and tests pass different implementations. */
export interface ObjectStore {
  head(bucket: string, key: string): Promise<ObjectInfo | undefined>;
  /** Streams `[start, end)` of an object (to its end when `end` is undefined). */
  getStream(bucket: string, key: string, start?: number, end?: number): Promise<Readable>;
  getBytes(bucket: string, key: string, start?: number, end?: number): Promise<Buffer>;
  getJson<T>(bucket: string, key: string): Promise<T | undefined>;
  putJson(bucket: string, key: string, value: unknown): Promise<void>;
  putFile(bucket: string, key: string, path: string): Promise<void>;
  downloadFile(bucket: string, key: string, path: string): Promise<void>;
  list(bucket: string, prefix: string): Promise<ObjectInfo[]>;
  deletePrefix(bucket: string, prefix: string): Promise<number>;
}

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  /** ETag without quotes, or the version id when the bucket is versioned. */
  readonly version: string;
}
