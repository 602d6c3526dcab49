import { tmpdir } from 'node:os';
import { ENV } from './catalog.ts';
import { ConfigError } from './errors.ts';
import { parseByteSize } from './pipeline/size.ts';

/**
 * What every handler is configured with: on Lambda read once from the function's environment
 * (`readConfig`), in the embedded runtime given by the runtime (`runtime/environment.ts`).
 */
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

/**
 * The chunk size override (`SLUICE_CHUNK_SIZE`) of an environment, the one setting the
 * embedded runtime takes from the user's environment into the handlers' configuration.
 */
export function readChunkSizeOverride(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const override = env[ENV.chunkSize];
  const chunkSize = override ? parseByteSize(override) : undefined;
  if (Number.isNaN(chunkSize)) {
    throw new ConfigError(`${ENV.chunkSize}="${override}" is not a size such as 1MB or 64MB`);
  }
  return chunkSize;
}

/** Reads the configuration from the environment (a Lambda's); fails naming the first missing setting. */
export function readConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const chunkSizeOverride = readChunkSizeOverride(env);
  return {
    inputBucket: required(env, ENV.inputBucket),
    workingBucket: required(env, ENV.workingBucket),
    warehouseBucket: required(env, ENV.warehouseBucket),
    pipelinesDir: required(env, ENV.pipelinesDir),
    tmpDir: env[ENV.tmpDir] || tmpdir(),
    chunkSizeOverride,
  };
}
