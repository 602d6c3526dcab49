/**
 * Compressed inputs: the codec comes from the key's suffix and is checked against the
 * object's first bytes; decompression stops with an InputError when the output grows
 * past `maxRatio` times the input read so far (a gzip bomb), before memory runs out. Each
 * message names the object, says what is wrong and what to do, and quotes no data.
 *
 * What is wrong with the object itself (not compressed as named, cut short, corrupt, a bomb)
 * refuses it (RefusedInputError): its run fails and names it, and scheduled runs skip that
 * version until it changes, so one bad file does not fail every night's run. A failure of the
 * read itself (the connection reset mid-object) stays the store's TransientError, which the
 * Work state retries: only the codec's own errors (zlib's Z_*, zstd's ZSTD_*) say the bytes are bad.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import type { Compression } from '../contracts.ts';
import { InputError, RefusedInputError } from '../errors.ts';
import { plainText } from '../run/failure-message.ts';
import { readFailed } from '../storage/object-store.ts';

const MAGIC: Record<Exclude<Compression, 'none'>, Buffer> = {
  gzip: Buffer.from([0x1f, 0x8b]),
  zstd: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]),
};

/** The codec a key's suffix declares. */
export function compressionOf(key: string): Compression {
  if (key.endsWith('.gz') || key.endsWith('.gzip')) return 'gzip';
  if (key.endsWith('.zst') || key.endsWith('.zstd')) return 'zstd';
  return 'none';
}

/** Fails when the first bytes of a compressed object are not its codec's magic number. */
function checkMagic(compression: Compression, head: Buffer, where: string): void {
  if (compression === 'none') return;
  const magic = MAGIC[compression];
  if (!head.subarray(0, magic.length).equals(magic)) {
    const suffix = compression === 'gzip' ? '.gz' : '.zst';
    throw new RefusedInputError(
      `${where} is named as ${compression} but its content is not ${compression}-compressed; ` +
        `compress it with ${compression}, or name it without ${suffix}, and upload it again`,
    );
  }
}

/** Slack before the ratio applies, so that tiny, highly compressible files are not refused. */
const RATIO_SLACK_BYTES = 1024 * 1024;

/** Decompresses `source`, checking the codec's magic number and the decompression ratio. */
export async function* decompress(
  source: AsyncIterable<Buffer>,
  compression: Exclude<Compression, 'none'>,
  maxRatio: number,
  where: string,
): AsyncGenerator<Buffer> {
  let compressed = 0;
  let decompressed = 0;
  let checked = false;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done: TransformCallback) {
      try {
        if (!checked) checkMagic(compression, chunk, where);
        checked = true;
        compressed += chunk.length;
        done(null, chunk);
      } catch (error) {
        done(error as Error);
      }
    },
  });
  const codec = compression === 'gzip' ? createGunzip() : createZstdDecompress();
  // pipeline() tears every stream down (the S3 body included) when the consumer stops early or one
  // fails; it resolves with the error that did it (undefined when none), for the message above.
  const flowing: Promise<unknown> = pipeline(source, counter, codec).then(
    () => undefined,
    (error: unknown) => error,
  );
  try {
    for await (const b of codec as AsyncIterable<Buffer>) {
      decompressed += b.length;
      if (decompressed > maxRatio * compressed + RATIO_SLACK_BYTES) {
        throw new RefusedInputError(
          `${where} decompresses to more than ${maxRatio} times its size (input.maxDecompressionRatio), so it was refused ` +
            'as a possible decompression bomb; if the file is genuine, raise input.maxDecompressionRatio in the pipeline',
        );
      }
      yield b;
    }
  } catch (error) {
    if (error instanceof InputError) throw error;
    if (isCodecError(error)) throw invalidCompressed(where, compression, error);
    // The read failed, not the bytes: the source's own error (the store's TransientError) when it reports it.
    throw readFailed(where, (await flowing) ?? error);
  } finally {
    codec.destroy();
    await flowing;
  }
}

/** An error of the codec itself (zlib's Z_BUF_ERROR "unexpected end of file", Z_DATA_ERROR, zstd's ZSTD_error_*). */
const isCodecError = (error: unknown) =>
  typeof (error as { code?: unknown })?.code === 'string' && /^(Z_|ZSTD_)/.test((error as { code: string }).code);

/** A compressed object that does not decompress: cut short or corrupt, so refused. */
function invalidCompressed(where: string, compression: Compression, error: unknown): InputError {
  // zlib's message says what is wrong (e.g. "unexpected end of file"), never the data; bounded all the same.
  return new RefusedInputError(
    `${where} is not a valid ${compression} file (${plainText((error as Error).message, 200)}): it may have been cut ` +
      'short or corrupted; check it (gzip -t / zstd -t) and upload it again',
    { cause: error },
  );
}
