import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { ObjectMissingError, TransientError } from '../errors.ts';
import { mapLimit, S3_PARALLELISM } from './concurrency.ts';
import { type ObjectInfo, type ObjectStore, objectMissing, objectReplaced, readFailed } from './object-store.ts';

/**
 * Part size of the files the functions upload (staging and rejects Parquet): a file up to this size
 * is one PutObject. lib-storage's default, 5 MiB, made a chunk's 12 MB staging file a multipart
 * upload of five requests (create, three parts, complete): at a million chunks a day, four million
 * PUTs more ($0.005 per thousand) and the staging prefix's PUT rate (3,500 a second per prefix,
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html) reached five
 * times sooner. Past it, parts of this size, two at a time (64 MiB in memory at most).
 */
export const UPLOAD_PART_BYTES = 32 * 1024 * 1024;
const UPLOAD_QUEUE = 2;

/**
 * An S3 client for the current target. The endpoint comes from the SDK's own
 * `AWS_ENDPOINT_URL_S3`; `SLUICE_S3_FORCE_PATH_STYLE=true` is set by the embedded
 * runtime and for LocalStack. Checksums only where S3 requires them, so that
 * S3-compatible servers receive plain bodies.
 */
export function createS3Client(env: NodeJS.ProcessEnv = process.env): S3Client {
  return new S3Client({
    forcePathStyle: env.SLUICE_S3_FORCE_PATH_STYLE === 'true',
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

const TRANSIENT_CODES = new Set(['SlowDown', 'InternalError', 'ServiceUnavailable', 'RequestTimeout', 'Throttling']);

/** S3 throttling, 5xx and network failures become TransientError, which the state machine retries. */
function classify(error: unknown, what: string): never {
  if (error instanceof S3ServiceException) {
    const status = error.$metadata.httpStatusCode ?? 0;
    if (status >= 500 || TRANSIENT_CODES.has(error.name)) {
      throw new TransientError(`${what}: ${error.name}: ${error.message}`, { cause: error });
    }
    throw error;
  }
  const code = (error as { code?: string } | undefined)?.code;
  if (code && ['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN'].includes(code)) {
    throw new TransientError(`${what}: ${code}`, { cause: error });
  }
  throw error;
}

/** S3 answers a GET whose `If-Match` does not hold with 412 Precondition Failed (GetObject, RFC 7232). */
const isPreconditionFailed = (error: unknown) =>
  error instanceof S3ServiceException &&
  (error.name === 'PreconditionFailed' || error.$metadata.httpStatusCode === 412);

const isMissing = (error: unknown) =>
  error instanceof S3ServiceException && (error.name === 'NoSuchKey' || error.name === 'NotFound');

const unquote = (etag: string | undefined) => (etag ?? '').replaceAll('"', '');

function range(start?: number, end?: number): string | undefined {
  if (start === undefined && end === undefined) return undefined;
  return `bytes=${start ?? 0}-${end === undefined ? '' : end - 1}`;
}

export class S3ObjectStore implements ObjectStore {
  private readonly client: S3Client;
  constructor(client: S3Client) {
    this.client = client;
  }

  /**
   * The version is the ETag, never the VersionId: on a versioned bucket HeadObject returns
   * both, but ListObjectsV2 returns only the ETag
   * (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html, `Contents`), and
   * the planner compares what one call saw with what the other saw.
   */
  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return { key, size: out.ContentLength ?? 0, version: unquote(out.ETag) };
    } catch (error) {
      if (isMissing(error)) return undefined;
      return classify(error, `HEAD s3://${bucket}/${key}`);
    }
  }

  /**
   * With `ifMatch`, S3 returns the object only if its ETag is that one, else 412 Precondition
   * Failed (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, `If-Match`);
   * entity tags go quoted in the header (RFC 7232).
   */
  async getStream(bucket: string, key: string, start?: number, end?: number, ifMatch?: string): Promise<Readable> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: bucket,
          Key: key,
          Range: range(start, end),
          ...(ifMatch ? { IfMatch: `"${ifMatch}"` } : {}),
        }),
      );
      const body = out.Body as Readable;
      const where = `s3://${bucket}/${key}`;
      // A body that breaks mid-object fails with a TransientError (above), for every reader of it.
      return Readable.from(
        (async function* () {
          try {
            yield* body;
          } catch (error) {
            throw readFailed(where, error);
          }
        })(),
        { objectMode: false },
      );
    } catch (error) {
      // S3's NoSuchKey names no object; a deleted object may also fail If-Match (412) on some servers.
      if (isMissing(error)) throw objectMissing(bucket, key);
      if (ifMatch && isPreconditionFailed(error)) {
        throw (await this.head(bucket, key).catch(() => true)) === undefined
          ? objectMissing(bucket, key)
          : objectReplaced(bucket, key, ifMatch);
      }
      return classify(error, `GET s3://${bucket}/${key}`);
    }
  }

  async getBytes(bucket: string, key: string, start?: number, end?: number, ifMatch?: string): Promise<Buffer> {
    if (start !== undefined && end !== undefined && end <= start) return Buffer.alloc(0);
    const chunks: Buffer[] = [];
    for await (const chunk of await this.getStream(bucket, key, start, end, ifMatch)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async getJson<T>(bucket: string, key: string): Promise<T | undefined> {
    let body: Buffer;
    try {
      body = await this.getBytes(bucket, key);
    } catch (error) {
      if (error instanceof ObjectMissingError) return undefined;
      throw error;
    }
    return JSON.parse(body.toString('utf8')) as T;
  }

  async putJson(bucket: string, key: string, value: unknown): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: JSON.stringify(value),
          ContentType: 'application/json',
        }),
      );
    } catch (error) {
      classify(error, `PUT s3://${bucket}/${key}`);
    }
  }

  async putFile(bucket: string, key: string, path: string): Promise<void> {
    try {
      await new Upload({
        client: this.client,
        params: { Bucket: bucket, Key: key, Body: createReadStream(path) },
        partSize: UPLOAD_PART_BYTES,
        queueSize: UPLOAD_QUEUE,
      }).done();
    } catch (error) {
      classify(error, `PUT s3://${bucket}/${key}`);
    }
  }

  async downloadFile(bucket: string, key: string, path: string): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    await pipeline(await this.getStream(bucket, key), createWriteStream(path));
  }

  async list(bucket: string, prefix: string): Promise<ObjectInfo[]> {
    const objects: ObjectInfo[] = [];
    let token: string | undefined;
    try {
      do {
        const out = await this.client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const o of out.Contents ?? []) {
          if (o.Key) objects.push({ key: o.Key, size: o.Size ?? 0, version: unquote(o.ETag) });
        }
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token);
    } catch (error) {
      classify(error, `LIST s3://${bucket}/${prefix}`);
    }
    return objects;
  }

  /** DeleteObjects takes up to 1,000 keys (https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html). */
  async deleteKeys(bucket: string, keys: readonly string[]): Promise<void> {
    const batches: string[][] = [];
    for (let i = 0; i < keys.length; i += 1000) batches.push(keys.slice(i, i + 1000));
    await mapLimit(batches, S3_PARALLELISM, async (batch) => {
      try {
        const out = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
        const failed = out.Errors ?? [];
        if (failed.length > 0) {
          throw new TransientError(
            `DELETE s3://${bucket}: ${failed.length} of ${batch.length} keys were not deleted, e.g. ${failed[0]?.Key}: ${failed[0]?.Code} ${failed[0]?.Message}`,
          );
        }
      } catch (error) {
        classify(error, `DELETE s3://${bucket}/${batch[0]} and ${batch.length - 1} more`);
      }
    });
  }

  async deletePrefix(bucket: string, prefix: string): Promise<number> {
    const keys = (await this.list(bucket, prefix)).map((o) => o.key);
    await this.deleteKeys(bucket, keys);
    return keys.length;
  }
}
