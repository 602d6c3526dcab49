import { tmpdir } from 'node:os';
import { ConfigError } from './errors.ts';
import { parseByteSize } from './pipeline/size.ts';

/** Settings every handler reads once, at start-up. */
export interface Config {
  readonly inputBucket: string;
  readonly workingBucket: string;
  readonly warehouseBucket: string;
  readonly pipelinesDir: string;
  readonly tmpDir: string;
  /** `SLUICE_CHUNK_SIZE` overrides every pipeline's chunk size (local runs use it to split small files). */
  readonly chunkSizeOverride: number | undefined;
}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (!value) throw new ConfigError(`setting ${name} is missing: set it in the function's environment`);
  return value;
}

/** Reads the configuration from the environment; fails naming the first missing setting. */
export function readConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const override = env.SLUICE_CHUNK_SIZE;
  const chunkSizeOverride = override ? parseByteSize(override) : undefined;
  if (Number.isNaN(chunkSizeOverride)) {
    throw new ConfigError(`SLUICE_CHUNK_SIZE="${override}" is not a size such as 1MB or 64MB`);
  }
  return {
    inputBucket: required(env, 'SLUICE_INPUT_BUCKET'),
    workingBucket: required(env, 'SLUICE_WORKING_BUCKET'),
    warehouseBucket: required(env, 'SLUICE_WAREHOUSE_BUCKET'),
    pipelinesDir: required(env, 'SLUICE_PIPELINES_DIR'),
    tmpDir: env.SLUICE_TMP_DIR || tmpdir(),
    chunkSizeOverride,
  };
}
