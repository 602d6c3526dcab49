import { DescribeExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { ConfigError, RequestError } from '../errors.ts';
import { acquireLease, type LeaseGrant, type ReleaseResult, releaseLease } from '../lease/lease.ts';
import { S3LeaseObjects } from '../lease/s3-lease-objects.ts';
import { observe } from '../observability.ts';
import { toPlainError, withPlainErrors } from '../run/failure-message.ts';
import { clockOf, type Handler, type HandlerDeps, onFirstCall } from './shared.ts';

/** What the AcquireLease and ReleaseLease states send: the action, the execution's input and name. */
export interface LeaseEvent {
  readonly action: 'acquire' | 'release';
  /** The execution input (a RunRequest): its pipeline, and `redriveOf` for a redrive. */
  readonly request: unknown;
  readonly runId: string;
  /** `$$.Execution.Id`: kept in the lease, so that waiting runs can ask whether the holder still runs. */
  readonly executionArn?: string;
}

export type LeaseOutput = LeaseGrant | ReleaseResult;

const field = (request: unknown, name: string): unknown =>
  typeof request === 'object' && request !== null ? (request as Record<string, unknown>)[name] : undefined;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * AcquireLease / ReleaseLease states: take the pipeline's load lease before Verify (waiting for
 * the run that holds it; Sluice.LeaseBusy when it is still held, which the state machine retries),
 * and give it back after Finish and on the failure path. Release never fails a run: a run that
 * does not hold the lease (it failed before taking it) gets `released: false`.
 */
export const createHandler = (deps: HandlerDeps): Handler<LeaseEvent, LeaseOutput> => {
  if (!deps.s3) throw new ConfigError('the lease handler needs the S3 client (HandlerDeps.s3) for conditional writes');
  const objects = new S3LeaseObjects(deps.s3, deps.config.workingBucket);
  const now = clockOf(deps);
  const sfn = deps.sfn;
  /** DescribeExecution: false once the execution has ended or does not exist; undefined when it cannot be asked. */
  const isRunning = sfn
    ? async (executionArn: string): Promise<boolean | undefined> => {
        try {
          const { status } = await sfn.send(new DescribeExecutionCommand({ executionArn }));
          return status === 'RUNNING' || status === 'PENDING_REDRIVE';
        } catch (error) {
          if ((error as { name?: string }).name === 'ExecutionDoesNotExist') return false;
          const warning = `could not ask whether ${executionArn} still runs: ${toPlainError(error).message}`;
          if (deps.telemetry) deps.telemetry.logger.warn(warning);
          else console.error(warning);
          return undefined;
        }
      }
    : undefined;
  return observe(
    deps.telemetry,
    { step: 'lease' },
    withPlainErrors(async (event) => {
      const pipeline = field(event?.request, 'pipeline');
      const known = typeof pipeline === 'string' && deps.pipelines.has(pipeline);
      if (event?.action === 'release') {
        return known
          ? releaseLease({ pipeline, runId: event.runId }, { objects })
          : { pipeline: String(pipeline), released: false };
      }
      if (event?.action !== 'acquire') {
        throw new RequestError(`the lease action must be acquire or release, not ${String(event?.action)}`);
      }
      if (!known)
        throw new RequestError(`cannot take the lease of an unknown pipeline "${String(pipeline).slice(0, 60)}"`);
      const redriveOf = field(event.request, 'redriveOf');
      return acquireLease(
        {
          pipeline,
          runId: event.runId,
          ...(typeof event.executionArn === 'string' ? { executionArn: event.executionArn } : {}),
          ...(typeof redriveOf === 'string' ? { redriveOf } : {}),
        },
        { objects, now, sleep, ...(isRunning ? { isRunning } : {}) },
      );
    }),
  );
};

/** On Lambda, with a Step Functions client of the function's own (only this bundle carries it). */
export const handler = onFirstCall((deps) => createHandler({ ...deps, sfn: deps.sfn ?? new SFNClient({}) }));
