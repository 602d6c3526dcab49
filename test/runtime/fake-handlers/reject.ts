import { InputError } from '../../../functions/errors.ts';

/** A fake Lambda handler that fails the way the worker does on a malformed file. */
export const handler = async (): Promise<never> => {
  throw new InputError('access-logs/x.csv: the header has no column "status"');
};
