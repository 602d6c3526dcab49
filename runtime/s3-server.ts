/**
 * The embedded S3: s3rver on 127.0.0.1 with its data under `<dir>/s3`, the three Sluice
 * buckets, and object-created notifications (the local stand-in for the EventBridge rule).
 *
 * Where s3rver is kinder than S3, the middleware here makes it behave like the stack's buckets:
 * - The input bucket is versioned on AWS (the working and warehouse buckets are not). s3rver has
 *   no versioning, so every object-creating request on {@link VERSIONED_BUCKETS} (PUT, POST,
 *   copy, CompleteMultipartUpload) gets a new VersionId, kept in a sidecar file under
 *   `<dir>/s3-versions` (so it survives restarts) and returned as `x-amz-version-id` on that
 *   response and on HeadObject and GetObject, as S3 does; ListObjectsV2 returns none, as S3's
 *   ListObjectsV2 does not. Only the current version is kept (older versions are not readable).
 *   https://docs.aws.amazon.com/AmazonS3/latest/userguide/versioning-workflows.html
 * - `If-Match` on GetObject and HeadObject (s3rver only implements If-None-Match): when the
 *   object's ETag differs, S3 answers 412 PreconditionFailed.
 *   https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html (If-Match)
 * - ListObjectsV2 past 1,000 keys: s3rver makes its continuation tokens with DES, which the
 *   OpenSSL 3 of Node >= 17 no longer has, so every listing that needs a second page failed with
 *   InternalError. The continuation tokens are made here instead (opaque to clients, as S3's).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import S3rver, { type Middleware, type S3rverContext, type S3rverEventRecord } from 's3rver';
import S3Error from 's3rver/lib/models/error.js';
import { AwsChunkedDecoder, decodedHeaders, isAwsChunked } from './aws-chunked.ts';

/** The buckets of the stack, under their local names. */
export const LOCAL_BUCKETS = {
  input: 'sluice-input',
  working: 'sluice-working',
  warehouse: 'sluice-warehouse',
} as const;

/** The buckets with versioning enabled, as in the stack (only the input bucket). */
export const VERSIONED_BUCKETS: ReadonlySet<string> = new Set([LOCAL_BUCKETS.input]);

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

