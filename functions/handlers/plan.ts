import type { PlanEvent, RunState } from '../contracts.ts';
import { plan } from '../planning/planner.ts';
import { config, pipelines, store } from './shared.ts';

/** Plan state: resolve inputs, split into chunks, write the manifest. */
export const handler = (event: PlanEvent): Promise<RunState> => plan(event, { store, config, pipelines });
