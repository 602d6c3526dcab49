import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parsePipeline } from '../../functions/pipeline/definition.ts';
import { splitCsvRecord } from '../../functions/worker/lines.ts';
import { runObject } from '../support/run-local.ts';

const pipeline = parsePipeline(
  `name: texts
input: { prefix: texts/, suffixes: [.csv] }
schema: [{ name: a, type: string }, { name: b, type: string }, { name: c, type: string }]
table: { name: texts, columns: [{ name: a, type: string }, { name: b, type: string }, { name: c, type: string }, { name: d, type: date }], partitionDay: d }
transform: SELECT *, DATE '2024-01-01' AS d FROM input
`,
  'texts.yaml',
);

/** A field as a writer would put it in a file: quoted when it must be, sometimes when it need not. */
const field = fc
  .tuple(fc.array(fc.constantFrom('a', 'b', ' ', ',', '"', 'é', '한', '😀', '\t'), { maxLength: 6 }), fc.boolean())
  .map(([chars, quoteAnyway]) => {
    const text = chars.join('');
    const needs = /[,"]/.test(text) || text.length === 0;
    return quoteAnyway || needs ? `"${text.replaceAll('"', '""')}"` : text;
  });
const row = fc.tuple(field, field, field).map((fields) => fields.join(','));
const line = fc.oneof({ weight: 6, arbitrary: row }, { weight: 1, arbitrary: fc.constant('') });
const file = fc
  .tuple(fc.array(line, { maxLength: 25 }), fc.constantFrom('\n', '\r\n'), fc.boolean())
  .map(([lines, eol, trailing]) => ['a,b,c', ...lines].join(eol) + (trailing ? eol : ''));

/** What the file holds: for each data line, its byte offset and fields. */
function expected(text: string): { offset: number; fields: string[] }[] {
  const out: { offset: number; fields: string[] }[] = [];
  let offset = 0;
  for (const [i, raw] of text.split('\n').entries()) {
    const content = raw.replace(/\r$/, '');
    if (i > 0 && content.length > 0) out.push({ offset, fields: splitCsvRecord(content, ',', '"') });
    offset += Buffer.byteLength(raw) + 1;
  }
  return out;
}

describe('worker, property-based', () => {
  it('loads every row of a random file exactly once, at the same offset, whatever the chunk size', async () => {
    await fc.assert(
      // Chunks per file rather than bytes per chunk: random boundaries, bounded DuckDB work per case.
      fc.asyncProperty(file, fc.integer({ min: 1, max: 12 }), async (text, chunks) => {
        const chunkSize = Math.max(1, Math.ceil(Buffer.byteLength(text) / chunks));
        const { staged, rejects, summary } = await runObject(pipeline, 'texts/t.csv', text, chunkSize);
        const want = expected(text);
        expect(rejects).toEqual([]);
        expect(summary.rowsRead).toBe(want.length);
        expect(
          staged.map((r) => ({ offset: Number(r.source_offset), fields: [r.a ?? '', r.b ?? '', r.c ?? ''] })),
        ).toEqual(want);
      }),
      { numRuns: 100 },
    );
  });
});
