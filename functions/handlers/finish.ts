import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { METRICS, observe } from '../observability.ts';
import { withPlainErrors } from '../run/failure-message.ts';
import { type FinishedRun, type FinishOutput, finish } from '../run/finish.ts';
import { clockOf, type Handler, type HandlerDeps, onFirstCall } from './shared.ts';

/**
 * Finish state: mark inputs loaded, record the run, clean staging. Errors reach the state machine
 * plain and bounded. On Lambda it publishes the rows the run loaded (metric RowsLoaded).
 */
export const createHandler = (deps: HandlerDeps): Handler<{ run: FinishedRun }, FinishOutput> =>
  observe(
    deps.telemetry,
    {
      step: 'finish',
      measure: (outcome) =>
        outcome.ok ? [{ name: METRICS.rowsLoaded, unit: MetricUnit.Count, value: outcome.result.rowsLoaded ?? 0 }] : [],
    },
    withPlainErrors((event) => finish(event.run, { ...deps, now: clockOf(deps) })),
  );

export const handler = onFirstCall(createHandler);
