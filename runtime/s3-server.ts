/**
 * The embedded S3: s3rver on 127.0.0.1 with its data under `<dir>/s3`, the three Sluice
 * buckets, and object-created notifications (the local stand-in for the EventBridge rule).
 */
import { mkdirSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import S3rver, { type Middleware, type S3rverEventRecord } from 's3rver';
import { AwsChunkedDecoder, decodedHeaders, isAwsChunked } from './aws-chunked.ts';

/** The buckets of the stack, under their local names. */
export const LOCAL_BUCKETS = {
  input: 'sluice-input',
  working: 'sluice-working',
  warehouse: 'sluice-warehouse',
} as const;

/** The default port of `sluice dev`. */
export const DEFAULT_S3_PORT = 4577;

export interface ObjectCreated {
  readonly bucket: string;
  readonly key: string;
  /** Without quotes. */
  readonly etag: string;
  readonly size: number;
}

export interface S3ServerOptions {
  /** The runtime folder; objects are kept under `<dir>/s3`. */
  readonly dir: string;
  /** @default 4577; 0 picks a free port. */
  readonly port?: number;
  /** Called for each object created (PUT, POST, COPY, completed multipart upload). */
  readonly onObjectCreated?: (event: ObjectCreated) => void;
}

export interface S3Server {
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  close(): Promise<void>;
}

/**
 * Runs before s3rver's own middleware: (1) decodes aws-chunked bodies so the stored bytes
 * are the object's bytes (s3rver 3.7 would store the chunk framing); (2) drops the request
 * signature: the server listens on 127.0.0.1 only and accepts any credentials, as LocalStack does.
 */
const localRequests: Middleware = async (ctx, next) => {
  const req = ctx.req as IncomingMessage;
  delete req.headers.authorization;
  if ((ctx.method === 'PUT' || ctx.method === 'POST') && isAwsChunked(req.headers)) {
    decodedHeaders(req.headers);
    const decoded = new AwsChunkedDecoder();
    req.on('error', (error) => decoded.destroy(error));
    ctx.req = req.pipe(decoded);
  }
  await next();
};

/** Starts the S3 server and creates the Sluice buckets if missing. */
export async function startS3Server(options: S3ServerOptions): Promise<S3Server> {
  const directory = join(options.dir, 's3');
  mkdirSync(directory, { recursive: true });
  const server = new S3rver({
    address: '127.0.0.1',
    port: options.port ?? DEFAULT_S3_PORT,
    silent: true,
    directory,
    vhostBuckets: false,
    configureBuckets: Object.values(LOCAL_BUCKETS).map((name) => ({ name })),
  });
  server.middleware.unshift(localRequests);
  const onObjectCreated = options.onObjectCreated;
  if (onObjectCreated) {
    server.on('event', (event: { Records: S3rverEventRecord[] }) => {
      for (const record of event.Records) {
        if (!record.eventName.startsWith('ObjectCreated:')) continue;
        onObjectCreated({
          bucket: record.s3.bucket.name,
          // Unlike S3 (form-URL-encoded keys), s3rver emits the key its router already decoded:
          // decoding again would corrupt keys containing '+' or '%'.
          key: record.s3.object.key,
          etag: (record.s3.object.eTag ?? '').replaceAll('"', ''),
          size: record.s3.object.size ?? 0,
        });
      }
    });
  }
  const address = await server.run();
  const port = address.port;
  return {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    close: async () => {
      server.httpServer?.closeAllConnections();
      await server.close();
    },
  };
}
