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
  }) {
    this.pendingAt = opts.readFrom;
    this.skipping = opts.start > 0;
    this.end = opts.end;
    this.maxLineBytes = opts.maxLineBytes;
    this.onLine = opts.onLine;
    this.where = opts.where;
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
      throw new InputError(`${this.where}: the line at byte ${at} is longer than ${this.maxLineBytes} bytes`);
    }
    this.pending = Buffer.from(buf);
    this.pendingAt = at;
    return true;
  }

  /** Call at the end of the object: emits a last line that has no newline. */
  finish(): void {
    if (!this.done && !this.skipping && this.pending.length > 0 && this.pendingAt < this.end) {
      this.emit(this.pendingAt, this.pending, 0, this.pending.length);
    }
    this.done = true;
  }

  private emit(offset: number, buf: Buffer, from: number, to: number): void {
    const end = to > from && buf[to - 1] === CR ? to - 1 : to;
    if (end - from > this.maxLineBytes) {
      throw new InputError(`${this.where}: the line at byte ${offset} is longer than ${this.maxLineBytes} bytes`);
    }
    this.onLine(offset, buf.subarray(from, end));
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
