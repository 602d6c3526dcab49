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

  /** One page of the filesystem store's listing. */
  export interface S3rverListResult {
    objects: { key: string }[];
    commonPrefixes: string[];
    isTruncated: boolean;
  }

  export default class S3rver extends EventEmitter {
    constructor(options?: S3rverOptions);
    /** The filesystem store (lib/stores/filesystem.js). */
    store: { listObjects(bucket: string, options: Record<string, unknown>): Promise<S3rverListResult> };
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
