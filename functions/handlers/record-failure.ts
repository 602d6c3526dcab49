import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { METRICS, observe } from '../observability.ts';
import { withPlainErrors } from '../run/failure-message.ts';
import { type FailureEvent, type FailureOutput, recordFailure } from '../run/record-failure.ts';
import { clockOf, type Handler, type HandlerDeps, onFirstCall } from './shared.ts';

/**
 * RecordFailure state: write the failed run's record with its error (plain message, cause, details).
 * On Lambda it counts the run as reported (metric FailedRunsReported), whether the record could be
 * written or not: the Notify state after it publishes the failure either way, and the alarm on
 * failed runs (infra/monitoring.ts) stays silent for the runs counted here.
 */
export const createHandler = (deps: HandlerDeps): Handler<FailureEvent, FailureOutput> =>
  observe(
    deps.telemetry,
    {
      step: 'record-failure',
      measure: () => [{ name: METRICS.runsReported, unit: MetricUnit.Count, value: 1, stackWide: true }],
    },
    withPlainErrors((event) => recordFailure(event, { ...deps, now: clockOf(deps) })),
  );

export const handler = onFirstCall(createHandler);
