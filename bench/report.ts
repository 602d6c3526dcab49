/**
 * What the benchmark scripts share: medians, the machine and commit line, the generated
 * access-log file in `.bench/`, and the entry appended to docs/benchmarks.md. Each script prints
 * its summary as the last block of its output (after a blank line), which `bench/run-all.ts`
 * collects into one entry.
 */
import { execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { writeSample } from '../demo/generate.ts';

export const root = resolve(import.meta.dirname, '..');
export const benchDir = join(root, '.bench');

export const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  const m = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[m] as number) : ((sorted[m - 1] as number) + (sorted[m] as number)) / 2;
};

/** "median 1.23 s (min 1.10, max 1.40)". */
export const spread = (xs: readonly number[], unit = 's', digits = 2): string =>
  `median ${median(xs).toFixed(digits)} ${unit} (min ${Math.min(...xs).toFixed(digits)}, max ${Math.max(...xs).toFixed(digits)})`;

export const machine = (): string =>
  `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')} at the end`;

export const commit = (): string => {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd: root,
      encoding: 'utf8',
    });
    return dirty.trim() ? `${head} (with uncommitted changes)` : head;
  } catch {
    return 'unknown';
  }
};

/** The generated access-log file of `rows` rows (1,900,000 rows are about 220 MB), made once and kept in `.bench/`. */
export async function accessLogFile(rows: number): Promise<string> {
  mkdirSync(benchDir, { recursive: true });
  const file = join(benchDir, `access-logs-${rows}.csv`);
  if (!existsSync(file)) {
    console.log(`generating ${rows} rows into ${file} ...`);
    await writeSample(file, '2024-03-01', rows, 20, 42);
  }
  return file;
}

/** Prints the summary block (last in the output, after a blank line) and appends it to docs/benchmarks.md unless `append` is false. */
export function report(name: string, lines: readonly string[], append: boolean, note?: string): void {
  console.log(`\n${lines.join('\n')}`);
  if (!append) return;
  appendFileSync(join(root, 'docs/benchmarks.md'), entry(name, lines, note));
  console.log('appended to docs/benchmarks.md');
}

export const entry = (name: string, lines: readonly string[], note?: string): string =>
  `\n## ${name}, ${new Date().toISOString().slice(0, 16)}Z, commit ${commit()}\n\nMachine: ${machine()}\n\n${lines
    .map((l) => `- ${l}`)
    .join('\n')}\n${note ? `\n${note}\n` : ''}`;

/** Runs Node (this one) with `args` in a child process and resolves with its exit code and output. */
export function runNode(
  args: readonly string[],
  options: SpawnOptions = {},
): Promise<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }> {
  const child = spawn(process.execPath, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => {
    stdout += b.toString();
  });
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}
