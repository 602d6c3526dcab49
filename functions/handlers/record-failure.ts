import { withPlainErrors } from '../run/failure-message.ts';
import { type FailureEvent, type FailureOutput, recordFailure } from '../run/record-failure.ts';
import { config, pipelines, store } from './shared.ts';

/** RecordFailure state: write the failed run's record with its error (plain message, cause, details). */
export const handler = withPlainErrors(
  (event: FailureEvent): Promise<FailureOutput> =>
    recordFailure(event, { store, config, pipelines, now: () => new Date() }),
);
