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
  }

  export type Middleware = (ctx: S3rverContext, next: () => Promise<void>) => Promise<void>;

  /** One S3 event notification record, as s3rver emits them. */
  export interface S3rverEventRecord {
    eventName: string;
    s3: { bucket: { name: string }; object: { key: string; size?: number; eTag?: string } };
  }

  export default class S3rver extends EventEmitter {
    constructor(options?: S3rverOptions);
    /** Koa's middleware stack; composed when the server starts. */
    middleware: Middleware[];
    httpServer?: Server;
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
    on(event: 'event', listener: (event: { Records: S3rverEventRecord[] }) => void): this;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }
}
