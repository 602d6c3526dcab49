import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LineSplitter, splitCsvRecord } from '../../functions/worker/lines.ts';

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

describe('splitCsvRecord', () => {
  it('honours RFC 4180 quotes and doubled quotes', () => {
    expect(splitCsvRecord('a,"b,c","say ""hi""",', ',', '"')).toEqual(['a', 'b,c', 'say "hi"', '']);
  });
});
