/**
 * Issue 9, the worker's one scan: every row goes through one partitioned COPY, rows that
 * fail a check travel through the transform marked by their encoded offset, the shapes
 * of a row are tested with one regular expression, and only the rows not staged get a
 * second look (read back from the spool by position).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { formatOf } from '../../functions/formats/index.ts';
import { parsePipeline } from '../../functions/pipeline/definition.ts';
import { LineSplitter } from '../../functions/worker/lines.ts';
import { SpoolIndex } from '../../functions/worker/spool-index.ts';
import { SpoolWriter } from '../../functions/worker/spool-writer.ts';
import { runObject } from '../support/run-local.ts';

const dir = join(import.meta.dirname, '../fixtures');

function events(input: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const doc = parse(readFileSync(join(dir, 'events.yaml'), 'utf8'));
  return parsePipeline(
    stringify({ ...doc, rejects: { maxShare: 1 }, ...extra, input: { ...doc.input, ...input } }),
    'events.yaml',
  );
}

const HEADER = 'id,amount,ok,day,seen_at,payload,note';
const good = (id: number | string, fields: Partial<Record<'amount' | 'day' | 'seen_at', string>> = {}) =>
  `${id},${fields.amount ?? '1.50'},true,${fields.day ?? '2024-05-01'},${fields.seen_at ?? '2024-05-01T10:00:00Z'},{},n${id}`;
const byLine = (rejects: Record<string, unknown>[]) =>
  Object.fromEntries(rejects.map((r) => [Number(r.line_number), { column: r.column_name, reason: String(r.reason) }]));

describe('the one scan', () => {
  it('rejects values whose text holds the separator of the joined shapes, or is empty but not NULL', async () => {
    const text = [
      HEADER,
      good(1),
      good('1|2'),
      good(3, { amount: '1|2' }),
      good(4, { seen_at: '2024-05-01T10:00:00Z|' }),
      good(5, { amount: '' }),
      good(6),
    ].join('\n');
    const { staged, rejects } = await runObject(events({ nullStrings: ['NULL'] }), 'events/sep.csv', `${text}\n`);
    expect(staged.map((r) => r.id)).toEqual([1, 6]);
    const lines = byLine(rejects);
    expect(Object.keys(lines)).toEqual(['3', '4', '5', '6']);
    expect(lines[3]).toMatchObject({ column: 'id' });
    expect(lines[3]?.reason).toContain('id must be an integer');
    expect(lines[4]).toMatchObject({ column: 'amount' });
    expect(lines[5]).toMatchObject({ column: 'seen_at' });
    expect(lines[6]).toMatchObject({ column: 'amount' });
  });

  it('gives every reason of a row that fails several checks, and only the check when its day is empty too', async () => {
    const text = [HEADER, good(1), `x,1.5,true,2024-05-01,2024-05-01 10:00:00,{},n`, `y,1.5,true,,,{},n`].join('\n');
    const { staged, rejects } = await runObject(events(), 'events/two.csv', `${text}\n`);
    expect(staged.map((r) => r.id)).toEqual([1]);
    const lines = byLine(rejects);
    expect(lines[3]?.reason).toContain('id must be an integer');
    expect(lines[3]?.reason).toContain('with a zone or Z');
    expect(lines[4]?.reason).toContain('id must be an integer');
    expect(lines[4]?.reason).not.toContain('MISSING');
  });

  it('works with a transform that lists its columns and one that drops rows, whatever rows failed checks', async () => {
    const listed =
      "SELECT id, amount, ok, day, timezone('UTC', seen_at) AS seen_at, CAST(payload AS VARCHAR) AS payload, note, source_key, source_version, source_offset FROM input";
    const text = [HEADER, good(1), good('bad'), good(3), good(4, { day: '' })].join('\n');
    const explicit = await runObject(events({}, { transform: listed }), 'events/listed.csv', `${text}\n`);
    expect(explicit.staged.map((r) => r.id)).toEqual([1, 3]);
    expect(Object.keys(byLine(explicit.rejects))).toEqual(['3', '5']);
    expect(byLine(explicit.rejects)[5]?.reason).toContain('MISSING: day is empty');

    const dropping = await runObject(
      events({}, { transform: `${listed} WHERE id IS DISTINCT FROM 3` }),
      'events/drop.csv',
      `${text}\n`,
    );
    expect(dropping.staged.map((r) => r.id)).toEqual([1]);
    const lines = byLine(dropping.rejects);
    expect(Object.keys(lines)).toEqual(['3', '4', '5']);
    expect(lines[4]?.reason).toContain('TRANSFORM: the transform returned no row');
    expect(lines[3]?.reason).toContain('id must be an integer');
  });

  it('JSON Lines: a row that fails a check or has no day is rejected with its document', async () => {
    const p = events({ format: 'jsonl' });
    const doc = (o: Record<string, unknown>) =>
      JSON.stringify({ id: 1, amount: '1.5', ok: true, day: '2024-05-01', seen_at: '2024-05-01T10:00:00Z', ...o });
    const text = [doc({}), doc({ id: 'x' }), doc({ day: null }), doc({ id: 4 })].join('\n');
    const { staged, rejects } = await runObject(p, 'events/j.jsonl', `${text}\n`);
    expect(staged.map((r) => r.id)).toEqual([1, 4]);
    const lines = byLine(rejects);
    expect(lines[2]?.reason).toContain('id must be a');
    expect(lines[3]?.reason).toContain('MISSING: day is empty');
    expect(rejects.find((r) => Number(r.line_number) === 3)?.raw_line).toBe(doc({ day: null }));
  });
});

describe('the formats', () => {
  it('say how each format is inspected, split and spooled', () => {
    const csv = formatOf(events());
    expect(csv).toMatchObject({ hasHeader: true, spool: { separator: ',', quoted: false }, records: undefined });
    expect(csv.splittable('none')).toBe(true);
    expect(csv.splittable('gzip')).toBe(false);
    const whole = formatOf(events({ splittable: false }));
    expect(whole.records).toEqual({ quote: '"', escape: '"' });
    expect(whole.splittable('none')).toBe(false);
    const jsonl = formatOf(events({ format: 'jsonl' }));
    expect(jsonl).toMatchObject({ hasHeader: false, spool: { separator: ',', quoted: true }, allText: true });
  });
});

describe('the spool index', () => {
  it('reads back any spooled record by (part, offset), the last one too', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'spool-')), 'spool.csv');
    const out = new SpoolWriter(file);
    const index = new SpoolIndex();
    const records: [number, number, string][] = [];
    for (let part = 0; part < 3; part++) {
      for (let i = 0; i < 70_000 * (part === 1 ? 1 : 0) + 5; i++) {
        const offset = i * 37 + (part === 2 ? 2 ** 33 : 0);
        const body = `row ${part}/${i}${i % 7 === 0 ? ' "quoted"' : ''}`;
        index.add(part, offset, out.position);
        out.record(part, offset, i + 2, 0x2c, Buffer.from(body), part === 0);
        records.push([part, offset, body]);
      }
    }
    out.close();
    index.close(out.position);
    const wanted = [records[0], records[3], records[70_004], records.at(-1), [1, 1] as const, records[9]];
    const got = index.read(
      file,
      wanted.map((w) => [w?.[0] as number, w?.[1] as number] as const),
    );
    expect(got.map((g) => [g.part, g.offset])).toEqual(
      [records[0], records[3], records[9], records[70_004], records.at(-1)].map((r) => [r?.[0], r?.[1]]),
    );
    const last = records.at(-1) as [number, number, string];
    expect(got.at(-1)?.record.toString()).toBe(`2,${last[1]},6,${last[2]}`);
    expect(got[0]?.record.toString()).toBe('0,0,2,"row 0/0 ""quoted"""');
  });
});

describe('LineSplitter spans', () => {
  it('gives the same lines as onLine and as a split by hand, however the bytes arrive', () => {
    const text = fc
      .array(fc.constantFrom('a', 'bc', ',', '\r', '\n', '\r\n', 'é'), { maxLength: 60 })
      .map((s) => s.join(''));
    fc.assert(
      fc.property(text, fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 8 }), (s, cuts) => {
        const bytes = Buffer.from(s);
        const run = (span: boolean) => {
          const seen: [number, string][] = [];
          const splitter = new LineSplitter({
            readFrom: 0,
            start: 0,
            end: bytes.length,
            maxLineBytes: 1 << 20,
            where: 'x',
            ...(span
              ? { onSpan: (o: number, b: Buffer, f: number, t: number) => seen.push([o, b.toString('latin1', f, t)]) }
              : { onLine: (o: number, l: Buffer) => seen.push([o, l.toString('latin1')]) }),
          });
          let at = 0;
          for (let i = 0; at < bytes.length; i++) {
            const n = cuts[i % cuts.length] as number;
            splitter.push(bytes.subarray(at, at + n));
            at += n;
          }
          splitter.finish();
          return seen;
        };
        // By hand: lines end with \n, a \r before it is dropped, a last line without \n counts if not empty.
        const want: [number, string][] = [];
        let offset = 0;
        const parts = s.split('\n');
        for (const [i, raw] of parts.entries()) {
          if (i < parts.length - 1 || raw.length > 0)
            want.push([offset, Buffer.from(raw.replace(/\r$/, '')).toString('latin1')]);
          offset += Buffer.byteLength(raw) + 1;
        }
        expect(run(true)).toEqual(want);
        expect(run(false)).toEqual(want);
      }),
      { numRuns: 300 },
    );
  });
});
