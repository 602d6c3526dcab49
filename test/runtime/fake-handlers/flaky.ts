import { TransientError } from '../../../functions/errors.ts';

/** A fake Lambda handler that fails with a TransientError until `event.failures` calls have failed. */
const calls = new Map<string, number>();
export const handler = async (event: { id: string; failures: number }) => {
  const n = (calls.get(event.id) ?? 0) + 1;
  calls.set(event.id, n);
  if (n <= event.failures) throw new TransientError(`S3 throttled (call ${n})`);
  return { id: event.id, calls: n };
};
