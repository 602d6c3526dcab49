/**
 * Issue 7, in the worker: every row read is loaded or rejected with its line and a true
 * reason, whatever DuckDB's reader does with it (quoted newlines, unbalanced quotes,
 * lines it drops at its buffer boundaries), a line over maxLineBytes is rejected alone,
 * and values are accepted exactly as docs/values.md says.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parsePipeline } from '../../functions/pipeline/definition.ts';
import { accessLogs, HEADER, logRow } from '../support/fixtures.ts';
import { runObject } from '../support/run-local.ts';

const dir = join(import.meta.dirname, '../fixtures');
const fixture = (name: string) => readFileSync(join(dir, 'worker', name));

function events(input: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const doc = parse(readFileSync(join(dir, 'events.yaml'), 'utf8'));
  return parsePipeline(stringify({ ...doc, ...extra, input: { ...doc.input, ...input } }), 'events.yaml');
}

const byLine = (rejects: Record<string, unknown>[]) =>
  Object.fromEntries(rejects.map((r) => [Number(r.line_number), String(r.reason)]));

describe('books that balance', () => {
  it('rejects the lines of a quoted newline and of an unbalanced quote, and loads the others', async () => {
    const { staged, rejects, summary } = await runObject(
      events({}, { rejects: { maxShare: 1 } }),
      'events/q.csv',
      fixture('quotes.csv'),
    );
    expect(summary).toMatchObject({ rowsRead: 6, rowsLoaded: 3, rowsRejected: 3 });
    expect(staged.map((r) => r.id)).toEqual([1, 4, 5]);
    const reasons = byLine(rejects);
    expect(Object.keys(reasons)).toEqual(['3', '4', '5']);
    for (const reason of Object.values(reasons)) {
      expect(reason).toContain('a quoted field is not closed on this line');
      expect(reason).toContain('set input.splittable: false');
    }
  });

  it('a 10 MB file where 40% of the rows have an extra comma: every row loaded or rejected', async () => {
    const rows = Array.from({ length: 150_000 }, (_, i) => {
      const extra = i % 5 < 2 ? ',extra' : '';
      return `${i},${(i % 1000) / 10},true,2024-05-0${1 + (i % 3)},2024-05-01T10:00:00Z,{},note ${i}${extra}`;
    });
    const text = `id,amount,ok,day,seen_at,payload,note\n${rows.join('\n')}\n`;
    const { summary, rejects } = await runObject(events(), 'events/c.csv', text, 64 << 20);
    expect(summary).toMatchObject({ rowsRead: 150_000, rowsLoaded: 90_000, rowsRejected: 60_000 });
    expect(rejects[0]).toMatchObject({ line_number: '2' });
    expect(String(rejects[0]?.reason)).toContain('TOO MANY COLUMNS: expected 7 columns');
  }, 60_000);

  it('a lone carriage return inside a line is rejected with its reason, not a failed file', async () => {
    const text =
      'id,amount,ok,day,seen_at,payload,note\n1,1,true,2024-05-01,2024-05-01T10:00:00Z,{},a\rb\n2,1,true,2024-05-01,2024-05-01T10:00:00Z,{},ok\n';
    const { staged, rejects } = await runObject(events({}, { rejects: { maxShare: 1 } }), 'events/cr.csv', text);
    expect(staged.map((r) => r.id)).toEqual([2]);
    expect(byLine(rejects)[2]).toContain('carriage return');
  });
});

describe('a line over maxLineBytes', () => {
  it('is rejected with the limit and its length, its first bytes kept; the rest of the file loads', async () => {
    const good = (i: number) => `${i},1,true,2024-05-01,2024-05-01T10:00:00Z,{},n`;
    const long = `9,1,true,2024-05-01,2024-05-01T10:00:00Z,{},${'x'.repeat(5 * 1024 * 1024)}`;
    const text = `id,amount,ok,day,seen_at,payload,note\n${good(1)}\n${long}\n${good(2)}\n${good(3)}\n`;
    const { staged, rejects, summary } = await runObject(
      events({}, { rejects: { maxRawLineChars: 100 } }),
      'events/long.csv',
      text,
    );
    expect(summary).toMatchObject({ rowsRead: 4, rowsLoaded: 3, rowsRejected: 1 });
    expect(staged.map((r) => r.id)).toEqual([1, 2, 3]);
    expect(rejects[0]).toMatchObject({ line_number: '3', raw_line: long.slice(0, 100) });
    expect(String(rejects[0]?.reason)).toContain(
      `the line is ${long.length} bytes long, more than input.maxLineBytes (1048576)`,
    );
  });
});

describe('values, as docs/values.md says', () => {
  it('integers, dates and timestamps: DuckDB leniency is refused with true reasons', async () => {
    const { staged, rejects } = await runObject(
      events({}, { rejects: { maxShare: 1 } }),
      'events/v.csv',
      fixture('values.csv'),
    );
    expect(staged.map((r) => r.note)).toEqual(['good', 'good with offset']);
    const reasons = byLine(rejects);
    expect(reasons[3]).toBe('CAST: id must be an integer (an optional sign and digits), found 0x1F');
    expect(reasons[4]).toBe('CAST: id must be an integer (an optional sign and digits), found 1_000');
    expect(reasons[5]).toBe('CAST: id: 99999999999 is out of range for integer (-2147483648 to 2147483647)');
    expect(reasons[6]).toContain('2026-02-30 is not a date that exists');
    expect(reasons[7]).toBe('CAST: seen_at: the zone offset +25:00 is outside -14:00 to +14:00');
    expect(reasons[8]).toContain('is out of range (0001 to 9999)');
    expect(reasons[9]).toBe('CAST: seen_at: 2026-02-30 is not a date that exists');
    expect(reasons[10]).toContain('is not a time of day that exists');
  });

  it('doubles: decimal or exponent notation, finite', async () => {
    const p = parsePipeline(
      `name: doubles
input: { prefix: d/, suffixes: [.csv] }
schema: [{ name: latency, type: double }]
table: { name: d, columns: [{ name: latency, type: double }, { name: day, type: date }], partitionDay: day }
transform: SELECT *, DATE '2024-01-01' AS day FROM input
rejects: { maxShare: 1 }
`,
      'doubles.yaml',
    );
    const { staged, rejects } = await runObject(p, 'd/d.csv', fixture('doubles.csv'));
    expect(staged.map((r) => r.latency)).toEqual([1.5, 2000, -0.5]);
    const reasons = byLine(rejects);
    for (const line of [3, 4, 5, 7]) expect(reasons[line]).toContain('must be a finite number');
    expect(reasons[6]).toBe('CAST: latency: 1e309 is out of range for double (finite values, up to about 1.8e308)');
  });
});

describe('the cheap shape tests say the rules of docs/values.md exactly', () => {
  it('integers and doubles at the edges of their shapes, with the raw line of each reject', async () => {
    const p = parsePipeline(
      `name: edges
input: { prefix: e/, suffixes: [.csv] }
schema: [{ name: n, type: integer }, { name: x, type: double }, { name: note, type: string }]
table: { name: e, columns: [{ name: n, type: integer }, { name: x, type: double }, { name: note, type: string }, { name: day, type: date }], partitionDay: day }
transform: SELECT *, DATE '2024-01-01' AS day FROM input
rejects: { maxShare: 1 }
`,
      'edges.yaml',
    );
    const good = ['+5,5.,a', '007,.5,b', '-0,-0.0e+0,c', '2147483647,1E-7,d', '-2147483648,+1.5e308,e'];
    const bad = ['1 ,1,f', ' 1,1,g', '+,1,h', '1,1e,i', '1,e5,j', '1,.,k', '1,1.5.2,l', '1,1e+,m', '1,+-1,n', '1, 1,o'];
    const text = `n,x,note\n${[...good, ...bad].join('\n')}\n`;
    const { staged, rejects } = await runObject(p, 'e/e.csv', text);
    expect(staged.map((r) => r.note)).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(staged.map((r) => r.n)).toEqual([5, 7, 0, 2147483647, -2147483648]);
    const reasons = byLine(rejects);
    expect(Object.keys(reasons).map(Number)).toEqual(bad.map((_, i) => good.length + 2 + i));
    for (const line of [7, 8, 9]) expect(reasons[line]).toContain('n must be an integer');
    for (const line of [10, 11, 12, 13, 14, 15, 16]) expect(reasons[line]).toContain('x must be a finite number');
    expect(rejects.map((r) => r.raw_line)).toEqual(bad);
  });
});

describe('a non-splittable CSV: quoted newlines stay in their record', () => {
  const whole = parsePipeline(
    stringify({
      ...parse(readFileSync(join(dir, '../../pipelines/access-logs.yaml'), 'utf8')),
      input: { ...accessLogs.input, splittable: false },
      rejects: { maxShare: 1 },
    }),
    'access-logs.yaml',
  );

  it('loads every row, the field keeps its newline, and a later reject has its physical line', async () => {
    const rows = [
      logRow(1),
      logRow(2, { user_agent: '"two\nlines"' }),
      logRow(3, { user_agent: '"crlf\r\nand ""quotes""\n"' }),
      logRow(4),
      logRow(5, { status: 'oops' }),
      logRow(6),
    ];
    const text = `${HEADER}\n${rows.join('\n')}\n`;
    const { staged, rejects, summary } = await runObject(whole, 'access-logs/q.csv', text);
    expect(summary).toMatchObject({ rowsRead: 6, rowsLoaded: 5, rowsRejected: 1 });
    expect(staged.map((r) => r.session_id)).toEqual(['s1', 's2', 's3', 's4', 's6']);
    expect(staged[1]?.user_agent).toBe('two\nlines');
    expect(staged[2]?.user_agent).toBe('crlf\r\nand "quotes"\n');
    // Header 1, rows 2, 3-4, 5-7, 8; the bad row starts on line 9.
    expect(rejects).toHaveLength(1);
    expect(rejects[0]).toMatchObject({ line_number: '9', raw_line: rows[4] });
    expect(String(rejects[0]?.reason)).toContain('status');
  });

  it('a quote that never closes is rejected from the line it opens on; the rows before it load', async () => {
    const rows = [
      logRow(1),
      logRow(2, { user_agent: '"a\nb"' }),
      logRow(3),
      logRow(4, { user_agent: '"open' }),
      logRow(5),
    ];
    const text = `${HEADER}\n${rows.join('\n')}\n`;
    const { staged, rejects, summary } = await runObject(whole, 'access-logs/u.csv', text);
    expect(summary).toMatchObject({ rowsRead: 4, rowsLoaded: 3, rowsRejected: 1 });
    expect(staged.map((r) => r.session_id)).toEqual(['s1', 's2', 's3']);
    expect(rejects[0]).toMatchObject({ line_number: '6' });
    expect(String(rejects[0]?.reason)).toBe(
      'QUOTE: the quote opened on line 6 is never closed before the end of the file, so lines 6 to 7 are rejected as one record; close the quote (a quote inside a quoted field is written twice)',
    );
  });
});
