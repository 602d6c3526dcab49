/**
 * What a user reads when something fails (issue 7, "messages users cannot read"): plain, bounded
 * sentences that name the input and say what to do; no stack trace, absolute path or raw bytes
 * beyond a short escaped excerpt, whatever the error was built from.
 */
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { ChunkFailure } from '../../functions/contracts.ts';
import { InputError, ObjectMissingError, RefusedInputError, TransientError } from '../../functions/errors.ts';
import {
  cutAtWord,
  describeFailure,
  excerpt,
  MAX_MESSAGE_CHARS,
  plainFailure,
  plainText,
  readableCause,
  toPlainError,
} from '../../functions/run/failure-message.ts';
import { S3ObjectStore } from '../../functions/storage/s3-store.ts';
import { decompress } from '../../functions/worker/compression.ts';
import { MemoryStore } from '../support/memory-store.ts';

const lambdaCause = (errorType: string, errorMessage: string) =>
  JSON.stringify({
    errorType,
    errorMessage,
    trace: [`${errorType}: ${errorMessage}`, '    at spoolChunk (/var/task/functions/worker/worker.ts:192:23)'],
  });

describe('plain text', () => {
  it('shows a run of NUL bytes once with its count, and stays within the bound', () => {
    const text = plainText(`bad line: ${'\0'.repeat(300_000)} in access-logs/a.csv`);
    expect(text).toBe('bad line: \\x00 (×300000) in access-logs/a.csv');
    const long = plainText(`${'word '.repeat(1000)}end`);
    expect(long.length).toBeLessThanOrEqual(MAX_MESSAGE_CHARS);
    expect(long.endsWith('word…')).toBe(true);
  });

  it('escapes control characters, joins lines, and shows absolute paths by file name only', () => {
    expect(plainText('Conversion Error:\n\nLINE 1: x\u0007y\u2028')).toBe('Conversion Error: LINE 1: x\\x07y\\u2028');
    expect(plainText("IO Error: No files found that match '/tmp/sluice-abc/chunk-0/input.csv'")).toBe(
      "IO Error: No files found that match 'input.csv'",
    );
    // Keys and URLs are not paths of this machine.
    expect(plainText('s3://sluice-input/access-logs/x.csv and /api/v1/users')).toBe(
      's3://sluice-input/access-logs/x.csv and /api/v1/users',
    );
  });

  it('cuts at a word boundary with an ellipsis, never mid-word or inside an escape', () => {
    expect(cutAtWord('the quick brown fox jumps', 18)).toBe('the quick brown…');
    expect(cutAtWord('abcdefghij', 6)).toBe('abcde…');
    expect(cutAtWord(`${'x'.repeat(20)}\\x00`, 23)).toBe(`${'x'.repeat(20)}…`);
    expect(cutAtWord('short', 10)).toBe('short');
  });

  it('quotes raw input as a short excerpt, escaped', () => {
    expect(excerpt('a"b\\c\u0000d')).toBe('"a\\"b\\\\c\\x00d"');
    const bytes = Buffer.concat([Buffer.from('id,'), Buffer.alloc(500_000)]);
    const shown = excerpt(bytes, 40);
    expect(shown.length).toBeLessThanOrEqual(42);
    expect(shown).toMatch(/^"id,\\x00 \(×\d+\+\)…"$/);
  });
});

describe('the plain message of a failure', () => {
  it('reads a Lambda error (type, message, trace) as its message alone', () => {
    const cause = lambdaCause('Sluice.InputError', 's3://sluice-input/access-logs/x.csv: line 1 is not the header');
    expect(plainFailure('Sluice.InputError', cause)).toBe(
      's3://sluice-input/access-logs/x.csv: line 1 is not the header.',
    );
    expect(readableCause(cause)).toBe('s3://sluice-input/access-logs/x.csv: line 1 is not the header');
  });

  it("finds a chunk's error inside a local Distributed Map's cause", () => {
    const cause =
      'The specified tolerated failure threshold was exceeded: 2 of 3 item(s) failed. First failure, item 0: ' +
      `Sluice.InputError: ${lambdaCause('Sluice.InputError', 's3://sluice-input/access-logs/b.csv.gz is not a valid gzip file')}`;
    const message = plainFailure('States.ExceedToleratedFailureThreshold', cause);
    expect(message).toBe(
      's3://sluice-input/access-logs/b.csv.gz is not a valid gzip file. 1 more chunk(s) of 3 failed too.',
    );
    expect(message).not.toMatch(/errorType|trace|States\./);
    expect(readableCause(cause)).not.toContain('errorType');
  });

  it('says something plain for AWS errors that carry no detail', () => {
    expect(
      plainFailure('States.ExceedToleratedFailureThreshold', 'The specified tolerated failure threshold was exceeded'),
    ).toMatch(/More chunks of the run failed than the pipeline tolerates/);
    expect(plainFailure('States.Timeout', undefined)).toMatch(/took longer than its time limit/);
    expect(plainFailure('States.DataLimitExceeded', 'state "Process": its output is 300000 bytes')).toMatch(
      /256 KiB limit; this is a bug in Sluice/,
    );
    expect(plainFailure('Sluice.Boom', '')).toBe(
      "The run failed with Sluice.Boom and no cause; see the execution's history.",
    );
  });

  it("names the failed chunk's file and bytes when its message does not, and keeps the details apart", () => {
    const failure: ChunkFailure = {
      index: 4,
      errorType: 'Error',
      message: 'Invalid Input Error: CSV options could not be auto-detected',
      parts: [
        { key: 'access-logs/big.csv', start: 1000, end: 2000 },
        { key: 'access-logs/small.csv', start: 0, end: 10 },
      ],
      requestId: 'req-9',
      failedAt: '2024-03-04T00:00:00Z',
    };
    const { message, details } = describeFailure(
      {
        error: 'States.ExceedToleratedFailureThreshold',
        cause: 'The specified tolerated failure threshold was exceeded',
      },
      [failure],
    );
    expect(message).toBe(
      'In access-logs/big.csv (bytes 1000–2000) and 1 more file(s): Invalid Input Error: CSV options could not be auto-detected.',
    );
    expect(details).toMatchObject({ errorType: 'Error', requestId: 'req-9', chunks: [{ index: 4 }] });
  });
});

