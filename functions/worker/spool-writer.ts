import { closeSync, openSync, writeSync } from 'node:fs';

const BUFFER_BYTES = 8 * 1024 * 1024;

/**
 * Writes `part<d>offset<d>line<d><bytes>\n` records to a file through one reused buffer.
 * The numbers are written digit by digit: this runs once per input line, so no strings
 * are built on the way.
 */
export class SpoolWriter {
  private readonly fd: number;
  private readonly buffer = Buffer.allocUnsafe(BUFFER_BYTES);
  private used = 0;

  constructor(file: string) {
    this.fd = openSync(file, 'w');
  }

  record(part: number, offset: number, line: number, separator: number, body: Buffer, quoted: boolean): void {
    // 3 numbers of at most 16 digits, 3 separators, 2 quotes, newline; a quoted body may double.
    const need = 60 + (quoted ? body.length * 2 : body.length);
    if (this.used + need > this.buffer.length) this.flush();
    if (need > this.buffer.length) {
      this.writeLarge(part, offset, line, separator, body, quoted);
      return;
    }
    this.int(part);
    this.buffer[this.used++] = separator;
    this.int(offset);
    this.buffer[this.used++] = separator;
    this.int(line);
    this.buffer[this.used++] = separator;
    if (quoted) this.quoted(body);
    else this.used += body.copy(this.buffer, this.used);
    this.buffer[this.used++] = 0x0a;
  }

  /** One record already in spool form (lineage prefix included), newline added. */
  raw(record: Buffer): void {
    if (this.used + record.length + 1 > this.buffer.length) this.flush();
    if (record.length + 1 > this.buffer.length) {
      writeSync(this.fd, record);
      writeSync(this.fd, '\n');
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
    this.used = 0;
  }

  private int(n: number): void {
    if (n === 0) {
      this.buffer[this.used++] = 0x30;
      return;
    }
    let digits = 0;
    for (let m = n; m > 0; m = Math.floor(m / 10)) digits++;
    let at = this.used + digits;
    this.used = at;
    for (let m = n; m > 0; m = Math.floor(m / 10)) this.buffer[--at] = 0x30 + (m % 10);
  }

  /** One CSV field: quotes around, inner quotes doubled (JSON Lines travel as a single field). */
  private quoted(body: Buffer): void {
    this.buffer[this.used++] = 0x22;
    let from = 0;
    for (let q = body.indexOf(0x22); q >= 0; q = body.indexOf(0x22, from)) {
      this.used += body.copy(this.buffer, this.used, from, q + 1);
      this.buffer[this.used++] = 0x22;
      from = q + 1;
    }
    this.used += body.copy(this.buffer, this.used, from);
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
    const text = quoted ? `"${body.toString('utf8').replaceAll('"', '""')}"` : undefined;
    writeSync(this.fd, `${part}${sep}${offset}${sep}${line}${sep}`);
    if (text === undefined) writeSync(this.fd, body);
    else writeSync(this.fd, text);
    writeSync(this.fd, '\n');
  }
}
