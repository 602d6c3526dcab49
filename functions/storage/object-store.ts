/**
 * What the domain code needs from S3. Lambda (`s3-store.ts`), the embedded runtime and
 * the unit tests pass different implementations; all of them must give an object
 * version the same identity (its unquoted ETag) from every call.
 */
import type { Readable } from 'node:stream';
import { InputError, ObjectMissingError, TransientError } from '../errors.ts';
import { plainText } from '../run/failure-message.ts';

export interface ObjectStore {
  head(bucket: string, key: string): Promise<ObjectInfo | undefined>;
  /**
   * Streams `[start, end)` of an object (to its end when `end` is undefined). With `ifMatch`
   * (an unquoted ETag), fails with {@link objectReplaced}'s InputError when the object's
   * current version has another ETag. A body that breaks mid-object (a reset connection)
   * fails with {@link readFailed}'s TransientError, which the state machine retries.
   */
  getStream(bucket: string, key: string, start?: number, end?: number, ifMatch?: string): Promise<Readable>;
  // A missing object fails getStream/getBytes with {@link objectMissing}'s InputError (getJson returns undefined).
  getBytes(bucket: string, key: string, start?: number, end?: number, ifMatch?: string): Promise<Buffer>;
  getJson<T>(bucket: string, key: string): Promise<T | undefined>;
  putJson(bucket: string, key: string, value: unknown): Promise<void>;
  putFile(bucket: string, key: string, path: string): Promise<void>;
  downloadFile(bucket: string, key: string, path: string): Promise<void>;
  /** Every object under `prefix`, in S3's order (UTF-8 binary order of keys), all pages read. */
  list(bucket: string, prefix: string): Promise<ObjectInfo[]>;
  /** Deletes these keys (S3 DeleteObjects takes at most 1,000 per request). */
  deleteKeys(bucket: string, keys: readonly string[]): Promise<void>;
  deletePrefix(bucket: string, prefix: string): Promise<number>;
}

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  /**
   * The version's identity: its ETag without quotes, from every call (ListObjectsV2 has no
   * VersionId, so a VersionId from HeadObject would make one version look like two).
   */
  readonly version: string;
}

/** The error of a read whose `If-Match` failed: the object was replaced after the run planned it. */
export function objectReplaced(bucket: string, key: string, version: string): InputError {
  return new InputError(
    `s3://${bucket}/${key} was replaced while the run read it (the run planned version ${version}); ` +
      'nothing of it is loaded by this run, and the new version gets its own run',
  );
}

/**
 * The error of a read of an object that no longer exists: deleted after the run planned it. S3's
 * own error (NoSuchKey) names no object, so this one names it and says what to do.
 */
export function objectMissing(bucket: string, key: string): ObjectMissingError {
  return new ObjectMissingError(
    bucket,
    key,
    `s3://${bucket}/${key} no longer exists: it was deleted after the run planned it, so nothing of it is loaded by this run; ` +
      'upload it again to load it',
  );
}

const errorText = (error: unknown) =>
  error instanceof Error ? `${(error as { code?: string }).code ?? error.name}: ${error.message}` : String(error);

/**
 * A read of an object that failed mid-body (a connection reset, a timeout): transient, so the
 * state machine retries the step. The SDK retries a GET only until its response starts.
 */
export function readFailed(where: string, error: unknown): TransientError {
  if (error instanceof TransientError) return error;
  return new TransientError(`${where}: reading the object failed (${plainText(errorText(error), 200)}); retried`, {
    cause: error,
  });
}
