/**
 * `npm run test:e2e -- --target local|localstack|aws [--stack <name>] [vitest options]`: the
 * end-to-end suite (test/e2e/targets) against one target, through the AWS SDK clients only.
 * The target and stack reach the suite as SLUICE_E2E_TARGET and SLUICE_E2E_STACK. For
 * localstack and aws, a missing endpoint or stack makes every test end skipped, saying what is
 * missing; it never passes.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { isTarget, TARGETS } from '../cli/remote.ts';

const ROOT = join(import.meta.dirname, '..');
const USAGE = `usage: npm run test:e2e -- [--target ${TARGETS.join('|')}] [--stack <name>] [vitest options]`;

/** Takes `--name value` or `--name=value` out of the arguments. */
function option(args: string[], name: string): string | undefined {
  const at = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (at < 0) return undefined;
  const [flag] = args.splice(at, 1);
  if (flag?.includes('=')) return flag.slice(flag.indexOf('=') + 1);
  const value = args.splice(at, 1)[0];
  if (value === undefined || value.startsWith('--')) fail(`--${name} needs a value\n${USAGE}`);
  return value;
}

function fail(message: string): never {
  console.error(`test:e2e: ${message}`);
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log(USAGE);
  process.exit(0);
}
const target = option(args, 'target') ?? 'local';
if (!isTarget(target)) fail(`unknown target "${target}": use one of ${TARGETS.join(', ')}\n${USAGE}`);
const stack = option(args, 'stack');

const vitest = join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');
const result = spawnSync(process.execPath, [vitest, 'run', 'test/e2e/targets', ...args], {
  cwd: ROOT,
  stdio: 'inherit',
  env: { ...process.env, SLUICE_E2E_TARGET: target, ...(stack ? { SLUICE_E2E_STACK: stack } : {}) },
});
if (result.error) fail(`could not start vitest: ${result.error.message}`);
process.exit(result.status ?? 1);
