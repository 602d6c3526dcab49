import type { RunRecord } from '../contracts.ts';
import { type FailureEvent, recordFailure } from '../run/record-failure.ts';
import { config, pipelines, store } from './shared.ts';

/** RecordFailure state: write the failed run's record with its error. */
export const handler = (event: FailureEvent): Promise<RunRecord> =>
  recordFailure(event, { store, config, pipelines, now: () => new Date() });
