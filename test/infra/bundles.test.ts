/**
 * Every handler bundles with esbuild as `cdk synth` bundles it (infra/handlers.ts: ESM, node24,
 * the AWS SDK bundled, `@duckdb/node-api` installed beside the bundle only for the handlers the
 * catalog marks `duckdb`). The infra tests synthesize without bundling (test/infra/fixture.ts), so
 * without this a handler that reaches DuckDB through an import, while the catalog says it does
 * not use it, would pass every test and fail only `cdk synth` / `cdk deploy`.
 */
import { join } from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { HANDLERS } from '../../functions/catalog.ts';

const HANDLERS_DIR = join(import.meta.dirname, '../../functions/handlers');

/** The bundle's inputs and errors: what CDK's esbuild step would build or refuse. */
async function bundle(entry: string, duckdb: boolean) {
  const result = await build({
    entryPoints: [join(HANDLERS_DIR, entry)],
    bundle: true,
    write: false,
    metafile: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    mainFields: ['module', 'main'],
    // CDK's nodeModules are external to the bundle and installed beside it.
    external: duckdb ? ['@duckdb/node-api'] : [],
    logLevel: 'silent',
  }).catch((error: { errors?: { text: string }[] }) => ({
    errors: error.errors ?? [{ text: String(error) }],
    metafile: undefined,
  }));
  return { errors: result.errors.map((e) => e.text), inputs: Object.keys(result.metafile?.inputs ?? {}) };
}

describe('handler bundles', () => {
  for (const spec of Object.values(HANDLERS)) {
    it(`bundles ${spec.entry} as cdk synth does (DuckDB ${spec.duckdb ? 'installed beside it' : 'not used'})`, async () => {
      const { errors, inputs } = await bundle(spec.entry, spec.duckdb);
      expect(errors).toEqual([]);
      if (!spec.duckdb) expect(inputs.filter((i) => i.includes('@duckdb'))).toEqual([]);
      // Only the lease function asks Step Functions anything.
      if (spec.entry !== HANDLERS.lease.entry) expect(inputs.filter((i) => i.includes('client-sfn'))).toEqual([]);
    });
  }
});
