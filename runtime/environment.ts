/**
 * The local stand-ins for the stack's settings: the runtime's files, the Athena names, and
 * what CDK puts in each Lambda's environment on AWS, which the runtime gives to the handlers'
 * factories (`localHandlerDeps`) instead of setting `process.env`.
 */
import { join, resolve } from 'node:path';
import { SFNClient } from '@aws-sdk/client-sfn';
import { type Config, readChunkSizeOverride } from '../functions/config.ts';
import type { HandlerDeps } from '../functions/handlers/shared.ts';
import { loadPipelines } from '../functions/pipeline/definition.ts';
import { S3ObjectStore } from '../functions/storage/s3-store.ts';
import { localS3Client } from './s3-client.ts';
import { LOCAL_BUCKETS } from './s3-server.ts';

export interface LocalPaths {
  /** The runtime folder (`.sluice` by default): S3 data, warehouse, executions, logs. */
  readonly dir: string;
  /** The repository root: `pipelines/`, `state-machines/`, `functions/handlers/`. */
  readonly repoRoot: string;
  /** The pipeline definitions, when not the repository's `pipelines/` (`sluice --pipelines <dir>`). */
  readonly pipelinesDir?: string;
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
    pipelines: paths.pipelinesDir ? resolve(paths.pipelinesDir) : join(resolve(paths.repoRoot), 'pipelines'),
    stateMachine: join(resolve(paths.repoRoot), 'state-machines', 'pipeline.asl.json'),
    handlers: join(resolve(paths.repoRoot), 'functions', 'handlers'),
  };
};

/**
 * The handlers' dependencies in the embedded runtime for one S3 endpoint: the configuration CDK
 * puts in each Lambda's environment on AWS (`infra/handlers.ts`), given to the handlers'
 * factories instead of set in `process.env`, so that runtimes on several endpoints can share a
 * process. Built on the first call (as a Lambda builds them on its first invocation) and kept.
 * The chunk size override (`SLUICE_CHUNK_SIZE`) is the one setting taken from the user's environment.
 */
export function localHandlerDeps(
  endpoint: string,
  paths: LocalPaths,
  env: NodeJS.ProcessEnv = process.env,
): () => HandlerDeps {
  let deps: HandlerDeps | undefined;
  return () => {
    if (!deps) {
      const files = localFiles(paths);
      const config: Config = {
        inputBucket: LOCAL_BUCKETS.input,
        workingBucket: LOCAL_BUCKETS.working,
        warehouseBucket: LOCAL_BUCKETS.warehouse,
        pipelinesDir: files.pipelines,
        tmpDir: files.tmp,
        chunkSizeOverride: readChunkSizeOverride(env),
      };
      // The handlers' own client, as each Lambda has its own.
      const s3 = localS3Client(endpoint);
      // Step Functions on the same endpoint (runtime/sfn-api.ts): the lease asks it whether a holder still runs.
      const sfn = new SFNClient({
        endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'sluice-local', secretAccessKey: 'sluice-local' },
      });
      deps = { config, s3, sfn, store: new S3ObjectStore(s3), pipelines: loadPipelines(files.pipelines) };
    }
    return deps;
  };
}
