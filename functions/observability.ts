/**
 * What the handlers tell an on-call engineer on AWS, through Powertools for AWS Lambda
 * (TypeScript): JSON log lines (Logger) with the run id, the pipeline and the chunk index on
 * each, and per-pipeline metrics in CloudWatch's embedded metric format (Metrics: log lines that
 * CloudWatch turns into metrics, so no PutMetricData call and no IAM permission;
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format.html).
 *
 * Only Lambda builds a {@link Telemetry} (`fromEnvironment` in handlers/shared.ts, when
 * `AWS_LAMBDA_FUNCTION_NAME` is set). The embedded runtime and the tests pass none, so a terminal
 * never sees JSON lines or metric blobs; with `POWERTOOLS_DEV=true` Powertools pretty-prints the
 * logs and publishes no metrics (`POWERTOOLS_METRICS_DISABLED` decides when it is set).
 *
 * The metric names live here only: infra/monitoring.ts builds the dashboard and the alarms from them.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Chunk, ChunkSummary } from './contracts.ts';

/**
 * The metrics of the handlers: namespace `Sluice`, dimensions `service` (the stack's name, from
 * `POWERTOOLS_SERVICE_NAME`, so that two stacks in one account do not mix) and `pipeline`.
 */
export const METRICS = {
  namespace: 'Sluice',
  /** The stack's name (Powertools' default dimension). */
  serviceDimension: 'service',
  pipelineDimension: 'pipeline',
  /** Per chunk (Work): input rows, rows staged for the load, rows rejected, input bytes, time in the worker. */
  rowsRead: 'RowsRead',
  rowsStaged: 'RowsStaged',
  rowsRejected: 'RowsRejected',
  bytesRead: 'BytesRead',
  chunkDuration: 'ChunkDuration',
  /** Per succeeded run (Finish): the rows it loaded into the table. */
  rowsLoaded: 'RowsLoaded',
  /**
   * Per failed run that reached RecordFailure (and so the Notify state, which publishes it):
   * per pipeline, and per stack (dimension `service` only) for the alarm on unreported failures.
   */
  runsReported: 'FailedRunsReported',
} as const;

/** The environment variable Powertools reads the service name from (the stack sets it to its name). */
export const SERVICE_NAME_ENV = 'POWERTOOLS_SERVICE_NAME';

