/**
 * Where a run keeps its files in the working bucket. Every key is built here, from
 * validated pipeline names and run ids, so nothing from an event reaches a key unchecked.
 */
import { RequestError } from '../errors.ts';

const RUN_ID = /^[A-Za-z0-9_-]{1,80}$/;

/** Run ids are Step Functions execution names; they appear in S3 keys and SQL literals. */
export function assertRunId(runId: string): string {
  if (!RUN_ID.test(runId))
    throw new RequestError(`run id "${runId}" must be 1-80 characters of A-Z, a-z, 0-9, _ and -`);
  return runId;
}

const pad = (index: number) => String(index).padStart(5, '0');

export const layout = {
  manifest: (pipeline: string, runId: string) => `manifests/${pipeline}/${runId}.json`,
  runFolder: (pipeline: string, runId: string) => `runs/${pipeline}/${runId}/`,
  runRecord: (pipeline: string, runId: string) => `runs/${pipeline}/${runId}/run.json`,
  chunkResult: (pipeline: string, runId: string, index: number) =>
    `runs/${pipeline}/${runId}/chunks/${pad(index)}.json`,
  chunkResultsPrefix: (pipeline: string, runId: string) => `runs/${pipeline}/${runId}/chunks/`,
  /** A failed chunk's error (ChunkFailure), written by the Work handler for RecordFailure. */
  chunkError: (pipeline: string, runId: string, index: number) => `runs/${pipeline}/${runId}/errors/${pad(index)}.json`,
  chunkErrorsPrefix: (pipeline: string, runId: string) => `runs/${pipeline}/${runId}/errors/`,
  /**
   * A chunk's attempts marker ({@link ChunkAttempt} in contracts.ts): counts the Work handler's tries
   * of a chunk in a run, those that died without a word (a timeout, out of memory) included.
   */
  chunkAttempt: (pipeline: string, runId: string, index: number) =>
    `runs/${pipeline}/${runId}/attempts/${pad(index)}.json`,
  chunkAttemptsPrefix: (pipeline: string, runId: string) => `runs/${pipeline}/${runId}/attempts/`,
  chunkRejects: (pipeline: string, runId: string, index: number) =>
    `runs/${pipeline}/${runId}/rejects/${pad(index)}.parquet`,
  /** Hive-style `run_id=` folders: the staging tables are partitioned by run id. */
  stagingRoot: (pipeline: string) => `staging/${pipeline}/`,
  staging: (pipeline: string, runId: string, index: number) =>
    `staging/${pipeline}/run_id=${runId}/${pad(index)}.parquet`,
  stagingRun: (pipeline: string, runId: string) => `staging/${pipeline}/run_id=${runId}/`,
  rejectsRoot: (pipeline: string) => `rejects/${pipeline}/`,
  rejects: (pipeline: string, runId: string) => `rejects/${pipeline}/run_id=${runId}/rejects.parquet`,
  rejectsRun: (pipeline: string, runId: string) => `rejects/${pipeline}/run_id=${runId}/`,
  /** One marker per loaded (key, version): see `functions/ledger/ledger.ts` for the keys below it. */
  ledgerPrefix: (pipeline: string) => `loaded/${pipeline}/`,
  /** One marker per refused (key, version) (wrong header, not gzip...): scheduled runs skip that version. */
  refusedPrefix: (pipeline: string) => `refused/${pipeline}/`,
  /** The objects a run planned (`ObjectInfo[]`), for Finish to mark loaded. */
  runInputs: (pipeline: string, runId: string) => `runs/${pipeline}/${runId}/inputs.json`,
  setupMarker: (pipeline: string, hash: string) => `catalog/${pipeline}/${hash}.json`,
  /** The shapes of the pipeline's tables as last set up (see pipeline/applied-tables.ts). */
  appliedTables: (pipeline: string) => `catalog/${pipeline}/tables.json`,
} as const;
