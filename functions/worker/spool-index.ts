import { closeSync, openSync, readSync } from 'node:fs';

/**
 * Where each record of a spool file starts, by (part, offset): the rare rows that need a
 * second look (rejected ones, whose raw line is kept) are read back by position, not by
 * scanning the whole spool. Records are appended in (part, offset) order, so a lookup is
 * a binary search. About 20 bytes per line: 12 MB for a 64 MB chunk of short lines.
 */
/** Entries per block: blocks are added, never copied, as the spool grows. */
const BLOCK = 1 << 16;

export class SpoolIndex {
  private readonly parts: Int32Array[] = [];
  private readonly offsets: Float64Array[] = [];
  private readonly positions: Float64Array[] = [];
  private size = 0;
  /** The spool's length once written: the end of its last record. */
  private end = 0;

  add(part: number, offset: number, position: number): void {
    const i = this.size & (BLOCK - 1);
    if (i === 0) {
      this.parts.push(new Int32Array(BLOCK));
      this.offsets.push(new Float64Array(BLOCK));
      this.positions.push(new Float64Array(BLOCK));
    }
    const b = this.size >>> 16;
    (this.parts[b] as Int32Array)[i] = part;
    (this.offsets[b] as Float64Array)[i] = offset;
    (this.positions[b] as Float64Array)[i] = position;
    this.size++;
  }

  /** Marks the end of the spool file (its length), once it is closed. */
  close(length: number): void {
    this.end = length;
  }

  get length(): number {
    return this.size;
  }

  private part(i: number): number {
    return (this.parts[i >>> 16] as Int32Array)[i & (BLOCK - 1)] as number;
  }

  private offset(i: number): number {
    return (this.offsets[i >>> 16] as Float64Array)[i & (BLOCK - 1)] as number;
  }

  private position(i: number): number {
    return i < this.size ? ((this.positions[i >>> 16] as Float64Array)[i & (BLOCK - 1)] as number) : this.end;
  }

  /** The index of the record of (part, offset), or -1. */
  find(part: number, offset: number): number {
    let lo = 0;
    let hi = this.size - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const p = this.part(mid);
      const o = this.offset(mid);
      if (p === part && o === offset) return mid;
      if (p < part || (p === part && o < offset)) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /**
   * Reads the records of the given (part, offset) pairs from the spool file, as they are
   * in it (lineage prefix included, no newline), in spool order; pairs not spooled are skipped.
   */
  read(file: string, wanted: Iterable<readonly [number, number]>): { part: number; offset: number; record: Buffer }[] {
    const found = [...new Set([...wanted].map(([part, offset]) => this.find(part, offset)))]
      .filter((i) => i >= 0)
      .sort((a, b) => a - b);
    const out: { part: number; offset: number; record: Buffer }[] = [];
    if (found.length === 0) return out;
    const fd = openSync(file, 'r');
    try {
      for (const i of found) {
        const from = this.position(i);
        // The next record starts after this one's newline.
        const record = Buffer.allocUnsafe(Math.max(0, this.position(i + 1) - 1 - from));
        let got = 0;
        while (got < record.length) {
          const n = readSync(fd, record, got, record.length - got, from + got);
          if (n === 0) break;
          got += n;
        }
        out.push({ part: this.part(i), offset: this.offset(i), record: record.subarray(0, got) });
      }
    } finally {
      closeSync(fd);
    }
    return out;
  }
}
