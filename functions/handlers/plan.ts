import type { PlanEvent, RunState } from '../contracts.ts';
import { observe } from '../observability.ts';
import { plan } from '../planning/planner.ts';
import { withPlainErrors } from '../run/failure-message.ts';
import { type Handler, type HandlerDeps, onFirstCall } from './shared.ts';

/** Plan state: resolve inputs, split into chunks, write the manifest. Errors reach the state machine plain and bounded. */
export const createHandler = (deps: HandlerDeps): Handler<PlanEvent, RunState> =>
  observe(
    deps.telemetry,
    { step: 'plan' },
    withPlainErrors((event) => plan(event, deps)),
  );

export const handler = onFirstCall(createHandler);
