/** The part of s3rver 3.x the embedded runtime uses (the package ships no types). */
declare module 's3rver' {
  import type { EventEmitter } from 'node:events';
  import type { IncomingMessage, Server } from 'node:http';
  import type { AddressInfo } from 'node:net';
  import type { Readable } from 'node:stream';

  export interface S3rverOptions {
    address?: string;
    port?: number;
    silent?: boolean;
    directory?: string;
    resetOnClose?: boolean;
    allowMismatchedSignatures?: boolean;
    vhostBuckets?: boolean;
    configureBuckets?: { name: string; configs?: (string | Buffer)[] }[];
  }

  /** The Koa context, as far as the runtime's middleware touches it. */
  export interface S3rverContext {
    req: IncomingMessage | Readable;
    method: string;
    path: string;
    /** Request headers (lower-case names). */
    headers: Record<string, string | string[] | undefined>;
    /** Set by s3rver's router (decoded bucket and key) once the request was routed. */
    params?: { bucket?: string; key?: string };
    /** The parsed query string; assigning it rewrites the request's query string. */
    query: Record<string, string | string[] | undefined>;
    status: number;
    body: unknown;
    /** Sets a response header. */
    set(name: string, value: string): void;
    response: { get(name: string): string };
  }

  export type Middleware = (ctx: S3rverContext, next: () => Promise<void>) => Promise<void>;

  /** One S3 event notification record, as s3rver emits them. */
  export interface S3rverEventRecord {
    eventName: string;
    s3: { bucket: { name: string }; object: { key: string; size?: number; eTag?: string } };
  }

  /** One page of the store's listing. */
  export interface S3rverListResult {
    objects: S3rverObject[];
    commonPrefixes: string[];
    isTruncated: boolean;
  }

  /** An object as s3rver's controllers hand it to the store and get it back (lib/models/object.js). */
  export interface S3rverObject {
    bucket: string;
    key: string;
    /** The body: a stream (PUT, POST, multipart), a Buffer (POST), null (listings, events). */
    content: Readable | Buffer | null;
    /** Lower-case header names: content-type, x-amz-meta-*, and etag, last-modified, content-length when read. */
    metadata: Record<string, string>;
    range?: { start: number; end: number };
  }

  /** A stored sub-resource (cors, website, tagging configuration; lib/models/config.js). */
  export interface S3rverConfig {
    readonly type: string;
    toXML(space?: number): string;
  }

  /** Listing options the controllers pass to the store. */
  export interface S3rverListOptions {
    delimiter?: string;
    startAfter?: string;
    prefix?: string;
    maxKeys?: number;
  }

  /**
   * The store interface s3rver's controllers and middleware call (what lib/stores/filesystem.js
   * implements). `ctx.store` and `ctx.app.store` are both used, so both must be replaced.
   */
  export interface S3rverStore {
    reset(): void;
    listBuckets(): Promise<{ name: string; creationDate: Date }[]>;
    getBucket(bucket: string): Promise<{ name: string; creationDate: Date } | null>;
    putBucket(bucket: string): Promise<{ name: string; creationDate: Date } | null>;
    deleteBucket(bucket: string): Promise<void>;
    listObjects(bucket: string, options: S3rverListOptions): Promise<S3rverListResult>;
    existsObject(bucket: string, key: string): Promise<boolean>;
    getObject(bucket: string, key: string, options?: { start?: number; end?: number }): Promise<S3rverObject | null>;
    putObject(object: S3rverObject): Promise<{ size: number; md5: string }>;
    copyObject(
      srcBucket: string,
      srcKey: string,
      destBucket: string,
      destKey: string,
      replacementMetadata: Record<string, string | string[] | undefined> | null,
    ): Promise<Record<string, string>>;
    deleteObject(bucket: string, key: string): Promise<void>;
    initiateUpload(bucket: string, key: string, uploadId: string, metadata: Record<string, unknown>): Promise<void>;
    putPart(
      bucket: string,
      uploadId: string,
      partNumber: string,
      content: Readable,
    ): Promise<{ size: number; md5: string }>;
    putObjectMultipart(
      bucket: string,
      uploadId: string,
      parts: { number: number; etag: string }[],
    ): Promise<{ size: number; md5: string }>;
    getSubresource(bucket: string, key: string | undefined, resourceType: string): Promise<S3rverConfig | null>;
    putSubresource(bucket: string, key: string | undefined, resource: S3rverConfig): Promise<void>;
    deleteSubresource(bucket: string, key: string | undefined, resourceType: string): Promise<void>;
  }

  export default class S3rver extends EventEmitter {
    constructor(options?: S3rverOptions);
    /** The store (lib/stores/filesystem.js unless replaced, together with `context.store`). */
    store: S3rverStore;
    /** Koa's prototype of every request context. */
    context: { store: S3rverStore };
    /** Koa's middleware stack; composed when the server starts. */
    middleware: Middleware[];
    httpServer?: Server;
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
    on(event: 'event', listener: (event: { Records: S3rverEventRecord[] }) => void): this;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }
}

/** s3rver's S3 error: thrown from a middleware, s3rver's error handler answers in S3's XML error shape. */
declare module 's3rver/lib/models/error.js' {
  export default class S3Error extends Error {
    constructor(code: string, message: string, detail?: Record<string, string>);
    readonly code: string;
    readonly status: number;
  }
}

/** s3rver's object model: picks the stored metadata out of request headers. */
declare module 's3rver/lib/models/object.js' {
  import type { Readable } from 'node:stream';
  import type { S3rverObject } from 's3rver';
  export default class S3Object implements S3rverObject {
    constructor(
      bucket: string,
      key: string,
      content: Readable | Buffer | null,
      metadata: Record<string, string | string[] | number | undefined>,
    );
    bucket: string;
    key: string;
    content: Readable | Buffer | null;
    metadata: Record<string, string>;
    range?: { start: number; end: number };
    static readonly ALLOWED_METADATA: readonly string[];
  }
}

/** s3rver's configuration models (cors, website, tagging). */
declare module 's3rver/lib/models/config.js' {
  import type { S3rverConfig } from 's3rver';
  export function getConfigModel(type: string): (new (xml: string) => S3rverConfig) | undefined;
}