/** A Powertools logger and metrics buffer, built once per execution environment. */
export interface Telemetry {
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/** The Lambda-only telemetry: JSON logs at the function's log level, EMF metrics in the Sluice namespace. */
export function createTelemetry(): Telemetry {
  return { logger: new Logger(), metrics: new Metrics({ namespace: METRICS.namespace }) };
}

/** The keys every log line of an invocation carries. */
export interface RunKeys {
  readonly runId?: string;
  readonly pipeline?: string;
  readonly chunk?: number;
}

/** One metric value of an invocation, under the invocation's pipeline. */
export interface Measure {
  readonly name: (typeof METRICS)[Exclude<
    keyof typeof METRICS,
    'namespace' | 'serviceDimension' | 'pipelineDimension'
  >];
  readonly unit: (typeof MetricUnit)[keyof typeof MetricUnit];
  readonly value: number;
  /** Also published with the `service` dimension alone (one series for the whole stack). */
  readonly stackWide?: boolean;
}

/** How an invocation ended, for {@link ObserveOptions.measure}. */
export type Outcome<R> = { readonly ok: true; readonly result: R } | { readonly ok: false; readonly error: unknown };

export interface ObserveOptions<E, R> {
  /** What the log lines are about; e.g. `work`. */
  readonly step: string;
  /** The run, pipeline and chunk of the event. @default {@link runKeysOf} */
  readonly keys?: (event: E) => RunKeys;
  /** The metrics of the invocation, given how it ended and how long it took. @default none */
  readonly measure?: (outcome: Outcome<R>, event: E, elapsedMs: number) => readonly Measure[];
}

type Invoke<E, R> = (event: E, context?: { readonly awsRequestId?: string }) => Promise<R>;

/**
 * Wraps a handler with its log lines and metrics: the run's keys appended to the logger for the
 * invocation, one line when it ends (info) or fails (error, with the error), and the metrics
 * flushed as one EMF line. Without telemetry (locally, in tests) the handler is returned as is.
 * Logging and metrics never change what the handler returns or throws.
 */
export function observe<E, R>(
  telemetry: Telemetry | undefined,
  options: ObserveOptions<E, R>,
  handler: Invoke<E, R>,
): Invoke<E, R> {
  if (!telemetry) return handler;
  const { logger, metrics } = telemetry;
  const keysOf = options.keys ?? runKeysOf;
  return async (event, context) => {
    const keys = safely(() => keysOf(event)) ?? {};
    logger.resetKeys();
    logger.appendKeys({
      step: options.step,
      ...keys,
      ...(context?.awsRequestId ? { requestId: context.awsRequestId } : {}),
    });
    const started = performance.now();
    let outcome: Outcome<R> | undefined;
    try {
      const result = await handler(event, context);
      outcome = { ok: true, result };
      return result;
    } catch (error) {
      outcome = { ok: false, error };
      throw error;
    } finally {
      const elapsedMs = Math.round(performance.now() - started);
      const final = outcome ?? { ok: false, error: undefined };
      if (final.ok) logger.info(`${options.step} done`, { durationMs: elapsedMs });
      else logger.error(`${options.step} failed`, { durationMs: elapsedMs, error: final.error as Error });
      const measures = options.measure ? (safely(() => options.measure?.(final, event, elapsedMs)) ?? []) : [];
      publish(metrics, keys.pipeline, measures, logger);
    }
  };
}

function publish(metrics: Metrics, pipeline: string | undefined, measures: readonly Measure[], logger: Logger): void {
  if (measures.length === 0) return;
  try {
    metrics.addDimensions({ [METRICS.pipelineDimension]: pipeline ?? 'unknown' });
    if (measures.some((m) => m.stackWide)) metrics.addDimensions({});
    for (const m of measures) metrics.addMetric(m.name, m.unit, m.value);
    metrics.publishStoredMetrics();
  } catch (error) {
    logger.warn('could not publish the metrics', { error: error as Error });
  }
}

function safely<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

const field = (value: unknown, name: string): unknown =>
  typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined;
const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

/**
 * The run id, pipeline and chunk index of any handler's event: a chunk (Work), `{ run }` (Verify,
 * Finish, RecordFailure), `{ request, runId }` (Plan, the lease).
 */
export function runKeysOf(event: unknown): RunKeys {
  const run = field(event, 'run');
  const request = field(event, 'request');
  const runId = text(field(event, 'runId')) ?? text(field(run, 'runId'));
  const pipeline = text(field(event, 'pipeline')) ?? text(field(run, 'pipeline')) ?? text(field(request, 'pipeline'));
  const index = field(event, 'index');
  const chunk = Array.isArray(field(event, 'parts')) && typeof index === 'number' ? index : undefined;
  return {
    ...(runId !== undefined ? { runId } : {}),
    ...(pipeline !== undefined ? { pipeline } : {}),
    ...(chunk !== undefined ? { chunk } : {}),
  };
}

/** The metrics of one chunk that a worker processed: rows, input bytes (its planned byte ranges) and time. */
export function chunkMeasures(outcome: Outcome<ChunkSummary>, chunk: Chunk, elapsedMs: number): Measure[] {
  if (!outcome.ok) return [];
  const { rowsRead, rowsStaged, rowsRejected } = outcome.result;
  const bytes = chunk.parts.reduce((sum, part) => sum + Math.max(0, part.end - part.start), 0);
  return [
    { name: METRICS.rowsRead, unit: MetricUnit.Count, value: rowsRead },
    { name: METRICS.rowsStaged, unit: MetricUnit.Count, value: rowsStaged },
    { name: METRICS.rowsRejected, unit: MetricUnit.Count, value: rowsRejected },
    { name: METRICS.bytesRead, unit: MetricUnit.Bytes, value: bytes },
    { name: METRICS.chunkDuration, unit: MetricUnit.Milliseconds, value: elapsedMs },
  ];
}
