/**
 * `npm run bench`: the four benchmarks one after another (worker, end to end, planning, cold
 * start), each in its own process with its default settings, then ONE entry in
 * docs/benchmarks.md with every figure beside its target, the machine and the commit. A
 * benchmark that fails is named in the entry and the others still run; the exit code is then 1.
 * `--only e2e,planning` runs some of them.
 */
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { entry, root } from './report.ts';

const BENCHES = {
  worker: 'bench/worker.ts',
  e2e: 'bench/e2e.ts',
  planning: 'bench/planning.ts',
  'cold-start': 'bench/cold-start.ts',
} as const;
type Bench = keyof typeof BENCHES;

const { values } = parseArgs({
  options: { only: { type: 'string' }, 'no-append': { type: 'boolean', default: false } },
});

/** Runs one benchmark, its output passed through; resolves to its summary block (the lines after its last blank line). */
function run(name: Bench): Promise<string[]> {
  const child = spawn(process.execPath, [join(root, BENCHES[name]), '--no-append'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.on('data', (b: Buffer) => {
    process.stdout.write(b);
    stdout += b.toString();
  });
  return new Promise((resolve, reject) => {
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`npm run bench:${name} exited with ${code}`));
      const blocks = stdout.trimEnd().split(/\n\s*\n/);
      resolve((blocks.at(-1) ?? '').split('\n').filter((line) => line.trim() && !line.startsWith('appended')));
    });
  });
}

const names = (values.only ? values.only.split(',').map((n) => n.trim()) : Object.keys(BENCHES)) as Bench[];
const unknown = names.filter((n) => !(n in BENCHES));
if (unknown.length > 0) {
  console.error(`--only: no benchmark named ${unknown.join(', ')} (there are ${Object.keys(BENCHES).join(', ')})`);
  process.exit(2);
}
const lines: string[] = [];
let failed = false;
for (const name of names) {
  console.log(`\n=== bench:${name} ===`);
  try {
    lines.push(...(await run(name)).map((line) => `${name}: ${line}`));
  } catch (error) {
    failed = true;
    lines.push(`${name}: FAILED (${(error as Error).message})`);
  }
}
console.log(`\n${lines.join('\n')}`);
if (!values['no-append']) {
  appendFileSync(join(root, 'docs/benchmarks.md'), entry('npm run bench', lines));
  console.log('appended to docs/benchmarks.md');
}
process.exitCode = failed ? 1 : 0;
