/**
 * The embedded S3: s3rver's HTTP front (routing, XML, errors) on 127.0.0.1 only, over the
 * runtime's own object store under `<dir>/objects` (runtime/s3-store.ts: every key, however
 * hostile, stays inside that folder; writes are atomic), the three Sluice buckets, and
 * object-created notifications (the local stand-in for the EventBridge rule).
 *
 * Where s3rver is kinder than S3, the middleware here makes it behave like the stack's buckets:
 * - The key is everything after `/<bucket>/`, `..`, empty segments and a trailing '/' included.
 * - The input bucket is versioned on AWS (the working and warehouse buckets are not). s3rver has
 *   no versioning, so every object-creating request on {@link VERSIONED_BUCKETS} (PUT, POST,
 *   copy, CompleteMultipartUpload) gets a new VersionId, given by the store in the same atomic
 *   step that makes the version current (so it survives restarts and always belongs to the bytes
 *   served), and returned as `x-amz-version-id` on that response and on HeadObject and
 *   GetObject, as S3 does; ListObjectsV2 returns none, as S3's ListObjectsV2 does not. Only the
 *   current version is kept (older versions are not readable).
 *   https://docs.aws.amazon.com/AmazonS3/latest/userguide/versioning-workflows.html
 * - `If-Match` on GetObject and HeadObject (s3rver only implements If-None-Match): when the
 *   object's ETag differs, S3 answers 412 PreconditionFailed.
 *   https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html (If-Match)
 * - Conditional writes and deletes (`conditionalRequest` below; checked by the store under the key's
 *   lock): If-None-Match: * and If-Match on PutObject and CompleteMultipartUpload, If-Match on
 *   DeleteObject, answered 412 PreconditionFailed, 404 NoSuchKey or 409 ConditionalRequestConflict.
 *   https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
 * - ListObjectsV2 past 1,000 keys: s3rver makes its continuation tokens with DES, which the
 *   OpenSSL 3 of Node >= 17 no longer has, so every listing that needs a second page failed with
 *   InternalError. The continuation tokens are made here instead (opaque to clients, as S3's).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import S3rver, { type Middleware, type S3rverContext } from 's3rver';
import S3Error from 's3rver/lib/models/error.js';
import { type AwsJsonHandler, awsJsonApis } from './aws-api.ts';
import { AwsChunkedDecoder, decodedHeaders, isAwsChunked } from './aws-chunked.ts';
import { faults } from './faults.ts';
import { ObjectStore, type ObjectVersion, type WriteConditions } from './s3-store.ts';

/** The buckets of the stack, under their local names. */
export const LOCAL_BUCKETS = {
  input: 'sluice-input',
  working: 'sluice-working',
  warehouse: 'sluice-warehouse',
} as const;

/** The buckets with versioning enabled, as in the stack (only the input bucket). */
export const VERSIONED_BUCKETS: ReadonlySet<string> = new Set([LOCAL_BUCKETS.input]);

/** The folder under the runtime folder that holds the buckets (see runtime/s3-store.ts for its layout). */
export const OBJECTS_FOLDER = 'objects';

/** The only address the server listens on: never reachable from another machine. */
export const LOCAL_ADDRESS = '127.0.0.1';

/** The default port of `sluice dev`. */
export const DEFAULT_S3_PORT = 4577;

/**
 * An object was created: what the EventBridge "Object Created" event's detail carries that the
 * runtime uses (bucket name, object key, etag, size, version-id).
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html
 */
export interface ObjectCreated {
  readonly bucket: string;
  readonly key: string;
  /** Without quotes. */
  readonly etag: string;
  readonly size: number;
  /** Only on a versioned bucket. */
  readonly versionId?: string;
}

/**
 * An object was deleted (DeleteObject, or one key of DeleteObjects, of an object that existed):
 * what the EventBridge "Object Deleted" event's detail carries that the runtime uses.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html
 */
export interface ObjectDeleted {
  readonly bucket: string;
  readonly key: string;
}

