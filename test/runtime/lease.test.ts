/**
 * The load lease (functions/lease/) over real conditional writes (the embedded S3, through the
 * SDK, as on AWS): one holder at a time, an expired lease taken over, a redrive taking over the
 * run it continues, release only by the holder.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireLease, type LeaseDeps, leaseKey, releaseLease } from '../../functions/lease/lease.ts';
import { S3LeaseObjects } from '../../functions/lease/s3-lease-objects.ts';
import { startTestS3, type TestS3 } from './helpers.ts';

let t: TestS3;
let objects: S3LeaseObjects;
beforeAll(async () => {
  t = await startTestS3();
  objects = new S3LeaseObjects(t.s3, 'sluice-working');
});
afterAll(() => t.close());

/** A clock the test moves; sleeping moves it too, so a busy wait ends after `waitMs` of its time. */
function clock(start = Date.parse('2026-03-01T10:00:00Z')) {
  let now = start;
  return {
    now: () => new Date(now),
    advance: (ms: number) => {
      now += ms;
    },
    sleep: async (ms: number) => {
      now += ms;
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

const deps = (time: ReturnType<typeof clock>, overrides: Partial<LeaseDeps> = {}): LeaseDeps => ({
  objects,
  now: time.now,
  sleep: time.sleep,
  waitMs: 0,
  ...overrides,
});

const holderOf = async (pipeline: string) => {
  const out = await t.s3.send(new GetObjectCommand({ Bucket: 'sluice-working', Key: leaseKey(pipeline) }));
  return (JSON.parse((await out.Body?.transformToString()) ?? '{}') as { holder?: string }).holder;
};

describe('the load lease', () => {
  it('goes to exactly one of two runs taking it at once; the other is told it is busy', async () => {
    const time = clock();

    const results = await Promise.allSettled([
      acquireLease({ pipeline: 'two-takers', runId: 'run-a' }, deps(time)),
      acquireLease({ pipeline: 'two-takers', runId: 'run-b' }, deps(time)),
    ]);

    const granted = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.holder] : []));
    expect(granted).toHaveLength(1);
    expect(await holderOf('two-takers')).toBe(granted[0]);
    const refused = results.find((r) => r.status === 'rejected');
    expect(refused?.status === 'rejected' && refused.reason).toMatchObject({
      name: 'Sluice.LeaseBusy',
      message: expect.stringContaining(`is loading run ${granted[0]}`),
    });
  });

  it('hands the lease to a waiting run as soon as the holder releases it', async () => {
    const time = clock();
    await acquireLease({ pipeline: 'hand-over', runId: 'run-a' }, deps(time));

    const waiting = acquireLease({ pipeline: 'hand-over', runId: 'run-b' }, deps(time, { waitMs: 3_600_000 }));
    expect(await releaseLease({ pipeline: 'hand-over', runId: 'run-a' }, { objects })).toEqual({
      pipeline: 'hand-over',
      released: true,
    });

    expect(await waiting).toMatchObject({ holder: 'run-b' });
    expect(await holderOf('hand-over')).toBe('run-b');
  });

  it('serializes many runs: each takes the lease only after the previous one released it', async () => {
    const time = clock();
    const held: string[] = [];
    let holders = 0;
    let most = 0;
    const run = async (runId: string) => {
      await acquireLease({ pipeline: 'many-runs', runId }, deps(time, { waitMs: 3_600_000, pollMs: 1 }));
      holders++;
      most = Math.max(most, holders);
      held.push(runId);
      await new Promise((resolve) => setTimeout(resolve, 5));
      holders--;
      await releaseLease({ pipeline: 'many-runs', runId }, { objects });
    };

    await Promise.all(Array.from({ length: 8 }, (_, i) => run(`run-${i}`)));

    expect(most).toBe(1);
    expect([...held].sort()).toEqual(Array.from({ length: 8 }, (_, i) => `run-${i}`));
  });

  it('is taken over once it has expired, and not before', async () => {
    const time = clock();
    await acquireLease({ pipeline: 'expiry', runId: 'run-a' }, deps(time, { ttlMs: 60_000 }));

    time.advance(59_000);
    await expect(acquireLease({ pipeline: 'expiry', runId: 'run-b' }, deps(time))).rejects.toMatchObject({
      name: 'Sluice.LeaseBusy',
    });
    time.advance(2_000);
    const grant = await acquireLease({ pipeline: 'expiry', runId: 'run-b' }, deps(time));

    expect(grant).toMatchObject({ holder: 'run-b', tookOverFrom: 'run-a' });
    expect(await holderOf('expiry')).toBe('run-b');
  });

  it('is taken over at once by the redrive of the run that holds it, and by no other run', async () => {
    const time = clock();
    await acquireLease({ pipeline: 'redrive', runId: 'run-a' }, deps(time));

    await expect(
      acquireLease({ pipeline: 'redrive', runId: 'run-b', redriveOf: 'run-x' }, deps(time)),
    ).rejects.toMatchObject({ name: 'Sluice.LeaseBusy' });
    const grant = await acquireLease({ pipeline: 'redrive', runId: 'run-a-redrive-1', redriveOf: 'run-a' }, deps(time));

    expect(grant).toMatchObject({ holder: 'run-a-redrive-1', tookOverFrom: 'run-a' });
  });

  it("is taken over at once when its holder's execution has ended, kept while it runs or is unknown", async () => {
    const time = clock();
    const arn = (run: string) => `arn:aws:states:us-east-1:000000000000:execution:sluice-pipeline:${run}`;
    await acquireLease({ pipeline: 'ended', runId: 'run-a', executionArn: arn('run-a') }, deps(time));
    const states = new Map<string, boolean | undefined>([[arn('run-a'), true]]);
    const asked: string[] = [];
    const isRunning = async (execution: string) => {
      asked.push(execution);
      return states.get(execution);
    };

    await expect(acquireLease({ pipeline: 'ended', runId: 'run-b' }, deps(time, { isRunning }))).rejects.toMatchObject({
      name: 'Sluice.LeaseBusy',
    });
    states.set(arn('run-a'), undefined); // Step Functions could not be asked: the holder keeps it
    await expect(acquireLease({ pipeline: 'ended', runId: 'run-b' }, deps(time, { isRunning }))).rejects.toMatchObject({
      name: 'Sluice.LeaseBusy',
    });
    states.set(arn('run-a'), false); // stopped, timed out, or gone
    const grant = await acquireLease({ pipeline: 'ended', runId: 'run-b' }, deps(time, { isRunning }));

    expect(grant).toMatchObject({ holder: 'run-b', tookOverFrom: 'run-a' });
    expect(asked).toEqual([arn('run-a'), arn('run-a'), arn('run-a')]);
  });

  it('is given again to the run that holds it (a retried acquire)', async () => {
    const time = clock();
    const first = await acquireLease({ pipeline: 'retried', runId: 'run-a' }, deps(time));

    expect(await acquireLease({ pipeline: 'retried', runId: 'run-a' }, deps(time))).toEqual(first);
  });

  it('refuses a release by a run that does not hold it, and leaves the lease to its holder', async () => {
    const time = clock();
    await acquireLease({ pipeline: 'release', runId: 'run-a' }, deps(time));

    const refused = await releaseLease({ pipeline: 'release', runId: 'run-b' }, { objects });

    expect(refused).toEqual({ pipeline: 'release', released: false, heldBy: 'run-a' });
    expect(await holderOf('release')).toBe('run-a');
    expect(await releaseLease({ pipeline: 'nobody-holds', runId: 'run-b' }, { objects })).toEqual({
      pipeline: 'nobody-holds',
      released: false,
    });
  });

  it('keeps names from events out of keys: a pipeline name must be a pipeline name', () => {
    expect(() => leaseKey('../../etc')).toThrow(expect.objectContaining({ name: 'Sluice.RequestError' }));
    expect(leaseKey('access-logs')).toBe('leases/access-logs.json');
  });
});
