/**
 * How the CLI and the demo print runs and query results. A failure is shown by its plain
 * message (which input, what was wrong, where, what to do); long cells are cut at a word
 * boundary with an ellipsis, never mid-word.
 */
import { cutAtWord } from '../functions/run/failure-message.ts';
import type { RunDetail, RunRow } from '../runtime/executions.ts';

export function duration(row: Pick<RunRow, 'startedAt' | 'stoppedAt'>): string {
  if (!row.stoppedAt) return '';
  const seconds = (Date.parse(row.stoppedAt) - Date.parse(row.startedAt)) / 1000;
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

/** Wraps `text` at word boundaries into lines of at most `width` characters (a longer word is cut). */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    let rest = word;
    while (rest.length > width) {
      if (line) lines.push(line);
      line = '';
      lines.push(rest.slice(0, width));
      rest = rest.slice(width);
    }
    if (!line) line = rest;
    else if (line.length + 1 + rest.length <= width) line = `${line} ${rest}`;
    else {
      lines.push(line);
      line = rest;
    }
  }
  if (line) lines.push(line);
  return lines;
}

const label = (name: string) => name.padEnd(10);

/** Prints `label  text`, the text wrapped under itself. */
function printWrapped(name: string, text: string, width = 90): void {
  const [first = '', ...rest] = wrap(text, width);
  console.log(`${label(name)}${first}`);
  for (const line of rest) console.log(`${' '.repeat(10)}${line}`);
}

export function printSummary(row: RunRow): void {
  const count = (n: number | null) => (n === null ? '?' : String(n));
  console.log('');
  console.log(`run       ${row.id}`);
  console.log(`status    ${row.status}`);
  console.log(`pipeline  ${row.pipeline} (${row.trigger})`);
  console.log(`chunks    ${count(row.chunks)}`);
  console.log(
    `rows      ${count(row.rowsRead)} read, ${count(row.rowsLoaded)} loaded, ${count(row.rowsRejected)} rejected`,
  );
  console.log(`duration  ${duration(row)}`);
  if (row.error) {
    printWrapped('error', row.message ?? row.cause ?? '');
    const type = row.details?.errorType ?? row.error;
    console.log(`${label('type')}${type}${type !== row.error ? ` (${row.error})` : ''}`);
  }
}

/** `sluice runs <run>`: the summary, the input, the steps, and the failure's details. */
export function printRunDetail(run: RunDetail): void {
  printSummary(run);
  console.log(`started   ${run.startedAt}`);
  if (run.stoppedAt) console.log(`stopped   ${run.stoppedAt}`);
  const input = run.input as { key?: unknown; bucket?: unknown; keys?: unknown } | null;
  if (typeof input?.key === 'string') console.log(`input     s3://${String(input.bucket)}/${input.key}`);
  if (run.details?.requestId) console.log(`request   ${run.details.requestId}`);
  for (const chunk of run.details?.chunks ?? []) {
    const parts = chunk.parts.map((p) => `${p.key} (bytes ${p.start}–${p.end})`).join(', ');
    // The run's message is usually the first chunk's: not twice.
    const said = run.message?.includes(chunk.message) ?? false;
    printWrapped(`chunk ${chunk.index}`, `${chunk.errorType} in ${parts}${said ? '' : `: ${chunk.message}`}`);
  }
  if (run.details?.chunksFailed) console.log(`          ${run.details.chunksFailed} chunks failed in all`);
  if (run.steps.length > 0) {
    console.log('');
    printTable(
      run.steps.map((s) => ({
        step: s.name,
        status: s.status,
        seconds: (s.ms / 1000).toFixed(1),
        ...(s.times > 1 ? { times: s.times } : {}),
      })),
    );
  }
}

/** Cuts a cell to `width` at a word boundary, with an ellipsis. */

export function printTable(rows: Record<string, unknown>[]): void {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) =>
    v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  const widths = columns.map((c) => Math.min(60, Math.max(c.length, ...rows.map((r) => cell(r[c]).length))));
  const line = (values: string[]) =>
    values
      .map((v, i) => {
        const width = widths[i] ?? 0;
        return cutAtWord(v, width).padEnd(width);
      })
      .join('  ')
      .trimEnd();
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of rows) console.log(line(columns.map((c) => cell(row[c]))));
}
