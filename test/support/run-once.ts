/**
 * One process, one run: starts the embedded stack on a runtime folder with the pipelines of a
 * repository root, uploads one file, prints the run's record and the rows of each query as one
 * JSON line, and exits. Handlers read their pipeline definitions once per process, as on
 * Lambda, so a test that changes a definition runs each step in a new process.
 *
 * Usage: node test/support/run-once.ts <repoRoot> <dir> <key> <file> [<sql>...]
 */
import { readFileSync } from 'node:fs';
import { startTestStack } from './embedded.ts';

const [repoRoot, dir, key, file, ...queries] = process.argv.slice(2);
if (!repoRoot || !dir || !key || !file) throw new Error('usage: run-once.ts <repoRoot> <dir> <key> <file> [<sql>...]');
try {
  const stack = await startTestStack(dir, repoRoot);
  const run = await stack.upload(key, readFileSync(file));
  const rows = [];
  for (const sql of queries) rows.push(await stack.query(sql));
  await stack.embedded.stop();
  console.log(JSON.stringify({ run, rows }));
} catch (error) {
  console.log(JSON.stringify({ error: (error as Error).message }));
}
process.exit(0);
