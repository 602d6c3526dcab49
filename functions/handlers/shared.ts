/**
 * What every handler builds once per process (module scope): configuration, the S3
 * adapter and the pipeline definitions. Fails at start-up naming a missing setting.
 */
import { readConfig } from '../config.ts';
import { loadPipelines } from '../pipeline/definition.ts';
import { createS3Client, S3ObjectStore } from '../storage/s3-store.ts';

export const config = readConfig();
export const store = new S3ObjectStore(createS3Client());
export const pipelines = loadPipelines(config.pipelinesDir);
