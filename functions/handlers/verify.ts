import type { RunState, VerifyResult } from '../contracts.ts';
import { observe } from '../observability.ts';
import { withPlainErrors } from '../run/failure-message.ts';
import { verify } from '../run/verify.ts';
import { clockOf, type Handler, type HandlerDeps, onFirstCall } from './shared.ts';

/**
 * Verify state: check every chunk is accounted for; return the statements to run (setup, load,
 * derive, maintain). Errors reach the state machine plain and bounded.
 */
export const createHandler = (deps: HandlerDeps): Handler<{ run: RunState }, VerifyResult> => {
  const clock = clockOf(deps);
  // Today's date in UTC.
  const today = () => clock().toISOString().slice(0, 10);
  return observe(
    deps.telemetry,
    { step: 'verify' },
    withPlainErrors((event) => verify(event.run, { ...deps, today })),
  );
};

export const handler = onFirstCall(createHandler);
