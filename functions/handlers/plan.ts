import type { PlanEvent, RunState } from '../contracts.ts';
import { plan } from '../planning/planner.ts';
import { withPlainErrors } from '../run/failure-message.ts';
import { config, pipelines, store } from './shared.ts';

/** Plan state: resolve inputs, split into chunks, write the manifest. Errors reach the state machine plain and bounded. */
export const handler = withPlainErrors(
  (event: PlanEvent): Promise<RunState> => plan(event, { store, config, pipelines }),
);
