/**
 * The load lease: at most one run of a pipeline (= one set of tables) is between Verify and the
 * end of Finish at a time, so loads into a table are serialized by a mechanism rather than by
 * hoping that Iceberg's commit-conflict retries win.
 *
 * The lease is one small JSON object per pipeline in the working bucket, taken and handed over
 * with S3 conditional writes: `If-None-Match: *` creates it only if no run holds it, `If-Match:
 * <etag>` takes over an expired one only if nobody else did first, and release deletes it only if
 * it is still this run's (`If-Match` on DeleteObject; where a server ignores that header, the
 * holder check just before is what guards it). S3 answers the loser of two conditional writes
 * with 412 PreconditionFailed (or 409 ConditionalRequestConflict), so two runs never both hold it.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html
 *
 * A holder whose execution has ended without releasing (stopped with StopExecution, timed out, or
 * left behind by a crashed local runtime) gives it up at once: the lease names the holder's
 * execution, and a waiting run that finds it no longer RUNNING (DescribeExecution) takes the lease
 * over with `If-Match`. A holder whose state is unknown (no such client, an error) keeps it until
 * it expires ({@link LEASE_TTL_MS}); its own redrive (`redriveOf`) takes it over at once.
 */
import { RequestError, SluiceError } from '../errors.ts';
import { assertRunId } from '../storage/layout.ts';

/** Another run of the pipeline holds the lease. The state machine retries it with backoff (AcquireLease). */
export class LeaseBusyError extends SluiceError {
  override name = 'Sluice.LeaseBusy';
}

/**
 * How long a lease lasts: longer than a run stays between Verify and Finish (Verify's 10-minute
 * function with its retries, the load statements with their commit-conflict retries, Finish).
 * A lease is never renewed: should a run hold it longer, another run may start loading, and
 * Iceberg's own commit check, the Load's retries and the lineage-keyed MERGE still keep every row once.
 */
export const LEASE_TTL_MS = 2 * 60 * 60 * 1000;

/**
 * How long one acquire invocation waits for a busy lease before it throws {@link LeaseBusyError}
 * (the Lambda's timeout is longer): the next run starts as soon as the holder releases, without
 * waiting for the state machine's backoff.
 */
export const LEASE_WAIT_MS = 45_000;

/** The lease object's key in the working bucket. */
export const LEASE_PREFIX = 'leases/';

const PIPELINE_NAME = /^[a-z][a-z0-9-]{1,38}[a-z0-9]$/;

/** The lease key of a pipeline; the name is checked (the rule of pipeline names), so no event reaches a key unchecked. */
export function leaseKey(pipeline: string): string {
  if (typeof pipeline !== 'string' || !PIPELINE_NAME.test(pipeline)) {
    throw new RequestError(
      `"${String(pipeline).slice(0, 60)}" is not a pipeline name (3-40 characters of a-z, 0-9 and -)`,
    );
  }
  return `${LEASE_PREFIX}${pipeline}.json`;
}

/** The lease object's content. */
export interface Lease {
  readonly pipeline: string;
  /** The run (execution name) that holds it. */
  readonly holder: string;
  /** The holder's execution ARN, to ask Step Functions whether it still runs. */
  readonly execution?: string;
  readonly acquiredAt: string;
  readonly expiresAt: string;
}

/** A lease object as read, with its ETag (what a conditional write or delete names). */
export interface StoredLease {
  readonly lease: Lease;
  readonly etag: string;
}

/** The conditional S3 operations the lease needs (`s3-lease-objects.ts` on S3; any S3 API that has conditional writes). */
export interface LeaseObjects {
  read(key: string): Promise<StoredLease | undefined>;
  /** PutObject with `If-None-Match: *`: `exists` when an object is there. */
  create(key: string, lease: Lease): Promise<'written' | 'exists'>;
  /** PutObject with `If-Match: <etag>`: `changed` when the object is another one (or gone). */
  replace(key: string, lease: Lease, etag: string): Promise<'written' | 'changed'>;
  /** DeleteObject with `If-Match: <etag>`: `changed` when the object is another one (or gone). */
  remove(key: string, etag: string): Promise<'removed' | 'changed'>;
}

export interface LeaseDeps {
  readonly objects: LeaseObjects;
  readonly now: () => Date;
  readonly sleep: (ms: number) => Promise<void>;
  /** @default {@link LEASE_TTL_MS} */
  readonly ttlMs?: number;
  /** @default {@link LEASE_WAIT_MS} */
  readonly waitMs?: number;
  /** Pause between two looks at a busy lease, jittered by up to as much again. @default 250 */
  readonly pollMs?: number;
  /**
   * Whether an execution still runs (DescribeExecution): false when it has ended (or does not
   * exist), undefined when that cannot be known. Absent: holders are only ever outlived by expiry.
   */
  readonly isRunning?: (executionArn: string) => Promise<boolean | undefined>;
  /** How often the holder's execution is asked about while waiting. @default 5000 */
  readonly checkHolderMs?: number;
}

