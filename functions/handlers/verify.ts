import type { RunState, VerifyResult } from '../contracts.ts';
import { withPlainErrors } from '../run/failure-message.ts';
import { verify } from '../run/verify.ts';
import { config, pipelines, store } from './shared.ts';

const today = () => new Date().toISOString().slice(0, 10);

/**
 * Verify state: check every chunk is accounted for; return the statements to run (setup, load,
 * derive, maintain). Errors reach the state machine plain and bounded.
 */
export const handler = withPlainErrors(
  (event: { run: RunState }): Promise<VerifyResult> => verify(event.run, { store, config, pipelines, today }),
);
