import { withPlainErrors } from '../run/failure-message.ts';
import { type FinishedRun, type FinishOutput, finish } from '../run/finish.ts';
import { clockOf, type Handler, type HandlerDeps, onFirstCall } from './shared.ts';

/** Finish state: mark inputs loaded, record the run, clean staging. Errors reach the state machine plain and bounded. */
export const createHandler = (deps: HandlerDeps): Handler<{ run: FinishedRun }, FinishOutput> =>
  withPlainErrors((event) => finish(event.run, { ...deps, now: clockOf(deps) }));

export const handler = onFirstCall(createHandler);