export interface S3ServerOptions {
  /** The AWS JSON services served on the same port, by X-Amz-Target prefix (`AWSStepFunctions`, `AmazonAthena`). */
  readonly awsApis?: () => Readonly<Record<string, AwsJsonHandler>>;
  /** The runtime folder; objects are kept under `<dir>/s3`. */
  readonly dir: string;
  /** @default 4577; 0 picks a free port. */
  readonly port?: number;
  /** Called for each object created (PUT, POST, COPY, completed multipart upload). */
  readonly onObjectCreated?: (event: ObjectCreated) => void;
  /** Called for each object deleted (DeleteObject, DeleteObjects), after the store removed it. */
  readonly onObjectDeleted?: (event: ObjectDeleted) => void;
}

export interface S3Server {
  /** The address it listens on: always 127.0.0.1 (never all interfaces). */
  readonly address: string;
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  close(): Promise<void>;
}

/**
 * The key is everything after `/<bucket>/`, as S3 reads it: empty segments (`a//b`, a leading
 * '/'), `.` and `..` segments and a trailing '/' are part of the key. s3rver's router matches
 * keys segment by segment and misses some of these, so the key is handed to it as one
 * percent-encoded segment, which the router decodes back to the same key.
 */
function routeWholeKey(ctx: S3rverContext): void {
  const match = /^\/([^/]+)\/(.+)$/s.exec(ctx.path);
  if (!match) return;
  let key: string;
  try {
    key = decodeURIComponent(match[2] ?? '');
  } catch {
    throw new S3Error('InvalidURI', "Couldn't parse the specified URI.");
  }
  ctx.path = `/${match[1]}/${encodeURIComponent(key)}`;
}

/**
 * Runs before s3rver's own middleware: (0) routes the whole key (above); (1) decodes aws-chunked bodies so the stored bytes
 * are the object's bytes (s3rver 3.7 would store the chunk framing); (2) drops the request
 * signature: the server listens on 127.0.0.1 only and accepts any credentials, as LocalStack does.
 */
const localRequests: Middleware = async (ctx, next) => {
  const req = ctx.req as IncomingMessage;
  delete req.headers.authorization;
  routeWholeKey(ctx);
  if ((ctx.method === 'PUT' || ctx.method === 'POST') && isAwsChunked(req.headers)) {
    decodedHeaders(req.headers);
    const decoded = new AwsChunkedDecoder();
    req.on('error', (error) => decoded.destroy(error));
    ctx.req = req.pipe(decoded);
  }
  await next();
};

/**
 * Fault injection (runtime/faults.ts; off unless SLUICE_FAULTS sets `s3-5xx`): an S3 request is
 * answered 503 SlowDown, in S3's XML error shape, as S3 does when it asks a client to slow down;
 * the SDKs retry it. The AWS JSON APIs on the same port (answered before this) are never touched.
 * https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
 */
const injectedS3Faults: Middleware = async (ctx, next) => {
  if (faults().roll('s3-5xx', `${ctx.method} ${ctx.path}`)) {
    throw new S3Error('SlowDown', 'Please reduce your request rate.');
  }
  await next();
};

/** What the store did while serving one request (its hooks run inside the request). */
interface RequestScope {
  /** Object versions made current (PUT, POST, copy, completed multipart upload). */
  readonly created: { bucket: string; version: ObjectVersion }[];
  /** The object version a GET or HEAD served. */
  served?: { bucket: string; version: ObjectVersion };
  /** A ListObjectsV2 request: the token it came with, and the last key of a truncated page. */
  listV2?: { token?: string; next?: string };
  /** A conditional PutObject, CompleteMultipartUpload or DeleteObject: its headers, and whether the store read them. */
  conditional?: { readonly conditions: WriteConditions; read: boolean };
}

/** ListObjectsV2 continuation tokens: the bucket and the last key listed, base64url (opaque to clients). */
const continuationToken = (bucket: string, key: string) =>
  Buffer.from(JSON.stringify([bucket, key])).toString('base64url');

function readContinuationToken(token: string, bucket: string): string | undefined {
  try {
    const [tokenBucket, key] = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown[];
    return tokenBucket === bucket && typeof key === 'string' ? key : undefined;
  } catch {
    return undefined;
  }
}

/** The bucket of a bucket-level request path (`/bucket` or `/bucket/`), before s3rver's router ran. */
function pathBucket(path: string): string | undefined {
  const bucket = /^\/([^/]+)\/?$/.exec(path)?.[1];
  try {
    return bucket === undefined ? undefined : decodeURIComponent(bucket);
  } catch {
    return undefined;
  }
}

