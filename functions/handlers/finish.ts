import { withPlainErrors } from '../run/failure-message.ts';
import { type FinishedRun, type FinishOutput, finish } from '../run/finish.ts';
import { config, pipelines, store } from './shared.ts';

/** Finish state: mark inputs loaded, record the run, clean staging. Errors reach the state machine plain and bounded. */
export const handler = withPlainErrors(
  (event: { run: FinishedRun }): Promise<FinishOutput> =>
    finish(event.run, { store, config, pipelines, now: () => new Date() }),
);
