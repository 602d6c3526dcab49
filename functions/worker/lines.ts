/**
 * Splits a byte range of a newline-delimited object into lines, by the rule of
 * DESIGN.md: a line belongs to the range that holds its first byte. A range that
 * does not start at 0 is read from one byte earlier, so that a line starting exactly
 * at `start` is recognised; a range reads past its end to finish its last line.
 * With a quote character (non-splittable CSV/TSV, read whole) it splits into records
 * instead: a newline inside a quoted field belongs to its record, which may then span
 * several physical lines.
 */
import { InputError } from '../errors.ts';

const NL = 0x0a;
const CR = 0x0d;

/**
 * What a record is besides its bytes. `lines`: the physical lines it spans (1 unless a
 * quoted field holds a newline); `unclosed`: a quote opened in it is still open at the
 * end of the object (the record then runs to the end of the object).
 */
export interface RecordShape {
  readonly lines: number;
  readonly unclosed: boolean;
}

/** The shape of every line outside quote mode: no allocation per line. */
const ONE_LINE: RecordShape = { lines: 1, unclosed: false };

/** `offset`: absolute byte offset of the line's first byte; `line`: without \n and a trailing \r. */
export type LineHandler = (offset: number, line: Buffer, shape: RecordShape) => void;
/**
 * The same as a LineHandler, with the line at bytes [from, to) of `bytes` (valid only
 * during the call): no Buffer is made per line, which the worker's spool feels.
 */
export type SpanHandler = (offset: number, bytes: Buffer, from: number, to: number, shape: RecordShape) => void;
/** A line longer than the limit: its offset, its length in bytes and its first bytes (at most `keepBytes`). */
export type LongLineHandler = (offset: number, length: number, head: Buffer, shape: RecordShape) => void;