/** Before s3rver: a ListObjectsV2 continuation token of ours becomes the start-after key s3rver understands. */
function listV2Request(ctx: S3rverContext, request: RequestScope): void {
  const query = ctx.query;
  const bucket = pathBucket(ctx.path);
  if (ctx.method !== 'GET' || query['list-type'] !== '2' || !bucket) return;
  request.listV2 = {};
  const token = single(query['continuation-token']);
  if (!token) return;
  const startAfter = readContinuationToken(token, bucket);
  if (startAfter === undefined) {
    throw new S3Error('InvalidArgument', 'The continuation token provided is incorrect', {
      ArgumentName: 'continuation-token',
    });
  }
  const { 'continuation-token': _token, ...rest } = query;
  ctx.query = { ...rest, 'start-after': startAfter };
  request.listV2.token = token;
}

/** After s3rver: the page says it is truncated, with our token, and echoes the token it was given. */
function listV2Response(ctx: S3rverContext, request: RequestScope): void {
  const list = request.listV2;
  const bucket = pathBucket(ctx.path);
  if (!list || !bucket || ctx.status !== 200 || typeof ctx.body !== 'string') return;
  let body = ctx.body;
  if (list.next !== undefined) {
    const next = continuationToken(bucket, list.next);
    body = body.replace(
      '<IsTruncated>false</IsTruncated>',
      `<IsTruncated>true</IsTruncated><NextContinuationToken>${next}</NextContinuationToken>`,
    );
  }
  if (list.token !== undefined) {
    body = body.replace(/<StartAfter>[^<]*<\/StartAfter>/, `<ContinuationToken>${list.token}</ContinuationToken>`);
  }
  ctx.body = body;
}

const unquote = (etag: string) => etag.trim().replace(/^W\//, '').replaceAll('"', '');

/** Whether an If-Match header (`"etag"`, a list of them, or `*`) holds for an object with this ETag. */
function ifMatchHolds(header: string, etag: string): boolean {
  return header.split(',').some((value) => value.trim() === '*' || unquote(value) === unquote(etag));
}

const single = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

/**
 * Conditional writes and deletes (the store checks them under the key's lock, see `WriteConditions`
 * in s3-store.ts): `If-None-Match` (only `*`) and `If-Match` on PutObject and CompleteMultipartUpload,
 * `If-Match` on DeleteObject. CopyObject's own conditions (x-amz-copy-source-if-*) are not served.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html
 */
function conditionalRequest(ctx: S3rverContext, request: RequestScope): void {
  const ifMatch = single(ctx.headers['if-match']);
  const ifNoneMatch = single(ctx.headers['if-none-match']);
  const isPut = ctx.method === 'PUT' && ctx.headers['x-amz-copy-source'] === undefined && !('partNumber' in ctx.query);
  const isComplete = ctx.method === 'POST' && 'uploadId' in ctx.query;
  // DeleteObject of the current version (not a version, not AbortMultipartUpload, not DeleteBucket).
  const isDelete =
    ctx.method === 'DELETE' &&
    /^\/[^/]+\/./s.test(ctx.path) &&
    !('versionId' in ctx.query) &&
    !('uploadId' in ctx.query);
  if (!(isPut || isComplete || isDelete) || (ifMatch === undefined && ifNoneMatch === undefined)) return;
  if (ifNoneMatch !== undefined && (isDelete || ifNoneMatch.trim() !== '*')) {
    throw new S3Error('NotImplemented', 'A header you provided implies functionality that is not implemented', {
      Header: 'If-None-Match',
    });
  }
  request.conditional = {
    conditions: {
      ...(ifMatch !== undefined ? { ifMatch } : {}),
      ...(ifNoneMatch !== undefined ? { ifNoneMatch } : {}),
    },
    read: false,
  };
}

/**
 * Versioning and If-Match (see the module comment). Runs first, around everything else, so it
 * sees what the store committed or served for the request and the response s3rver built.
 */
function s3Semantics(
  onObjectCreated: S3ServerOptions['onObjectCreated'],
): Middleware & { readonly scope: AsyncLocalStorage<RequestScope> } {
  const scope = new AsyncLocalStorage<RequestScope>();
  return Object.assign(
    async (ctx: S3rverContext, next: () => Promise<void>) => {
      const request: RequestScope = { created: [] };
      listV2Request(ctx, request);
      conditionalRequest(ctx, request);
      await scope.run(request, next);
      listV2Response(ctx, request);
      if (ctx.method === 'DELETE' && request.conditional && !request.conditional.read && ctx.status === 204) {
        // s3rver deletes only an existing object; S3 answers a conditional delete of a missing key 404.
        throw new S3Error('NoSuchKey', 'The specified key does not exist.');
      }
      for (const { bucket, version } of request.created) {
        if (version.versionId) ctx.set('x-amz-version-id', version.versionId);
        onObjectCreated?.({
          bucket,
          key: version.key,
          etag: version.etag,
          size: version.size,
          ...(version.versionId ? { versionId: version.versionId } : {}),
        });
      }
      if (request.created.length > 0 || !request.served) return;
      if ((ctx.method === 'GET' || ctx.method === 'HEAD') && (ctx.status === 200 || ctx.status === 206)) {
        const { version } = request.served;
        const ifMatch = single(ctx.headers['if-match']);
        if (ifMatch !== undefined && !ifMatchHolds(ifMatch, version.etag)) {
          // Never send the unread body of the object that did not match.
          const body = ctx.body as Readable | undefined;
          if (body && typeof body.destroy === 'function') body.destroy();
          ctx.body = undefined;
          throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', {
            Condition: 'If-Match',
          });
        }
        if (version.versionId) ctx.set('x-amz-version-id', version.versionId);
      }
    },
    { scope },
  );
}

