/** How the CLI and the demo print runs and query results. */
import type { RunRow } from '../runtime/executions.ts';
import { readableCause } from '../runtime/state-machine.ts';

export function duration(row: RunRow): string {
  if (!row.stoppedAt) return '';
  const seconds = (Date.parse(row.stoppedAt) - Date.parse(row.startedAt)) / 1000;
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
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
    console.log(`error     ${row.error}`);
    console.log(`cause     ${readableCause(row.cause)}`);
  }
}

export function printTable(rows: Record<string, unknown>[]): void {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) =>
    v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  const widths = columns.map((c) => Math.min(60, Math.max(c.length, ...rows.map((r) => cell(r[c]).length))));
  const line = (values: string[]) =>
    values
      .map((v, i) => {
        const width = widths[i] ?? 0;
        return v.length > width ? `${v.slice(0, width - 1)}…` : v.padEnd(width);
      })
      .join('  ')
      .trimEnd();
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of rows) console.log(line(columns.map((c) => cell(row[c]))));
}
