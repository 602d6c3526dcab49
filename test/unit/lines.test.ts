import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LineSplitter, type RecordShape, splitCsvRecord } from '../../functions/worker/lines.ts';

/** Splits `bytes` into ranges of `size` and collects each range's lines as the worker would read them. */
function linesByRange(bytes: Buffer, size: number, feed: number): { offset: number; text: string }[] {
  const out: { offset: number; text: string }[] = [];
  for (let start = 0; start < bytes.length; start += size) {
    const end = Math.min(bytes.length, start + size);
    const readFrom = start > 0 ? start - 1 : 0;
    const splitter = new LineSplitter({
      readFrom,
      start,
      end,
      maxLineBytes: 1 << 20,
      where: 'test',
      onLine: (offset, line) => out.push({ offset, text: line.toString('utf8') }),
    });
    for (let at = readFrom; at < bytes.length; at += feed) {
      if (!splitter.push(bytes.subarray(at, at + feed))) break;
    }
    splitter.finish();
  }
  return out;
}

function expectedLines(text: string): { offset: number; text: string }[] {
  const bytes = Buffer.from(text);
  const out: { offset: number; text: string }[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      if (i < bytes.length || i > start) {
        let line = bytes.subarray(start, i);
        if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
        out.push({ offset: start, text: line.toString('utf8') });
      }
      start = i + 1;
    }
  }
  return out;
}

describe('LineSplitter', () => {
  it('gives every line to exactly one range, at the same offset whatever the range size', () => {
    const line = fc.stringMatching(/^[a-z,"é한 ]{0,12}\r?$/);
    fc.assert(
      fc.property(
        fc.array(line, { maxLength: 30 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 9 }),
        (lines, trailingNewline, size, feed) => {
          const text = lines.join('\n') + (trailingNewline ? '\n' : '');
          expect(linesByRange(Buffer.from(text), size, feed)).toEqual(expectedLines(text));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('rejects a line longer than the limit, naming where', () => {
    const splitter = new LineSplitter({
      readFrom: 0,
      start: 0,
      end: 100,
      maxLineBytes: 4,
      where: 's3://b/k',
      onLine: () => {},
    });
    expect(() => splitter.push(Buffer.from('abcdefgh\n'))).toThrow(
      's3://b/k: the line at byte 0 is longer than 4 bytes',
    );
  });
});

/** A whole object split into records in quote mode, fed `feed` bytes at a time. */
function records(text: string, feed: number, opts: { escape?: string; maxLineBytes?: number } = {}) {
  const out: { offset: number; text: string; shape: RecordShape; long?: number }[] = [];
  const bytes = Buffer.from(text);
  const splitter = new LineSplitter({
    readFrom: 0,
    start: 0,
    end: bytes.length,
    maxLineBytes: opts.maxLineBytes ?? 1 << 20,
    where: 'test',
    quote: '"',
    ...(opts.escape ? { escape: opts.escape } : {}),
    onLine: (offset, line, shape) => out.push({ offset, text: line.toString('utf8'), shape }),
    onLong: (offset, length, head, shape) => out.push({ offset, text: head.toString('utf8'), shape, long: length }),
  });
  for (let at = 0; at < bytes.length; at += feed) {
    if (!splitter.push(bytes.subarray(at, at + feed))) break;
  }
  splitter.finish();
  return out;
}

/** The records of `text` by a plain reading of RFC 4180: a newline inside quotes does not end a record. */
function expectedRecords(text: string) {
  const bytes = Buffer.from(text);
  const out: { offset: number; text: string; shape: RecordShape }[] = [];
  let start = 0;
  let open = false;
  let breaks = 0;
  for (let i = 0; i <= bytes.length; i++) {
    const b = bytes[i];
    if (i === bytes.length || (b === 0x0a && !open)) {
      if (i < bytes.length || i > start) {
        let line = bytes.subarray(start, i);
        if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
        // An open quote at the end: a last newline ends the last line rather than starting one.
        const lines = open && bytes.at(-1) === 0x0a ? breaks : breaks + 1;
        out.push({ offset: start, text: line.toString('utf8'), shape: { lines, unclosed: open } });
      }
      start = i + 1;
      breaks = 0;
    } else if (b === 0x0a) breaks++;
    else if (b === 0x22) open = !open;
  }
  return out;
}

describe('LineSplitter with a quote (non-splittable CSV)', () => {
  it('keeps a newline inside quotes in its record, whatever the feed size, counting the lines it spans', () => {
    const piece = fc.constantFrom('a', ',', '"', '""', '\n', '\r\n', 'é', '한', ' ');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 60 }), fc.integer({ min: 1, max: 9 }), (pieces, feed) => {
        const text = pieces.join('');
        expect(records(text, feed)).toEqual(expectedRecords(text));
      }),
      { numRuns: 500 },
    );
  });

  it('ends a record at a newline outside quotes only, keeping \\r\\n inside quotes', () => {
    const text = 'h1,h2\n1,"a\r\nb"\r\n2,"say ""x\ny"""\n3,z\n';
    expect(records(text, 3).map((r) => [r.text, r.shape.lines])).toEqual([
      ['h1,h2', 1],
      ['1,"a\r\nb"', 2],
      ['2,"say ""x\ny"""', 2],
      ['3,z', 1],
    ]);
  });

  it('honours an escape character that is not the quote', () => {
    const text = '1,"a\\"\nb"\n2,c\n';
    expect(records(text, 1, { escape: '\\' }).map((r) => r.text)).toEqual(['1,"a\\"\nb"', '2,c']);
  });

  it('marks a record whose quote never closes, which runs to the end of the object', () => {
    const text = '1,a\n2,"b\n3,c\n4,d\n';
    expect(records(text, 4)).toEqual([
      { offset: 0, text: '1,a', shape: { lines: 1, unclosed: false } },
      { offset: 4, text: '2,"b\n3,c\n4,d\n', shape: { lines: 3, unclosed: true } },
    ]);
  });

  it('applies maxLineBytes to the whole record, and goes on after it', () => {
    const text = `1,"${'x'.repeat(10)}\n${'y'.repeat(10)}"\n2,z\n`;
    const out = records(text, 5, { maxLineBytes: 16 });
    expect(out[0]).toMatchObject({ offset: 0, long: 25, shape: { lines: 2, unclosed: false } });
    expect(out[1]).toMatchObject({ offset: 26, text: '2,z', shape: { lines: 1 } });
  });
});

describe('splitCsvRecord', () => {
  it('honours RFC 4180 quotes and doubled quotes', () => {
    expect(splitCsvRecord('a,"b,c","say ""hi""",', ',', '"')).toEqual(['a', 'b,c', 'say "hi"', '']);
  });
});
