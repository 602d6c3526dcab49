/**
 * The local stand-ins for the stack's settings: what CDK puts in each Lambda's environment
 * on AWS. Handlers read them once, at import (their S3 client is built at module scope),
 * so they must be set before the first handler is imported, and one process serves one
 * S3 endpoint.
 */
import { join, resolve } from 'node:path';
import { LOCAL_BUCKETS } from './s3-server.ts';

export interface LocalPaths {
  /** The runtime folder (`.sluice` by default): S3 data, warehouse, executions, logs. */
  readonly dir: string;
  /** The repository root: `pipelines/`, `state-machines/`, `functions/handlers/`. */
  readonly repoRoot: string;
}

/** The Glue database / Athena workgroup names the ASL placeholders get locally. */
export const LOCAL_ATHENA_DATABASE = 'sluice';

export const localFiles = (paths: LocalPaths) => {
  const dir = resolve(paths.dir);
  return {
    dir,
    warehouse: join(dir, 'warehouse.duckdb'),
    executions: join(dir, 'executions'),
    notifications: join(dir, 'notifications.jsonl'),
    devInfo: join(dir, 'dev.json'),
    tmp: join(dir, 'tmp'),
    pipelines: join(resolve(paths.repoRoot), 'pipelines'),
    stateMachine: join(resolve(paths.repoRoot), 'state-machines', 'pipeline.asl.json'),
    handlers: join(resolve(paths.repoRoot), 'functions', 'handlers'),
  };
};

let appliedEndpoint: string | undefined;

/**
 * Sets the handlers' environment for an S3 endpoint. Dummy credentials are set only when
 * none are configured. `SLUICE_CHUNK_SIZE` is left as the user set it (the planner reads it).
 * Throws if called again with another endpoint: handlers already imported keep the first.
 */
export function applyLocalEnvironment(endpoint: string, paths: LocalPaths, env: NodeJS.ProcessEnv = process.env): void {
  if (env === process.env && appliedEndpoint !== undefined && appliedEndpoint !== endpoint) {
    throw new Error(
      `this process already serves the S3 endpoint ${appliedEndpoint}; handlers cannot be pointed at ${endpoint}`,
    );
  }
  const files = localFiles(paths);
  Object.assign(env, {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_REGION: 'us-east-1',
    SLUICE_S3_FORCE_PATH_STYLE: 'true',
    SLUICE_INPUT_BUCKET: LOCAL_BUCKETS.input,
    SLUICE_WORKING_BUCKET: LOCAL_BUCKETS.working,
    SLUICE_WAREHOUSE_BUCKET: LOCAL_BUCKETS.warehouse,
    SLUICE_PIPELINES_DIR: files.pipelines,
    SLUICE_ATHENA_DATABASE: LOCAL_ATHENA_DATABASE,
    SLUICE_TMP_DIR: files.tmp,
  });
  env.AWS_ACCESS_KEY_ID ||= 'sluice-local';
  env.AWS_SECRET_ACCESS_KEY ||= 'sluice-local';
  if (env === process.env) appliedEndpoint = endpoint;
}