export class LineSplitter {
  private pending: Buffer = Buffer.alloc(0);
  /** Absolute offset of `pending[0]`. */
  private pendingAt: number;
  private skipping: boolean;
  private done = false;
  private readonly end: number;
  private readonly maxLineBytes: number;
  private readonly onLine: LineHandler | undefined;
  private readonly onSpan: SpanHandler | undefined;
  private readonly where: string;
  private readonly onLong: LongLineHandler | undefined;
  private readonly keepBytes: number;
  /** While a line longer than the limit is being skipped: its offset, length so far and first bytes. */
  private long: { offset: number; length: number; head: Buffer } | undefined;
  /** Quote mode: the quote and escape bytes (-1 when off); the escape equals the quote when quotes are doubled. */
  private readonly quote: number;
  private readonly escape: number;
  /** Quote mode, at the end of what was scanned of the current record: inside quotes, just after an escape, newlines inside quotes so far. */
  private open = false;
  private escaped = false;
  private breaks = 0;
  /** Quote mode: how many bytes of `pending` were already scanned. */
  private scanned = 0;
  /** Quote mode: the last byte pushed is a newline. */
  private tailNl = false;

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
    /** Called for each line; or, instead, \`onSpan\`. */
    onLine?: LineHandler;
    onSpan?: SpanHandler;
    /** Without it a line over `maxLineBytes` throws; with it the line is reported and skipped, the rest read. */
    onLong?: LongLineHandler;
    /** How many first bytes of a long line are kept for `onLong` (default 4096). */
    keepBytes?: number;
    /**
     * Quote mode, for a range that is a whole object: a newline inside a field quoted
     * with this character does not end the record. A quote inside a quoted field is
     * written twice, or preceded by `escape` when that is a different character.
     */
    quote?: string;
    escape?: string;
  }) {
    this.pendingAt = opts.readFrom;
    this.skipping = opts.start > 0;
    this.end = opts.end;
    this.maxLineBytes = opts.maxLineBytes;
    this.onLine = opts.onLine;
    this.onSpan = opts.onSpan;
    if (!this.onLine && !this.onSpan) throw new Error('LineSplitter needs onLine or onSpan');
    this.where = opts.where;
    this.onLong = opts.onLong;
    this.keepBytes = Math.min(opts.keepBytes ?? 4096, opts.maxLineBytes);
    this.quote = opts.quote ? opts.quote.charCodeAt(0) : -1;
    this.escape = this.quote >= 0 && opts.escape ? opts.escape.charCodeAt(0) : this.quote;
  }

  get finished(): boolean {
    return this.done;
  }

  /** Feeds the next bytes; returns false once every line of the range has been seen. */
  push(chunk: Buffer): boolean {
    if (this.done) return false;
    if (this.quote >= 0) return this.pushRecords(chunk);
    let input = chunk;
    if (this.pending.length > 0) {
      // Finish the pending line with the head of the chunk: only that line is copied, not the chunk.
      const nl = input.indexOf(NL);
      if (nl >= 0) {
        if (this.pendingAt >= this.end) {
          this.done = true;
          return false;
        }
        const line = Buffer.concat([this.pending, input.subarray(0, nl + 1)]);
        this.emit(this.pendingAt, line, 0, line.length - 1);
        this.pendingAt += line.length;
        this.pending = Buffer.alloc(0);
        input = input.subarray(nl + 1);
      }
    }
    const buf = this.pending.length > 0 ? Buffer.concat([this.pending, input]) : input;
    const at = this.pendingAt;
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
    this.hold(buf.subarray(pos), at + pos, 'line');
    return true;
  }

  /** Call at the end of the object: emits a last line that has no newline. */
  finish(): void {
    // A quote still open: the object's last newline ends its last line, it does not start another.
    if (this.open && this.tailNl) this.breaks--;
    if (!this.done && this.long) this.endLong(0);
    else if (!this.done && !this.skipping && this.pending.length > 0 && this.pendingAt < this.end) {
      this.emit(this.pendingAt, this.pending, 0, this.pending.length);
    }
    this.done = true;
  }

  /**
   * Quote mode: the same as the loop of `push`, with records ended by a newline outside
   * quotes. The scan state (`open`, `escaped`, `breaks`) carries over between pushes, so
   * no byte is scanned twice.
   */
  private pushRecords(chunk: Buffer): boolean {
    if (chunk.length > 0) this.tailNl = chunk[chunk.length - 1] === NL;
    const buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const at = this.pendingAt;
    let pos = 0;
    let scan = this.pending.length > 0 ? this.scanned : 0;
    if (this.skipping) {
      const nl = buf.indexOf(NL);
      if (nl < 0) {
        this.pending = Buffer.alloc(0);
        this.pendingAt = at + buf.length;
        return true;
      }
      this.skipping = false;
      pos = scan = nl + 1;
    }
    if (this.long) {
      const nl = this.scanRecord(buf, 0);
      if (nl < 0) {
        this.long.length += buf.length;
        this.pendingAt = at + buf.length;
        return true;
      }
      this.endLong(nl > 0 && buf[nl - 1] === CR ? nl - 1 : nl);
      pos = scan = nl + 1;
    }
    for (;;) {
      if (at + pos >= this.end) {
        this.done = true;
        return false;
      }
      const nl = this.scanRecord(buf, scan);
      if (nl < 0) break;
      this.emit(at + pos, buf, pos, nl);
      pos = scan = nl + 1;
    }
    const rest = buf.subarray(pos);
    this.hold(rest, at + pos, 'record');
    // What is pending was scanned to its end (nothing is pending after a long record).
    this.scanned = rest.length;
    return true;
  }

  /**
   * Keeps the start of the line (or record) that the pushed bytes left open, for the next push;
   * one longer than the limit is counted instead (`long`), or refused without `onLong`.
   */
  private hold(rest: Buffer, at: number, what: 'line' | 'record'): void {
    if (rest.length > this.maxLineBytes) {
      if (!this.onLong) {
        throw new InputError(`${this.where}: the ${what} at byte ${at} is longer than ${this.maxLineBytes} bytes`);
      }
      this.long = { offset: at, length: rest.length, head: Buffer.from(rest.subarray(0, this.keepBytes)) };
      this.pending = Buffer.alloc(0);
      this.pendingAt = at + rest.length;
      return;
    }
    this.pending = Buffer.from(rest);
    this.pendingAt = at;
  }

  /**
   * Quote mode: scans `buf` from `from` for the newline that ends the current record,
   * outside quotes. Returns its index, or -1 (the state is kept for the next bytes).
   * Quotes toggle: a doubled quote closes and reopens, which leaves a newline where it was.
   */
  private scanRecord(buf: Buffer, from: number): number {
    const qc = this.quote;
    const ec = this.escape;
    let open = this.open;
    let escaped = this.escaped;
    for (let i = from; i < buf.length; i++) {
      const b = buf[i];
      if (escaped) {
        escaped = false;
        if (b === qc || b === ec) continue;
      }
      if (b === NL) {
        if (!open) {
          this.open = false;
          this.escaped = false;
          return i;
        }
        this.breaks++;
      } else if (b === qc) open = !open;
      else if (open && b === ec) escaped = true;
    }
    this.open = open;
    this.escaped = escaped;
    return -1;
  }

  /** The shape of the record that ends now; resets the count of its inner newlines. */
  private shape(): RecordShape {
    if (this.quote < 0) return ONE_LINE;
    const shape = { lines: this.breaks + 1, unclosed: this.open };
    this.breaks = 0;
    this.open = false;
    this.escaped = false;
    return shape;
  }

  private emit(offset: number, buf: Buffer, from: number, to: number): void {
    const end = to > from && buf[to - 1] === CR ? to - 1 : to;
    const shape = this.shape();
    if (end - from > this.maxLineBytes) {
      if (!this.onLong) {
        throw new InputError(`${this.where}: the line at byte ${offset} is longer than ${this.maxLineBytes} bytes`);
      }
      this.onLong(offset, end - from, Buffer.from(buf.subarray(from, from + this.keepBytes)), shape);
      return;
    }
    if (this.onSpan) this.onSpan(offset, buf, from, end, shape);
    else this.onLine?.(offset, buf.subarray(from, end), shape);
  }

  /** Ends a long line whose last `tail` bytes (before its newline, without a trailing \r) came in the last push. */
  private endLong(tail: number): void {
    const long = this.long;
    this.long = undefined;
    const shape = this.shape();
    if (long) this.onLong?.(long.offset, long.length + tail, long.head, shape);
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
