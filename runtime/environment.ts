/**
 * The local stand-ins for the stack's settings: what CDK puts in each Lambda's environment
 * on AWS. Handlers read them once, at import (their S3 client is built at module scope),
 * so they must be set before the first handler is imported, and one process serves one
 * S3 endpoint.
 */
import { join, resolve } from 'node:path';
import { ENV } from '../functions/catalog.ts';
import { LOCAL_BUCKETS } from './s3-server.ts';

export interface LocalPaths {
  /** The runtime folder (`.sluice` by default): S3 data, warehouse, executions, logs. */
  readonly dir: string;
  /** The repository root: `pipelines/`, `state-machines/`, `functions/handlers/`. */
  readonly repoRoot: string;
}

/** The Glue database the ASL's `${GlueDatabase}` and the handlers' database setting get locally. */
export const LOCAL_ATHENA_DATABASE = 'sluice';
/** The Athena workgroup the ASL's `${AthenaWorkGroup}` gets locally. */
export const LOCAL_ATHENA_WORKGROUP = 'sluice';

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
 * none are configured. The chunk size (`ENV.chunkSize`) is left as the user set it (the planner reads it).
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
    [ENV.s3ForcePathStyle]: 'true',
    [ENV.inputBucket]: LOCAL_BUCKETS.input,
    [ENV.workingBucket]: LOCAL_BUCKETS.working,
    [ENV.warehouseBucket]: LOCAL_BUCKETS.warehouse,
    [ENV.pipelinesDir]: files.pipelines,
    [ENV.athenaDatabase]: LOCAL_ATHENA_DATABASE,
    [ENV.tmpDir]: files.tmp,
  });
  env.AWS_ACCESS_KEY_ID ||= 'sluice-local';
  env.AWS_SECRET_ACCESS_KEY ||= 'sluice-local';
  if (env === process.env) appliedEndpoint = endpoint;
}