/** Starts the S3 server and creates the Sluice buckets if missing. */
export async function startS3Server(options: S3ServerOptions): Promise<S3Server> {
  const directory = join(options.dir, OBJECTS_FOLDER);
  mkdirSync(directory, { recursive: true });
  const server = new S3rver({
    address: LOCAL_ADDRESS,
    port: options.port ?? DEFAULT_S3_PORT,
    silent: true,
    directory,
    vhostBuckets: false,
    configureBuckets: Object.values(LOCAL_BUCKETS).map((name) => ({ name })),
  });
  const semantics = s3Semantics(options.onObjectCreated);
  const store = new ObjectStore({
    root: directory,
    versioned: VERSIONED_BUCKETS,
    onCommitted: (bucket, version) => semantics.scope.getStore()?.created.push({ bucket, version }),
    onServed: (bucket, version) => {
      const request = semantics.scope.getStore();
      if (request) request.served = { bucket, version };
    },
    conditions: () => {
      const conditional = semantics.scope.getStore()?.conditional;
      if (!conditional) return undefined;
      conditional.read = true;
      return conditional.conditions;
    },
  });
  // A truncated ListObjectsV2 page is reported by the middleware, with its own token (see the module comment).
  const list = store.listObjects.bind(store);
  store.listObjects = async (bucket, listOptions) => {
    const result = await list(bucket, listOptions);
    const request = semantics.scope.getStore();
    if (!request?.listV2 || !result.isTruncated) return result;
    request.listV2.next = result.objects.at(-1)?.key;
    return { ...result, isTruncated: false };
  };
  // Each object removed, by DeleteObject or DeleteObjects (s3rver calls deleteObject per existing key),
  // is reported once it is gone: the local stand-in for S3's "Object Deleted" event.
  const deleteObject = store.deleteObject.bind(store);
  store.deleteObject = async (...args: Parameters<typeof deleteObject>) => {
    await deleteObject(...args);
    options.onObjectDeleted?.({ bucket: args[0], key: args[1] });
  };
  // s3rver's controllers use both `ctx.store` (from the context prototype) and `ctx.app.store`.
  server.store = store;
  server.context.store = store;
  // AWS JSON requests (Step Functions, Athena) are answered before S3 sees them.
  server.middleware.unshift(
    awsJsonApis(() => options.awsApis?.() ?? {}),
    injectedS3Faults,
    semantics,
    localRequests,
  );
  const address = await server.run();
  const port = address.port;
  return {
    address: address.address,
    port,
    endpoint: `http://${LOCAL_ADDRESS}:${port}`,
    close: async () => {
      server.httpServer?.closeAllConnections();
      await server.close();
    },
  };
}
