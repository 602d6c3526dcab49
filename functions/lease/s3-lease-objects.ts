/**
 * The lease's conditional operations on S3 (AWS, LocalStack since 3.7/4.0, the embedded S3): the
 * SDK's `IfNoneMatch` / `IfMatch` on PutObject and `IfMatch` on DeleteObject. S3 answers a failed
 * condition with 412 PreconditionFailed, a write that raced another operation on the key with 409
 * ConditionalRequestConflict, and `If-Match` on a missing key with 404 NoSuchKey: to the lease,
 * all three mean "the object is not the one you saw; look again".
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObject.html
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { TransientError } from '../errors.ts';
import type { Lease, LeaseObjects, StoredLease } from './lease.ts';

const status = (error: unknown) => (error instanceof S3ServiceException ? (error.$metadata.httpStatusCode ?? 0) : 0);
const lostRace = (error: unknown) => [404, 409, 412].includes(status(error));
const isMissing = (error: unknown) =>
  error instanceof S3ServiceException && (error.name === 'NoSuchKey' || status(error) === 404);

/** S3 5xx and throttling: the state machine retries Sluice.TransientError. */
function rethrow(error: unknown, what: string): never {
  if (status(error) >= 500 || (error instanceof S3ServiceException && error.name === 'SlowDown')) {
    throw new TransientError(`${what}: ${(error as Error).name}: ${(error as Error).message}`, { cause: error });
  }
  throw error;
}

const unquote = (etag: string | undefined) => (etag ?? '').replaceAll('"', '');

export class S3LeaseObjects implements LeaseObjects {
  private readonly s3: S3Client;
  private readonly bucket: string;

  constructor(s3: S3Client, bucket: string) {
    this.s3 = s3;
    this.bucket = bucket;
  }

  async read(key: string): Promise<StoredLease | undefined> {
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const text = (await out.Body?.transformToString()) ?? '';
      return { lease: parseLease(text), etag: unquote(out.ETag) };
    } catch (error) {
      if (isMissing(error)) return undefined;
      rethrow(error, `reading the lease s3://${this.bucket}/${key}`);
    }
  }

  async create(key: string, lease: Lease): Promise<'written' | 'exists'> {
    return (await this.put(key, lease, { IfNoneMatch: '*' })) ? 'written' : 'exists';
  }

  async replace(key: string, lease: Lease, etag: string): Promise<'written' | 'changed'> {
    return (await this.put(key, lease, { IfMatch: `"${etag}"` })) ? 'written' : 'changed';
  }

  async remove(key: string, etag: string): Promise<'removed' | 'changed'> {
    try {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key, IfMatch: `"${etag}"` }));
      return 'removed';
    } catch (error) {
      if (lostRace(error)) return 'changed';
      rethrow(error, `releasing the lease s3://${this.bucket}/${key}`);
    }
  }

  private async put(key: string, lease: Lease, condition: { IfNoneMatch?: string; IfMatch?: string }) {
    try {
      await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: JSON.stringify(lease),
          ContentType: 'application/json',
          ...condition,
        }),
      );
      return true;
    } catch (error) {
      if (lostRace(error)) return false;
      rethrow(error, `writing the lease s3://${this.bucket}/${key}`);
    }
  }
}

/** A lease object that is not a lease (written by hand, cut short) counts as expired, so it never blocks loads. */
function parseLease(text: string): Lease {
  try {
    const value = JSON.parse(text) as Partial<Lease>;
    if (typeof value.holder === 'string' && typeof value.expiresAt === 'string') {
      return {
        pipeline: String(value.pipeline ?? ''),
        holder: value.holder,
        ...(typeof value.execution === 'string' ? { execution: value.execution } : {}),
        acquiredAt: String(value.acquiredAt ?? ''),
        expiresAt: value.expiresAt,
      };
    }
  } catch {
    // fall through
  }
  return { pipeline: '', holder: '', acquiredAt: '', expiresAt: new Date(0).toISOString() };
}
