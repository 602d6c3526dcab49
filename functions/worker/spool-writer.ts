import { closeSync, openSync, writeSync } from 'node:fs';

const BUFFER_BYTES = 8 * 1024 * 1024;
/** 10^0 to 10^16: the digit count of a number by comparisons. */
const POWERS = Array.from({ length: 17 }, (_, i) => 10 ** i);

/**
 * Writes `part<d>offset<d>line<d><bytes>\n` records to a file through one reused buffer.
 * The numbers are written digit by digit: this runs once per input line, so no strings
 * are built on the way.
 */
export class SpoolWriter {
  private readonly fd: number;
  private readonly buffer = Buffer.allocUnsafe(BUFFER_BYTES);
  private used = 0;
  /** Bytes already written to the file. */
  private written = 0;

  constructor(file: string) {
    this.fd = openSync(file, 'w');
  }

  /** Where the next record starts in the file. */
  get position(): number {
    return this.written + this.used;
  }

  record(part: number, offset: number, line: number, separator: number, body: Buffer, quoted: boolean): void {
    this.recordSpan(part, offset, line, separator, body, 0, body.length, quoted);
  }

  /** The same as \`record\` with the body at bytes [from, to) of \`bytes\`: no Buffer made per line. */
  recordSpan(
    part: number,
    offset: number,
    line: number,
    separator: number,
    bytes: Buffer,
    from: number,
    to: number,
    quoted: boolean,
  ): void {
    // 3 numbers of at most 16 digits, 3 separators, 2 quotes, newline; a quoted body may double.
    const length = to - from;
    const need = 60 + (quoted ? length * 2 : length);
    if (this.used + need > this.buffer.length) this.flush();
    if (need > this.buffer.length) {
      this.writeLarge(part, offset, line, separator, bytes.subarray(from, to), quoted);
      return;
    }
    this.int(part);
    this.buffer[this.used++] = separator;
    this.int(offset);
    this.buffer[this.used++] = separator;
    this.int(line);
    this.buffer[this.used++] = separator;
    if (quoted) this.quoted(bytes, from, to);
    else this.used += bytes.copy(this.buffer, this.used, from, to);
    this.buffer[this.used++] = 0x0a;
  }

  /** One record already in spool form (lineage prefix included), newline added. */
  raw(record: Buffer): void {
    if (this.used + record.length + 1 > this.buffer.length) this.flush();
    if (record.length + 1 > this.buffer.length) {
      this.write(record);
      this.write(Buffer.from('\n'));
      return;
    }
    this.used += record.copy(this.buffer, this.used);
    this.buffer[this.used++] = 0x0a;
  }

  close(): void {
    try {
      this.flush();
    } finally {
      closeSync(this.fd);
    }
  }

  private flush(): void {
    if (this.used > 0) writeSync(this.fd, this.buffer, 0, this.used);
    this.written += this.used;
    this.used = 0;
  }

  private write(bytes: Buffer): void {
    writeSync(this.fd, bytes);
    this.written += bytes.length;
  }

  private int(n: number): void {
    let digits = 1;
    while (digits < 17 && n >= (POWERS[digits] as number)) digits++;
    let at = this.used + digits;
    this.used = at;
    if (n < 2 ** 31) {
      // Small integer arithmetic: most offsets and line numbers.
      let m = n | 0;
      do {
        this.buffer[--at] = 0x30 + (m % 10);
        m = (m / 10) | 0;
      } while (m > 0);
      return;
    }
    for (let m = n; m > 0; m = Math.floor(m / 10)) this.buffer[--at] = 0x30 + (m % 10);
  }

  /** One CSV field: quotes around, inner quotes doubled (JSON Lines travel as a single field). */
  private quoted(bytes: Buffer, start: number, end: number): void {
    this.buffer[this.used++] = 0x22;
    let from = start;
    for (let q = bytes.indexOf(0x22, from); q >= 0 && q < end; q = bytes.indexOf(0x22, from)) {
      this.used += bytes.copy(this.buffer, this.used, from, q + 1);
      this.buffer[this.used++] = 0x22;
      from = q + 1;
    }
    this.used += bytes.copy(this.buffer, this.used, from, end);
    this.buffer[this.used++] = 0x22;
  }

  private writeLarge(
    part: number,
    offset: number,
    line: number,
    separator: number,
    body: Buffer,
    quoted: boolean,
  ): void {
    const sep = String.fromCharCode(separator);
    this.write(Buffer.from(`${part}${sep}${offset}${sep}${line}${sep}`));
    this.write(quoted ? Buffer.from(`"${body.toString('utf8').replaceAll('"', '""')}"`) : body);
    this.write(Buffer.from('\n'));
  }
}