describe('errors leaving a handler', () => {
  it('keep their name (Retry and Catch match it) with a bounded message and a one-line stack', () => {
    const plain = toPlainError(new TransientError(`GET s3://b/k: SlowDown ${'x '.repeat(2000)}`));
    expect(plain).toBeInstanceOf(TransientError);
    expect(plain.name).toBe('Sluice.TransientError');
    expect(plain.message.length).toBeLessThanOrEqual(MAX_MESSAGE_CHARS);
    expect(plain.stack).toBe(`Sluice.TransientError: ${plain.message}`);
    const thrown = toPlainError('a string');
    expect(thrown.message).toBe('a string');
  });
});

describe('an input deleted while the run reads it', () => {
  it('fails naming the object and what to do, instead of a bare NoSuchKey', async () => {
    const memory = new MemoryStore();
    const store = new S3ObjectStore(memory.s3Client());
    memory.put('sluice-input', 'access-logs/gone.csv', 'x\n');
    const version = (await store.head('sluice-input', 'access-logs/gone.csv'))?.version ?? '';
    await memory.deleteKeys('sluice-input', ['access-logs/gone.csv']);
    const read = store.getBytes('sluice-input', 'access-logs/gone.csv', 0, 2, version);
    await expect(read).rejects.toBeInstanceOf(ObjectMissingError);
    await expect(read).rejects.toThrow(
      /^s3:\/\/sluice-input\/access-logs\/gone\.csv no longer exists: it was deleted after the run planned it.*upload it again/,
    );
    // Without If-Match too, and getJson still answers "no such object" with undefined.
    await expect(store.getBytes('sluice-input', 'access-logs/gone.csv')).rejects.toThrow(/gone\.csv no longer exists/);
    expect(await store.getJson('sluice-input', 'access-logs/gone.csv')).toBeUndefined();
  });
});

describe('compressed inputs', () => {
  it('say what is wrong with a damaged gzip file and what to do, without its bytes', async () => {
    const source = new PassThrough();
    source.end(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff]));
    const read = async () => {
      for await (const _ of decompress(source, 'gzip', 100, 's3://sluice-input/access-logs/cut.csv.gz')) {
        // drain
      }
    };
    const error = await read().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    // The object itself is bad: refused (a refused marker, scheduled runs skip it until it changes).
    expect(error).toBeInstanceOf(RefusedInputError);
    expect(error?.message).toMatch(
      /^s3:\/\/sluice-input\/access-logs\/cut\.csv\.gz is not a valid gzip file \(.+\): it may have been cut short or corrupted; check it/,
    );
  });

  it('tell a read that failed mid-object (a reset connection) from a bad file: transient, retried, not refused', async () => {
    const whole = gzipSync(Buffer.from(`${'a,b,c\n'.repeat(200_000)}`));
    const read = async (source: PassThrough, where: string) => {
      for await (const _ of decompress(source, 'gzip', 100, where)) {
        // drain
      }
    };
    const source = new PassThrough();
    source.write(whole.subarray(0, 4096));
    setTimeout(() => source.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })), 20);
    const error = await read(source, 's3://sluice-input/access-logs/reset.csv.gz').then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(TransientError);
    expect(error).not.toBeInstanceOf(InputError);
    expect(error?.message).toBe(
      's3://sluice-input/access-logs/reset.csv.gz: reading the object failed (ECONNRESET: read ECONNRESET); retried',
    );
  });
});
