/**
 * What an on-call engineer opens: one CloudWatch dashboard per stack, and the alarms that reach
 * the failure topic.
 *
 * One notification per failure. The state machine's failure path (RecordFailure, then Notify)
 * already publishes one message per failed run it catches, with the run's plain error; a reject
 * share above `rejects.maxShare` is one of them (Verify fails the run). So:
 * - runs that time out or are stopped never reach Notify: their alarms publish;
 * - failed runs: the alarm on ExecutionsFailed publishes through a composite alarm whose actions
 *   are suppressed while RecordFailure's metric (FailedRunsReported) is in alarm, i.e. only for
 *   failures Notify did not report (an error no Catch handles, such as States.Runtime);
 * - the reject share of a pipeline: the same, suppressed by the pipeline's reported failures.
 * Composite alarm suppression:
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-suppression.html
 */
import { Duration, Stack } from 'aws-cdk-lib';
import {
  Alarm,
  type AlarmBase,
  AlarmRule,
  AlarmState,
  AlarmStatusWidget,
  ComparisonOperator,
  CompositeAlarm,
  Dashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  Metric,
  type MetricOptions,
  TextWidget,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { METRICS } from '../functions/observability.ts';
import type { Pipeline } from '../functions/pipeline/definition.ts';

export interface MonitoringProps {
  readonly stateMachine: IStateMachine;
  /** The Work function (one invocation per chunk). */
  readonly worker: IFunction;
  /** The Athena workgroup of the loads (it must publish CloudWatch metrics: infra/warehouse.ts). */
  readonly workGroupName: string;
  readonly pipelines: readonly Pipeline[];
  /** Value of the handlers' `service` metric dimension (`POWERTOOLS_SERVICE_NAME`, set by infra/handlers.ts). */
  readonly service: string;
  /** Where the alarms that notify send: the failure topic's `notifyOn`. */
  readonly notify: (alarm: AlarmBase) => void;
  /**
   * Period of the dashboard's graphs and of the alarms.
   * @default Duration.minutes(5)
   */
  readonly period?: Duration;
}

/** How long a composite waits for the failure path's report, and keeps quiet after it (EMF and AWS/States metrics land about a minute apart). */
const SUPPRESSOR_WAIT = Duration.minutes(5);
const SUPPRESSOR_EXTENSION = Duration.minutes(10);

/** The dashboard and the alarms of one Sluice stack. */
export class Monitoring extends Construct {
  readonly dashboard: Dashboard;
  /** Every alarm, by id (the ones that notify and the ones that only feed a composite). */
  readonly alarms: Readonly<Record<string, AlarmBase>>;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const period = props.period ?? Duration.minutes(5);
    const { stateMachine, worker, pipelines } = props;
    const sum = { period, statistic: 'Sum' } as const;
    const sluice = (metricName: string, dimensions: Record<string, string>, statistic = 'Sum') =>
      new Metric({
        namespace: METRICS.namespace,
        metricName,
        dimensionsMap: { [METRICS.serviceDimension]: props.service, ...dimensions },
        statistic,
        period,
      });
    const ofPipeline = (metricName: string, pipeline: Pipeline, statistic = 'Sum') =>
      sluice(metricName, { [METRICS.pipelineDimension]: pipeline.name }, statistic);

    const alarms: Record<string, AlarmBase> = {};
    const atLeastOne = (alarmId: string, description: string, metric: IMetric) => {
      alarms[alarmId] = new Alarm(this, alarmId, {
        alarmDescription: description,
        metric,
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
      return alarms[alarmId];
    };
    const unlessReported = (alarmId: string, description: string, child: AlarmBase, reported: AlarmBase) => {
      alarms[alarmId] = new CompositeAlarm(this, alarmId, {
        alarmDescription: description,
        alarmRule: AlarmRule.fromAlarm(child, AlarmState.ALARM),
        actionsSuppressor: reported,
        actionsSuppressorWaitPeriod: SUPPRESSOR_WAIT,
        actionsSuppressorExtensionPeriod: SUPPRESSOR_EXTENSION,
      });
      return alarms[alarmId];
    };

    // Runs that end badly. Timed out and stopped runs skip the failure path: these alarms are their only notice.
    props.notify(
      atLeastOne(
        'RunsTimedOut',
        'A Sluice run timed out (its failure path did not run: see the execution history).',
        stateMachine.metricTimedOut(sum),
      ),
    );
    props.notify(
      atLeastOne(
        'RunsAborted',
        'A Sluice run was stopped (StopExecution; its failure path did not run: see the execution history).',
        stateMachine.metricAborted(sum),
      ),
    );
    const failed = atLeastOne(
      'RunsFailed',
      'A Sluice run failed. Notifies through FailedRunsUnreported only when the failure path did not report it.',
      stateMachine.metricFailed(sum),
    );
    const reported = atLeastOne(
      'FailuresReported',
      'The failure path (RecordFailure, then Notify) reported a failed run: suppresses FailedRunsUnreported.',
      sluice(METRICS.runsReported, {}),
    );
    props.notify(
      unlessReported(
        'FailedRunsUnreported',
        'A Sluice run failed without reaching its failure path (no RecordFailure, so no Notify message): see the execution history.',
        failed,
        reported,
      ),
    );

    for (const [n, pipeline] of pipelines.entries()) {
      const share = rejectShare(ofPipeline(METRICS.rowsRead, pipeline), ofPipeline(METRICS.rowsRejected, pipeline), n);
      const shareAlarm = new Alarm(this, `RejectShare-${pipeline.name}`, {
        alarmDescription: `Pipeline ${pipeline.name} rejected more than rejects.maxShare (${pipeline.rejects.maxShare}) of the rows its workers read.`,
        metric: share,
        threshold: pipeline.rejects.maxShare,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
      alarms[`RejectShare-${pipeline.name}`] = shareAlarm;
      const pipelineReported = atLeastOne(
        `FailuresReported-${pipeline.name}`,
        `The failure path reported a failed run of ${pipeline.name}: suppresses RejectShareUnreported-${pipeline.name}.`,
        ofPipeline(METRICS.runsReported, pipeline),
      );
      props.notify(
        unlessReported(
          `RejectShareUnreported-${pipeline.name}`,
          `Pipeline ${pipeline.name} rejected more than rejects.maxShare (${pipeline.rejects.maxShare}) of its rows and no failed run reported it.`,
          shareAlarm,
          pipelineReported,
        ),
      );
    }
    this.alarms = alarms;

    this.dashboard = new Dashboard(this, 'Dashboard', {
      dashboardName: `${Stack.of(this).stackName}-sluice`,
      defaultInterval: Duration.days(1),
    });
    const width = 8;
    const height = 6;
    const perPipeline = (metricName: string, statistic = 'Sum') =>
      pipelines.map((p) => ofPipeline(metricName, p, statistic).with({ label: p.name }));
    this.dashboard.addWidgets(
      new TextWidget({
        markdown: `# Sluice ${Stack.of(this).stackName}\nRuns of the state machine, rows per pipeline (namespace ${METRICS.namespace}), the Work function and Athena. A failed run's reason is in the failure topic's message and in \`sluice runs\`.`,
        width: 24,
        height: 2,
      }),
    );
    /** A duration's average, p90 and maximum over the dashboard's period. */
    const averageP90Max = (metric: (options: MetricOptions) => IMetric) =>
      (
        [
          ['Average', 'average'],
          ['p90', 'p90'],
          ['Maximum', 'max'],
        ] as const
      ).map(([statistic, label]) => metric({ period, statistic, label }));
    this.dashboard.addWidgets(
      new GraphWidget({
        title: 'Executions',
        left: [
          stateMachine.metricStarted({ ...sum, label: 'started' }),
          stateMachine.metricSucceeded({ ...sum, label: 'succeeded' }),
          stateMachine.metricFailed({ ...sum, label: 'failed' }),
          stateMachine.metricTimedOut({ ...sum, label: 'timed out' }),
          stateMachine.metricAborted({ ...sum, label: 'aborted' }),
        ],
        width,
        height,
      }),
      new GraphWidget({
        title: 'Run duration (ms)',
        left: averageP90Max((o) => stateMachine.metricTime(o)),
        width,
        height,
      }),
      new AlarmStatusWidget({ title: 'Alarms', alarms: Object.values(alarms), width, height }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Rows loaded per pipeline', left: perPipeline(METRICS.rowsLoaded), width, height }),
      new GraphWidget({ title: 'Rows rejected per pipeline', left: perPipeline(METRICS.rowsRejected), width, height }),
      new GraphWidget({
        title: 'Reject share per pipeline (limit: rejects.maxShare)',
        left: pipelines.map((p, n) =>
          rejectShare(ofPipeline(METRICS.rowsRead, p), ofPipeline(METRICS.rowsRejected, p), n).with({ label: p.name }),
        ),
        leftYAxis: { min: 0, max: 1 },
        leftAnnotations: pipelines.map((p) => ({ value: p.rejects.maxShare, label: `${p.name} limit` })),
        width,
        height,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: 'Worker errors and throttles',
        left: [
          worker.metricErrors({ ...sum, label: 'errors' }),
          worker.metricThrottles({ ...sum, label: 'throttles' }),
        ],
        width,
        height,
      }),
      new GraphWidget({
        title: 'Worker duration (ms)',
        left: averageP90Max((o) => worker.metricDuration(o)),
        width,
        height,
      }),
      new GraphWidget({
        title: 'Input bytes and chunk duration (p90, ms) per pipeline',
        left: perPipeline(METRICS.bytesRead),
        right: perPipeline(METRICS.chunkDuration, 'p90'),
        width,
        height,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: 'Athena bytes scanned',
        left: [athenaProcessedBytes(props.workGroupName, period)],
        width,
        height,
      }),
    );
  }
}

/** Rejected rows over rows read (0 when nothing was read); `n` keeps the ids of several pipelines apart in one graph. */
function rejectShare(read: IMetric, rejected: IMetric, n: number): MathExpression {
  return new MathExpression({
    expression: `IF(FILL(read${n}, 0) > 0, FILL(rejected${n}, 0) / FILL(read${n}, 0), 0)`,
    usingMetrics: { [`read${n}`]: read, [`rejected${n}`]: rejected },
    label: 'rejected / read',
  });
}

/**
 * ProcessedBytes of the workgroup, summed over its queries' states and types: Athena publishes it
 * with the dimensions QueryState, QueryType and WorkGroup
 * (https://docs.aws.amazon.com/athena/latest/ug/query-metrics-viewing.html).
 */
function athenaProcessedBytes(workGroupName: string, period: Duration): MathExpression {
  return new MathExpression({
    expression: `SUM(SEARCH('{AWS/Athena,QueryState,QueryType,WorkGroup} MetricName="ProcessedBytes" WorkGroup="${workGroupName}"', 'Sum', ${period.toSeconds()}))`,
    usingMetrics: {},
    label: 'bytes scanned',
    period,
  });
}