export interface AcquireRequest {
  readonly pipeline: string;
  readonly runId: string;
  /** This run's execution ARN (`$$.Execution.Id`), kept in the lease for the runs that wait. */
  readonly executionArn?: string;
  /** The failed run this one continues (`sluice redrive`): its lease, if it still holds one, is taken over at once. */
  readonly redriveOf?: string;
}

export interface LeaseGrant {
  readonly pipeline: string;
  readonly holder: string;
  readonly expiresAt: string;
  /** The run whose expired, ended or redriven lease this run took over. */
  readonly tookOverFrom?: string;
}

/**
 * Takes the pipeline's lease for the run, waiting up to `waitMs` while another run holds it.
 * Idempotent: a run that already holds it (a retried invocation) gets it again.
 * Throws {@link LeaseBusyError} when it is still held after the wait.
 */
export async function acquireLease(request: AcquireRequest, deps: LeaseDeps): Promise<LeaseGrant> {
  const key = leaseKey(request.pipeline);
  const runId = assertRunId(request.runId);
  const ttl = deps.ttlMs ?? LEASE_TTL_MS;
  const poll = deps.pollMs ?? 250;
  const deadline = deps.now().getTime() + (deps.waitMs ?? LEASE_WAIT_MS);
  const lease = (): Lease => {
    const now = deps.now();
    return {
      pipeline: request.pipeline,
      holder: runId,
      ...(request.executionArn ? { execution: request.executionArn } : {}),
      acquiredAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + ttl).toISOString(),
    };
  };
  const checkEvery = deps.checkHolderMs ?? 5_000;
  /** When each holder's execution was last found running (it is asked again after `checkEvery`). */
  const checked = new Map<string, number>();
  const holderEnded = async (held: Lease): Promise<boolean> => {
    if (!deps.isRunning || !held.execution) return false;
    const last = checked.get(held.execution);
    if (last !== undefined && deps.now().getTime() - last < checkEvery) return false;
    const running = await deps.isRunning(held.execution);
    checked.set(held.execution, deps.now().getTime());
    return running === false;
  };
  for (;;) {
    const current = await deps.objects.read(key);
    if (!current) {
      const mine = lease();
      if ((await deps.objects.create(key, mine)) === 'written') return grant(mine);
      continue; // another run created it first: look again
    }
    const { holder, expiresAt } = current.lease;
    if (holder === runId) return grant(current.lease);
    const expired = !(Date.parse(expiresAt) > deps.now().getTime());
    if (
      expired ||
      (request.redriveOf !== undefined && holder === request.redriveOf) ||
      (await holderEnded(current.lease))
    ) {
      const mine = lease();
      if ((await deps.objects.replace(key, mine, current.etag)) === 'written') return grant(mine, holder);
      continue; // another run took it over (or released it) first
    }
    if (deps.now().getTime() >= deadline) {
      throw new LeaseBusyError(
        `pipeline ${request.pipeline} is loading run ${holder} (its lease lasts until ${expiresAt} at the latest); ` +
          `run ${runId} waits its turn and loads after it`,
      );
    }
    await deps.sleep(poll + Math.random() * poll);
  }
}

const grant = (lease: Lease, tookOverFrom?: string): LeaseGrant => ({
  pipeline: lease.pipeline,
  holder: lease.holder,
  expiresAt: lease.expiresAt,
  ...(tookOverFrom !== undefined ? { tookOverFrom } : {}),
});

export interface ReleaseResult {
  readonly pipeline: string;
  readonly released: boolean;
  /** Who holds the lease when this run did not release it (absent: nobody). */
  readonly heldBy?: string;
}

/**
 * Releases the run's lease. A run that does not hold it (it never took it, it expired and another
 * run took it over) leaves it alone: the result says `released: false` and who holds it.
 */
export async function releaseLease(
  request: { readonly pipeline: string; readonly runId: string },
  deps: Pick<LeaseDeps, 'objects'>,
): Promise<ReleaseResult> {
  const key = leaseKey(request.pipeline);
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await deps.objects.read(key);
    if (!current) return { pipeline: request.pipeline, released: false };
    if (current.lease.holder !== request.runId) {
      return { pipeline: request.pipeline, released: false, heldBy: current.lease.holder };
    }
    if ((await deps.objects.remove(key, current.etag)) === 'removed')
      return { pipeline: request.pipeline, released: true };
  }
  return { pipeline: request.pipeline, released: false };
}
