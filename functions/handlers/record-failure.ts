import { withPlainErrors } from '../run/failure-message.ts';
import { type FailureEvent, type FailureOutput, recordFailure } from '../run/record-failure.ts';
import { clockOf, type Handler, type HandlerDeps, onFirstCall } from './shared.ts';

/** RecordFailure state: write the failed run's record with its error (plain message, cause, details). */
export const createHandler = (deps: HandlerDeps): Handler<FailureEvent, FailureOutput> =>
  withPlainErrors((event) => recordFailure(event, { ...deps, now: clockOf(deps) }));

export const handler = onFirstCall(createHandler);
