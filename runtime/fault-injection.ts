/**
 * The worker faults of `runtime/faults.ts`, around the embedded runtime's Lambda service: off
 * unless `SLUICE_FAULTS` sets them (the wrapper then only forwards). Only the Work function (one
 * Distributed Map item, one chunk) is touched; every other function is called as is.
 * - `worker-error`: the invocation fails before the handler runs, with `Lambda.ServiceException`,
 *   an error Lambda's Invoke reports for a failure on the service's side, and which the Work
 *   state's Retry matches (state-machines/pipeline.asl.json), as the Step Functions guide asks.
 *   https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html
 *   https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html (Errors)
 * - `worker-partial`: the handler runs, then the chunk's last writes are taken back (its rejects
 *   and its result JSON: what a worker that dies after writing the staged rows leaves) and the
 *   invocation fails with the same transient error, so the retry meets the leftovers.
 */
import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { HANDLERS } from '../functions/catalog.ts';
import { layout } from '../functions/storage/layout.ts';
import type { Json } from './distributed-map.ts';
import { type Faults, faults } from './faults.ts';
import { LOCAL_BUCKETS } from './s3-server.ts';
import { type LocalServices, TaskError } from './state-machine.ts';

/** The error an injected worker fault fails the invocation with. */
export const INJECTED_WORKER_ERROR = 'Lambda.ServiceException';

/** The function name of a name or ARN (`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`). */
const functionName = (nameOrArn: string) =>
  nameOrArn.startsWith('arn:') ? (nameOrArn.split(':')[6] ?? '') : (nameOrArn.split(':')[0] ?? '');

/** The chunk of a Work payload, when it is one (a malformed payload goes to the handler, which says what is wrong). */
function chunkOf(payload: Json): { pipeline: string; runId: string; index: number } | undefined {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return undefined;
  const { pipeline, runId, index } = payload as Record<string, unknown>;
  return typeof pipeline === 'string' && typeof runId === 'string' && typeof index === 'number'
    ? { pipeline, runId, index }
    : undefined;
}

/**
 * Wraps the Lambda service with the worker faults. `current` is read at each invocation, so a
 * test may set the process's faults after the runtime is built.
 */
export function withFaults(
  invoke: LocalServices['invokeLambda'],
  s3: S3Client,
  current: () => Faults = faults,
): LocalServices['invokeLambda'] {
  return async (name, payload) => {
    const injected = current();
    const chunk = chunkOf(payload);
    if (!injected.enabled || functionName(name) !== HANDLERS.work.localName || !chunk) return invoke(name, payload);
    const where = `${chunk.runId} chunk ${chunk.index}`;
    if (injected.roll('worker-error', where)) {
      throw new TaskError(INJECTED_WORKER_ERROR, `injected fault (worker-error): the invocation of ${where} failed`);
    }
    if (!injected.roll('worker-partial', where)) return invoke(name, payload);
    // The handler's own failure, if any, is the one to report: the fault comes after its writes.
    await invoke(name, payload);
    for (const key of [
      layout.chunkRejects(chunk.pipeline, chunk.runId, chunk.index),
      layout.chunkResult(chunk.pipeline, chunk.runId, chunk.index),
    ]) {
      await s3.send(new DeleteObjectCommand({ Bucket: LOCAL_BUCKETS.working, Key: key }));
    }
    throw new TaskError(
      INJECTED_WORKER_ERROR,
      `injected fault (worker-partial): ${where} died after staging its rows, before its result`,
    );
  };
}
