import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parsePipeline } from '../../functions/pipeline/definition.ts';
import { runObject } from '../support/run-local.ts';

const dir = join(import.meta.dirname, '../fixtures');
const fixture = (name: string) => readFileSync(join(dir, name));

function events(input: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const doc = parse(readFileSync(join(dir, 'events.yaml'), 'utf8'));
  return parsePipeline(stringify({ ...doc, ...extra, input: { ...doc.input, ...input } }), 'events.yaml');
}

const ids = (rows: Record<string, unknown>[]) => rows.map((r) => r.id);

describe('input shapes', () => {
  it('CSV: types every column, keeps quoted delimiters, rejects what does not fit with reasons', async () => {
    const { staged, rejects, summary } = await runObject(events(), 'events/e.csv', fixture('events.csv'));
    expect(summary).toMatchObject({ rowsRead: 6, rowsLoaded: 3, rowsRejected: 3 });
    expect(staged[0]).toMatchObject({
      id: 1,
      amount: '12.50',
      ok: true,
      day: '2024-05-01',
      seen_at: '2024-05-01 08:00:00',
      payload: '{"a": 1}',
    });
    expect(staged[1]).toMatchObject({ id: 2, note: 'quoted, with comma', payload: '[1]' });
    expect(staged[2]).toMatchObject({ id: 6, note: null, payload: 'null' });
    expect(rejects.map((r) => [Number(r.line_number), r.column_name])).toEqual([
      [4, 'amount'],
      [5, 'ok'],
      [6, 'payload'],
    ]);
    expect(String(rejects[0]?.reason)).toContain('and 2 after');
    expect(rejects[2]?.raw_line).toBe('5,5,true,2024-05-02,2024-05-02T00:30:00Z,{oops,bad json');
  });

  it('TSV with CRLF, no quoting and NA as null; a short row is rejected', async () => {
    const p = events({ format: 'tsv', nullStrings: ['NA'] });
    const { staged, rejects } = await runObject(p, 'events/e.tsv', fixture('events.tsv'));
    expect(staged.map((r) => [r.id, r.amount, r.note])).toEqual([
      [1, '12.50', 'says "hi"'],
      [2, null, null],
    ]);
    expect(rejects).toHaveLength(1);
    expect(rejects[0]).toMatchObject({ column_name: expect.any(String) });
    expect(Number(rejects[0]?.line_number)).toBe(4);
    expect(String(rejects[0]?.reason)).toContain('expected 7 columns');
  });

  it('JSON Lines: fields by name, extra keys ignored, non-objects and bad values rejected', async () => {
    const { staged, rejects } = await runObject(
      events({ format: 'jsonl' }, { rejects: { maxShare: 1 } }),
      'events/e.jsonl',
      fixture('events.jsonl'),
    );
    expect(staged.map((r) => [r.id, r.payload])).toEqual([
      [1, '{"a":[1,2]}'],
      [4, null],
    ]);
    expect(rejects.map((r) => Number(r.line_number))).toEqual([2, 3, 5]);
    expect(rejects[1]).toMatchObject({ reason: 'JSON: the line is not a JSON object', raw_line: 'not json at all' });
  });

  it('a header in another order, a BOM, a custom delimiter and quote, and ignored extra columns', async () => {
    const reordered = await runObject(events(), 'events/r.csv', fixture('events-reordered.csv'));
    expect(reordered.staged[0]).toMatchObject({ id: 7, note: 'reordered', day: '2024-05-04' });
    const p = events({ delimiter: ';', quote: "'", extraColumns: 'ignore' });
    const { staged } = await runObject(p, 'events/s.csv', fixture('events-semicolon-bom.csv'));
    expect(staged.map((r) => r.note)).toEqual(['a;b', "it's"]);
  });

  it('a file without a header: columns in schema order, every line is data', async () => {
    const text =
      '1,2.5,true,2024-05-01,2024-05-01T00:00:00Z,{},no header\n2,3,false,2024-05-02,2024-05-02T00:00:00Z,[],x\n';
    const { staged, summary } = await runObject(events({ header: false }), 'events/nh.csv', text);
    expect(summary).toMatchObject({ rowsRead: 2, rowsLoaded: 2 });
    expect(staged.map((r) => [r.id, r.note, Number(r.source_offset)])).toEqual([
      [1, 'no header', 0],
      [2, 'x', 56],
    ]);
  });

  it('names the extra and missing columns of a header that does not match', async () => {
    await expect(runObject(events(), 'events/s.csv', fixture('events-semicolon-bom.csv'))).rejects.toThrow(
      /events\/s\.csv is not a CSV file of pipeline events: .*missing id, amount/,
    );
    const extra = 'id,amount,ok,day,seen_at,payload,note,surprise\n';
    await expect(runObject(events(), 'events/x.csv', extra)).rejects.toThrow(
      /unexpected surprise\).*extraColumns: ignore/,
    );
  });

  it('gzip and zstd objects, checked against their content', async () => {
    const gz = await runObject(events(), 'events/e.csv.gz', fixture('events.csv.gz'));
    const zst = await runObject(events(), 'events/e.csv.zst', fixture('events.csv.zst'));
    expect(ids(gz.staged)).toEqual([1, 2, 6]);
    expect(ids(zst.staged)).toEqual([1, 2, 6]);
    await expect(runObject(events(), 'events/f.csv.gz', fixture('events-fake.csv.gz'))).rejects.toThrow(
      'is named as gzip but its content is not gzip-compressed',
    );
  });

  it('empty and header-only objects give zero rows and no error', async () => {
    const empty = await runObject(events(), 'events/empty.csv', fixture('events-empty.csv'));
    const headerOnly = await runObject(events(), 'events/h.csv', fixture('events-header-only.csv'));
    expect(empty.summary).toMatchObject({ rowsRead: 0, rowsLoaded: 0, rowsRejected: 0 });
    expect(headerOnly.summary).toMatchObject({ rowsRead: 0, rowsLoaded: 0, rowsRejected: 0 });
  });

  it('refuses a gzip bomb with an error instead of running out of memory', async () => {
    const bomb = gzipSync(
      `id,amount,ok,day,seen_at,payload,note\n${'1,1,true,2024-05-01,2024-05-01T00:00:00Z,{},n\n'.repeat(1 << 20)}`,
    );
    await expect(runObject(events({ maxDecompressionRatio: 10 }), 'events/b.csv.gz', bomb)).rejects.toThrow(
      /decompresses to more than 10 times its size/,
    );
  });

  it('rejects a line longer than the limit, naming the limit and its length, and loads the rest (issue 7)', async () => {
    const long = `id,amount,ok,day,seen_at,payload,note\n1,1,true,2024-05-01,2024-05-01T00:00:00Z,{},${'x'.repeat(5000)}\n2,1,true,2024-05-01,2024-05-01T00:00:00Z,{},n\n`;
    const { staged, rejects } = await runObject(events({ maxLineBytes: 1024 }), 'events/l.csv', long);
    expect(ids(staged)).toEqual([2]);
    expect(Number(rejects[0]?.line_number)).toBe(2);
    expect(String(rejects[0]?.reason)).toContain('more than input.maxLineBytes (1024)');
  });

  it('fails a run whose share of rejected rows is above the limit', async () => {
    const bad = `id,amount,ok,day,seen_at,payload,note\n${'x,1,true,2024-05-01,2024-05-01T00:00:00Z,{},n\n'.repeat(5)}1,1,true,2024-05-01,2024-05-01T00:00:00Z,{},n\n`;
    await expect(runObject(events({}, { rejects: { maxShare: 0.5 } }), 'events/bad.csv', bad)).rejects.toThrow(
      /5 of 6 rows \(83\.3%\) were rejected, more than .*rejects\.maxShare.*50%/,
    );
  });

  it('truncates long rejected lines at the configured size', async () => {
    const text = `id,amount,ok,day,seen_at,payload,note\nx,1,true,2024-05-01,2024-05-01T00:00:00Z,{},${'y'.repeat(300)}\n1,1,true,2024-05-01,2024-05-01T00:00:00Z,{},n\n`;
    const { rejects } = await runObject(events({}, { rejects: { maxRawLineChars: 20 } }), 'events/t.csv', text);
    expect(rejects[0]?.raw_line).toBe('x,1,true,2024-05-01,');
  });
});
