/**
 * Splits a byte range of a newline-delimited object into lines, by the rule of
 * DESIGN.md: a line belongs to the range that holds its first byte. A range that
 * does not start at 0 is read from one byte earlier, so that a line starting exactly
 * at `start` is recognised; a range reads past its end to finish its last line.
 */
import { InputError } from '../errors.ts';

const NL = 0x0a;
const CR = 0x0d;

/** `offset`: absolute byte offset of the line's first byte; `line`: without \n and a trailing \r. */
export type LineHandler = (offset: number, line: Buffer) => void;
/** A line longer than the limit: its offset, its length in bytes and its first bytes (at most `keepBytes`). */
export type LongLineHandler = (offset: number, length: number, head: Buffer) => void;

export class LineSplitter {
  private pending: Buffer = Buffer.alloc(0);
  /** Absolute offset of `pending[0]`. */
  private pendingAt: number;
  private skipping: boolean;
  private done = false;
  private readonly end: number;
  private readonly maxLineBytes: number;
  private readonly onLine: LineHandler;
  private readonly where: string;
  private readonly onLong: LongLineHandler | undefined;
  private readonly keepBytes: number;
  /** While a line longer than the limit is being skipped: its offset, length so far and first bytes. */
  private long: { offset: number; length: number; head: Buffer } | undefined;

  /**
   * @param readFrom absolute offset of the first byte that will be pushed (`start - 1` when start > 0, else 0)
   * @param start the range's first byte
   * @param end the range's end (exclusive); lines starting at or after it belong to the next range
   */
  constructor(opts: {
    readFrom: number;
    start: number;
    end: number;
    maxLineBytes: number;
    where: string;
    onLine: LineHandler;
    /** Without it a line over `maxLineBytes` throws; with it the line is reported and skipped, the rest read. */
    onLong?: LongLineHandler;
    /** How many first bytes of a long line are kept for `onLong` (default 4096). */
    keepBytes?: number;
  }) {
    this.pendingAt = opts.readFrom;
    this.skipping = opts.start > 0;
    this.end = opts.end;
    this.maxLineBytes = opts.maxLineBytes;
    this.onLine = opts.onLine;
    this.where = opts.where;
    this.onLong = opts.onLong;
    this.keepBytes = Math.min(opts.keepBytes ?? 4096, opts.maxLineBytes);
  }

  get finished(): boolean {
    return this.done;
  }

  /** Feeds the next bytes; returns false once every line of the range has been seen. */
  push(chunk: Buffer): boolean {
    if (this.done) return false;
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    let at = this.pendingAt;
    let pos = 0;
    if (this.skipping) {
      const nl = buf.indexOf(NL);
      if (nl < 0) {
        this.pending = Buffer.alloc(0);
        this.pendingAt = at + buf.length;
        return true;
      }
      this.skipping = false;
      pos = nl + 1;
    }
    if (this.long) {
      // The rest of a long line: counted, not kept.
      const nl = buf.indexOf(NL);
      if (nl < 0) {
        this.long.length += buf.length;
        this.pendingAt = at + buf.length;
        return true;
      }
      this.endLong(nl > 0 && buf[nl - 1] === CR ? nl - 1 : nl);
      pos = nl + 1;
    }
    for (;;) {
      if (at + pos >= this.end) {
        this.done = true;
        return false;
      }
      const nl = buf.indexOf(NL, pos);
      if (nl < 0) break;
      this.emit(at + pos, buf, pos, nl);
      pos = nl + 1;
    }
    buf = buf.subarray(pos);
    at += pos;
    if (buf.length > this.maxLineBytes) {
      if (!this.onLong) {
        throw new InputError(`${this.where}: the line at byte ${at} is longer than ${this.maxLineBytes} bytes`);
      }
      this.long = { offset: at, length: buf.length, head: Buffer.from(buf.subarray(0, this.keepBytes)) };
      this.pending = Buffer.alloc(0);
      this.pendingAt = at + buf.length;
      return true;
    }
    this.pending = Buffer.from(buf);
    this.pendingAt = at;
    return true;
  }

  /** Call at the end of the object: emits a last line that has no newline. */
  finish(): void {
    if (!this.done && this.long) this.endLong(0);
    else if (!this.done && !this.skipping && this.pending.length > 0 && this.pendingAt < this.end) {
      this.emit(this.pendingAt, this.pending, 0, this.pending.length);
    }
    this.done = true;
  }

  private emit(offset: number, buf: Buffer, from: number, to: number): void {
    const end = to > from && buf[to - 1] === CR ? to - 1 : to;
    if (end - from > this.maxLineBytes) {
      if (!this.onLong) {
        throw new InputError(`${this.where}: the line at byte ${offset} is longer than ${this.maxLineBytes} bytes`);
      }
      this.onLong(offset, end - from, Buffer.from(buf.subarray(from, from + this.keepBytes)));
      return;
    }
    this.onLine(offset, buf.subarray(from, end));
  }

  /** Ends a long line whose last `tail` bytes (before its newline, without a trailing \r) came in the last push. */
  private endLong(tail: number): void {
    const long = this.long;
    this.long = undefined;
    if (long) this.onLong?.(long.offset, long.length + tail, long.head);
  }
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** Removes a UTF-8 byte order mark. */
export function stripBom(line: Buffer): Buffer {
  return line.subarray(0, 3).equals(BOM) ? line.subarray(3) : line;
}

/** Splits one CSV record (no embedded newlines) into fields, RFC 4180 quoting. */
export function splitCsvRecord(line: string, delimiter: string, quote: string): string[] {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === quote && line[i + 1] === quote) {
        field += quote;
        i++;
      } else if (ch === quote) quoted = false;
      else field += ch;
    } else if (ch === quote) quoted = true;
    else if (ch === delimiter) {
      fields.push(field);
      field = '';
    } else field += ch;
  }
  fields.push(field);
  return fields;
}
