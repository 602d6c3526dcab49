/**
 * Decoding of `Content-Encoding: aws-chunked` request bodies (SigV4 streaming uploads and
 * the flexible-checksum trailers the AWS SDK v3 and CLI send by default):
 * `<hex size>[;chunk-signature=...]\r\n<bytes>\r\n ... 0[;...]\r\n[trailers\r\n]\r\n`.
 * S3 stores only the <bytes>; s3rver stores the framing too, so the runtime decodes first.
 */
import { Transform, type TransformCallback } from 'node:stream';

const CRLF = Buffer.from('\r\n');
/** A chunk header is a hex size plus at most a signature or extension; anything longer is not aws-chunked. */
const MAX_HEADER_BYTES = 4096;

type Phase = 'header' | 'data' | 'dataEnd' | 'trailer';

export class AwsChunkedDecoder extends Transform {
  private phase: Phase = 'header';
  private pending: Buffer = Buffer.alloc(0);
  private remaining = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.consume(chunk);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    if (this.phase !== 'trailer') {
      callback(new Error(`aws-chunked body ended in the middle of a chunk (${this.phase})`));
      return;
    }
    callback();
  }

  private consume(input: Buffer): void {
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, input]) : input;
    this.pending = Buffer.alloc(0);
    while (buf.length > 0) {
      if (this.phase === 'header') {
        const end = buf.indexOf(CRLF);
        if (end < 0) {
          if (buf.length > MAX_HEADER_BYTES) throw new Error('aws-chunked chunk header too long');
          this.pending = Buffer.from(buf);
          return;
        }
        const header = buf.subarray(0, end).toString('latin1');
        const size = Number.parseInt(header.split(';', 1)[0] ?? '', 16);
        if (!Number.isInteger(size) || size < 0) throw new Error(`bad aws-chunked chunk header "${header}"`);
        buf = buf.subarray(end + 2);
        this.remaining = size;
        this.phase = size === 0 ? 'trailer' : 'data';
      } else if (this.phase === 'data') {
        const take = Math.min(this.remaining, buf.length);
        this.push(buf.subarray(0, take));
        this.remaining -= take;
        buf = buf.subarray(take);
        if (this.remaining === 0) this.phase = 'dataEnd';
      } else if (this.phase === 'dataEnd') {
        if (buf.length < 2) {
          this.pending = Buffer.from(buf);
          return;
        }
        if (buf[0] !== 0x0d || buf[1] !== 0x0a) throw new Error('aws-chunked chunk not followed by CRLF');
        buf = buf.subarray(2);
        this.phase = 'header';
      } else {
        // Trailing headers (x-amz-checksum-crc32:...) and the final CRLF: not part of the object.
        return;
      }
    }
  }
}

/** True when a request body is aws-chunked framed (by encoding or by streaming SigV4 payload hash). */
export function isAwsChunked(headers: Record<string, string | string[] | undefined>): boolean {
  const encoding = String(headers['content-encoding'] ?? '');
  const sha = String(headers['x-amz-content-sha256'] ?? '');
  return /(^|,)\s*aws-chunked\s*(,|$)/i.test(encoding) || sha.startsWith('STREAMING-');
}

/** The headers S3 would store: `aws-chunked` removed from Content-Encoding, the decoded length as Content-Length. */
export function decodedHeaders(headers: Record<string, string | string[] | undefined>): void {
  const encoding = String(headers['content-encoding'] ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '' && e.toLowerCase() !== 'aws-chunked');
  if (encoding.length > 0) headers['content-encoding'] = encoding.join(', ');
  else delete headers['content-encoding'];
  const decodedLength = headers['x-amz-decoded-content-length'];
  if (decodedLength !== undefined) headers['content-length'] = String(decodedLength);
  else delete headers['content-length'];
  delete headers['transfer-encoding'];
}