/** The objects s3rver created while serving one request (its 'event' fires inside the request). */
interface RequestScope {
  readonly created: { bucket: string; key: string; etag: string | undefined; size: number }[];
  /** A ListObjectsV2 request: the token it came with, and the last key of a truncated page. */
  listV2?: { token?: string; next?: string };
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
const pathBucket = (path: string) => /^\/([^/]+)\/?$/.exec(path)?.[1];

/** Before s3rver: a ListObjectsV2 continuation token of ours becomes the start-after key s3rver understands. */
function listV2Request(ctx: S3rverContext, request: RequestScope): void {
  const query = ctx.query;
  const bucket = pathBucket(ctx.path);
  if (ctx.method !== 'GET' || query['list-type'] !== '2' || !bucket) return;
  request.listV2 = {};
  const token = single(query['continuation-token']);
  if (!token) return;
  const startAfter = readContinuationToken(token, decodeURIComponent(bucket));
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
    const next = continuationToken(decodeURIComponent(bucket), list.next);
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

/** A version id shaped like S3's: 32 URL-safe characters. */
const newVersionId = () => randomBytes(24).toString('base64url');

interface VersionRecord {
  readonly key: string;
  readonly versionId: string;
  readonly etag: string;
}

/** The current version of each object of the versioned buckets, one small JSON file per object. */
class VersionStore {
  private readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  private file(bucket: string, key: string): string {
    return join(this.root, bucket, `${createHash('sha256').update(key).digest('hex')}.json`);
  }

  async write(bucket: string, record: VersionRecord): Promise<void> {
    const file = this.file(bucket, record.key);
    await mkdir(join(this.root, bucket), { recursive: true });
    const temporary = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(temporary, JSON.stringify(record));
    await rename(temporary, file);
  }

  /** The version id of the object with this ETag, if it was created through this server. */
  async read(bucket: string, key: string, etag: string): Promise<string | undefined> {
    try {
      const record = JSON.parse(await readFile(this.file(bucket, key), 'utf8')) as VersionRecord;
      return record.key === key && record.etag === etag ? record.versionId : undefined;
    } catch {
      return undefined;
    }
  }

  async remove(bucket: string, key: string): Promise<void> {
    await rm(this.file(bucket, key), { force: true });
  }
}

const unquote = (etag: string) => etag.trim().replace(/^W\//, '').replaceAll('"', '');

/** Whether an If-Match header (`"etag"`, a list of them, or `*`) holds for an object with this ETag. */
export function ifMatchHolds(header: string, etag: string): boolean {
  return header.split(',').some((value) => value.trim() === '*' || unquote(value) === unquote(etag));
}

const single = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

/** The ETag of a CopyObjectResult body (XML, quotes escaped or not). */
const copiedETag = (body: unknown) =>
  typeof body === 'string' ? /<ETag>(?:&quot;|")?([^<&"]*)/.exec(body)?.[1] : undefined;

/**
 * Versioning and If-Match (see the module comment). Runs first, around everything else, so it
 * sees s3rver's object-created events of the request and the response s3rver built.
 */
function s3Semantics(
  versions: VersionStore,
  onObjectCreated: S3ServerOptions['onObjectCreated'],
): Middleware & { readonly scope: AsyncLocalStorage<RequestScope> } {
  const scope = new AsyncLocalStorage<RequestScope>();
  return Object.assign(
    async (ctx: S3rverContext, next: () => Promise<void>) => {
      const request: RequestScope = { created: [] };
      listV2Request(ctx, request);
      await scope.run(request, next);
      listV2Response(ctx, request);
      if (request.created.length > 0) {
        await objectsCreated(ctx, request, versions, onObjectCreated);
        return;
      }
      const bucket = ctx.params?.bucket;
      const key = ctx.params?.key;
      if (!bucket || !key) return;
      if ((ctx.method === 'GET' || ctx.method === 'HEAD') && (ctx.status === 200 || ctx.status === 206)) {
        const etag = ctx.response.get('ETag');
        const ifMatch = single(ctx.headers['if-match']);
        if (ifMatch !== undefined && etag && !ifMatchHolds(ifMatch, etag)) {
          // Never send the unread body of the object that did not match.
          const body = ctx.body as Readable | undefined;
          if (body && typeof body.destroy === 'function') body.destroy();
          ctx.body = undefined;
          throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', {
            Condition: 'If-Match',
          });
        }
        if (VERSIONED_BUCKETS.has(bucket) && etag) {
          const versionId = await versions.read(bucket, key, unquote(etag));
          if (versionId) ctx.set('x-amz-version-id', versionId);
        }
      } else if (ctx.method === 'DELETE' && ctx.status === 204 && VERSIONED_BUCKETS.has(bucket)) {
        await versions.remove(bucket, key);
      }
    },
    { scope },
  );
}

async function objectsCreated(
  ctx: S3rverContext,
  request: RequestScope,
  versions: VersionStore,
  onObjectCreated: S3ServerOptions['onObjectCreated'],
): Promise<void> {
  for (const object of request.created) {
    // s3rver's Copy event has no ETag; the CopyObjectResult has it.
    const etag = unquote(object.etag ?? copiedETag(ctx.body) ?? ctx.response.get('ETag') ?? '');
    let versionId: string | undefined;
    if (VERSIONED_BUCKETS.has(object.bucket)) {
      versionId = newVersionId();
      await versions.write(object.bucket, { key: object.key, versionId, etag });
      ctx.set('x-amz-version-id', versionId);
    }
    onObjectCreated?.({
      bucket: object.bucket,
      key: object.key,
      etag,
      size: object.size,
      ...(versionId ? { versionId } : {}),
    });
  }
}

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
  const semantics = s3Semantics(new VersionStore(join(options.dir, 's3-versions')), options.onObjectCreated);
  server.middleware.unshift(semantics, localRequests);
  // A truncated ListObjectsV2 page is reported by the middleware, with its own token (see the module comment).
  const list = server.store.listObjects.bind(server.store);
  server.store.listObjects = async (bucket, listOptions) => {
    const result = await list(bucket, listOptions);
    const request = semantics.scope.getStore();
    if (!request?.listV2 || !result.isTruncated) return result;
    request.listV2.next = result.objects.at(-1)?.key;
    return { ...result, isTruncated: false };
  };
  server.on('event', (event: { Records: S3rverEventRecord[] }) => {
    const request = semantics.scope.getStore();
    for (const record of event.Records) {
      if (!record.eventName.startsWith('ObjectCreated:') || !request) continue;
      request.created.push({
        bucket: record.s3.bucket.name,
        // Unlike S3 (form-URL-encoded keys), s3rver emits the key its router already decoded:
        // decoding again would corrupt keys containing '+' or '%'.
        key: record.s3.object.key,
        etag: record.s3.object.eTag,
        size: record.s3.object.size ?? 0,
      });
    }
  });
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
