import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { METRICS } from '../../functions/observability.ts';
import { type Resources, synthStack, twoPipelinesDir } from './fixture.ts';

/** Two pipelines; clicks allows 20 % rejects in its file, access-logs keeps the default 50 %. */
function pipelinesDir(): string {
  const dir = twoPipelinesDir();
  appendFileSync(join(dir, 'clicks.yaml'), '\nrejects:\n  maxShare: 0.2\n');
  return dir;
}

interface Widget {
  type: string;
  properties: {
    title?: string;
    metrics?: unknown[][];
    annotations?: { horizontal?: { value: number; label: string; yAxis?: string }[] };
    alarms?: string[];
  };
}

/** The dashboard's widgets, with each CloudFormation reference written as `<Ref:Id>` / `<GetAtt:Id.Attr>`. */
function dashboardWidgets(template: Template): Widget[] {
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard') as Resources);
  expect(dashboards).toHaveLength(1);
  const body = dashboards[0]?.Properties.DashboardBody as { 'Fn::Join': [string, unknown[]] };
  const text = body['Fn::Join'][1]
    .map((part) => {
      if (typeof part === 'string') return part;
      const token = part as Record<string, unknown>;
      if ('Ref' in token) return `<Ref:${String(token.Ref)}>`;
      if ('Fn::GetAtt' in token) return `<GetAtt:${(token['Fn::GetAtt'] as string[]).join('.')}>`;
      return '<token>';
    })
    .join('');
  return (JSON.parse(text) as { widgets: Widget[] }).widgets;
}

const widget = (widgets: Widget[], title: string): Widget => {
  const found = widgets.find((w) => w.properties.title === title);
  if (!found) throw new Error(`no widget "${title}" among ${widgets.map((w) => w.properties.title).join(', ')}`);
  return found;
};

/** The [namespace, metric, ...dimensions] rows of a graph (the trailing options object left out). */
const metricRows = (w: Widget) =>
  (w.properties.metrics ?? []).map((row) => row.filter((cell) => typeof cell === 'string').join(' '));

const alarmId = (template: Template, type: string, prefix: string): string => {
  const ids = Object.keys(template.findResources(type)).filter((id) => new RegExp(`^${prefix}[0-9A-F]{8}$`).test(id));
  expect(ids, `${type} ${prefix}`).toHaveLength(1);
  return ids[0] as string;
};

describe('monitoring: dashboard', () => {
  const { template } = synthStack({ pipelinesDir: pipelinesDir() });
  const widgets = dashboardWidgets(template);

  it('graphs the executions started, succeeded and failed, and the run duration, of the state machine', () => {
    const rows = metricRows(widget(widgets, 'Executions'));
    for (const metric of ['ExecutionsStarted', 'ExecutionsSucceeded', 'ExecutionsFailed']) {
      expect(rows).toContainEqual(expect.stringMatching(`^AWS/States ${metric} StateMachineArn <Ref:Pipeline`));
    }
    expect(metricRows(widget(widgets, 'Run duration (ms)'))).toContainEqual(
      expect.stringMatching(/^AWS\/States ExecutionTime StateMachineArn <Ref:Pipeline/),
    );
  });

  it('graphs rows loaded and rejected per pipeline in the Sluice namespace, and the reject share against each limit', () => {
    for (const [title, metric] of [
      ['Rows loaded per pipeline', METRICS.rowsLoaded],
      ['Rows rejected per pipeline', METRICS.rowsRejected],
    ] as const) {
      const rows = metricRows(widget(widgets, title));
      expect(rows).toEqual([
        `Sluice ${metric} pipeline access-logs service Test`,
        `Sluice ${metric} pipeline clicks service Test`,
      ]);
    }
    const share = widget(widgets, 'Reject share per pipeline (limit: rejects.maxShare)');
    expect(share.properties.annotations?.horizontal).toEqual([
      { value: 0.5, label: 'access-logs limit', yAxis: 'left' },
      { value: 0.2, label: 'clicks limit', yAxis: 'left' },
    ]);
  });

  it("graphs the Work function's errors, throttles and duration", () => {
    const errors = metricRows(widget(widgets, 'Worker errors and throttles'));
    expect(errors).toEqual([
      expect.stringMatching(/^AWS\/Lambda Errors FunctionName <Ref:HandlersWork/),
      expect.stringMatching(/^AWS\/Lambda Throttles FunctionName <Ref:HandlersWork/),
    ]);
    expect(metricRows(widget(widgets, 'Worker duration (ms)'))).toContainEqual(
      expect.stringMatching(/^AWS\/Lambda Duration FunctionName <Ref:HandlersWork/),
    );
  });

  it("graphs the bytes Athena scanned in the stack's workgroup, which publishes its metrics", () => {
    const [expression] = widget(widgets, 'Athena bytes scanned').properties.metrics ?? [];
    const options = expression?.find((cell) => typeof cell === 'object') as { expression: string };
    expect(options.expression).toMatch(
      /^SUM\(SEARCH\('\{AWS\/Athena,QueryState,QueryType,WorkGroup\} MetricName="ProcessedBytes" WorkGroup="Test-<token>"'/,
    );
    template.hasResourceProperties('AWS::Athena::WorkGroup', {
      WorkGroupConfiguration: Match.objectLike({ PublishCloudWatchMetricsEnabled: true }),
    });
  });

  it('shows every alarm of the stack but the dead-letter one in one status widget', () => {
    const status = widgets.find((w) => w.type === 'alarm');
    const shown = (status?.properties.alarms ?? []).map((arn) => arn.replace(/^<GetAtt:(\w+)\.Arn>$/, '$1'));
    const all = [
      ...Object.keys(template.findResources('AWS::CloudWatch::Alarm')),
      ...Object.keys(template.findResources('AWS::CloudWatch::CompositeAlarm')),
    ].filter((id) => !id.startsWith('FailuresStartsDeadLettered'));
    expect(shown.sort()).toEqual(all.sort());
  });
});

describe('monitoring: alarms', () => {
  const { template } = synthStack({ pipelinesDir: pipelinesDir() });
  const topic = { Ref: Match.stringLikeRegexp('^FailuresTopic') };

  it('notifies the failure topic of timed-out and stopped runs, which never reach the Notify state', () => {
    for (const metric of ['ExecutionsTimedOut', 'ExecutionsAborted']) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/States',
        MetricName: metric,
        Statistic: 'Sum',
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        AlarmActions: [topic],
      });
    }
  });

  it('notifies of a failed run only when its failure path did not report it (no second message)', () => {
    const failed = alarmId(template, 'AWS::CloudWatch::Alarm', 'MonitoringRunsFailed');
    const reported = alarmId(template, 'AWS::CloudWatch::Alarm', 'MonitoringFailuresReported');
    // The raw alarms publish nothing themselves.
    for (const id of [failed, reported]) {
      expect((template.toJSON().Resources[id] as Resources[string]).Properties.AlarmActions, id).toBeUndefined();
    }
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/States',
      MetricName: 'ExecutionsFailed',
      Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: Match.stringLikeRegexp('^Pipeline') } }],
    });
    // FailedRunsReported is counted by RecordFailure once per failed run, for the whole stack.
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'Sluice',
      MetricName: METRICS.runsReported,
      Dimensions: [{ Name: 'service', Value: 'Test' }],
    });
    template.hasResourceProperties('AWS::CloudWatch::CompositeAlarm', {
      AlarmRule: { 'Fn::Join': ['', ['ALARM("', { 'Fn::GetAtt': [failed, 'Arn'] }, '")']] },
      ActionsSuppressor: { 'Fn::GetAtt': [reported, 'Arn'] },
      ActionsSuppressorWaitPeriod: 300,
      ActionsSuppressorExtensionPeriod: 600,
      AlarmActions: [topic],
    });
  });

  it("alarms on a reject share above each pipeline's rejects.maxShare, silent when the failed run was reported", () => {
    for (const [pipeline, limit, n] of [
      ['access-logs', 0.5, 0],
      ['clicks', 0.2, 1],
    ] as const) {
      const dimensions = [
        { Name: 'pipeline', Value: pipeline },
        { Name: 'service', Value: 'Test' },
      ];
      const metric = (id: string, name: string) => ({
        Id: id,
        MetricStat: {
          Metric: { Namespace: 'Sluice', MetricName: name, Dimensions: dimensions },
          Period: 300,
          Stat: 'Sum',
        },
        ReturnData: false,
      });
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Threshold: limit,
        ComparisonOperator: 'GreaterThanThreshold',
        Metrics: Match.arrayWith([
          Match.objectLike({ Expression: `IF(FILL(read${n}, 0) > 0, FILL(rejected${n}, 0) / FILL(read${n}, 0), 0)` }),
          metric(`read${n}`, METRICS.rowsRead),
          metric(`rejected${n}`, METRICS.rowsRejected),
        ]),
      });
      const id = pipeline.replace('-', '');
      const share = alarmId(template, 'AWS::CloudWatch::Alarm', `MonitoringRejectShare${id}`);
      const reported = alarmId(template, 'AWS::CloudWatch::Alarm', `MonitoringFailuresReported${id}`);
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        MetricName: METRICS.runsReported,
        Dimensions: dimensions,
      });
      template.hasResourceProperties('AWS::CloudWatch::CompositeAlarm', {
        AlarmRule: { 'Fn::Join': ['', ['ALARM("', { 'Fn::GetAtt': [share, 'Arn'] }, '")']] },
        ActionsSuppressor: { 'Fn::GetAtt': [reported, 'Arn'] },
        AlarmActions: [topic],
      });
    }
  });

  it('lets exactly the alarms that notify publish to the topic', () => {
    const resources = template.toJSON().Resources as Resources;
    const notifying = Object.entries(resources)
      .filter(([, r]) => r.Type.startsWith('AWS::CloudWatch::') && r.Properties.AlarmActions !== undefined)
      .map(([id]) => id)
      .sort();
    expect(notifying.map((id) => id.replace(/[0-9A-F]{8}$/, ''))).toEqual(
      [
        'FailuresStartsDeadLettered',
        'MonitoringFailedRunsUnreported',
        'MonitoringRejectShareUnreportedaccesslogs',
        'MonitoringRejectShareUnreportedclicks',
        'MonitoringRunsAborted',
        'MonitoringRunsTimedOut',
      ].sort(),
    );
    const policy = JSON.stringify(template.findResources('AWS::SNS::TopicPolicy'));
    for (const id of notifying) expect(policy, id).toContain(`{"Fn::GetAtt":["${id}","Arn"]}`);
  });
});

describe('monitoring: the functions', () => {
  const { template } = synthStack();

  it('log JSON and name the stack as the service of their log lines and metrics', () => {
    const functions = Object.values(template.findResources('AWS::Lambda::Function') as Resources).filter(
      (f) => (f.Properties.Handler as string | undefined) === 'index.handler',
    );
    expect(functions.length).toBeGreaterThanOrEqual(6);
    for (const fn of functions) {
      expect(fn.Properties.LoggingConfig).toMatchObject({ LogFormat: 'JSON', ApplicationLogLevel: 'INFO' });
      expect(fn.Properties.Environment).toMatchObject({ Variables: { POWERTOOLS_SERVICE_NAME: 'Test' } });
    }
  });
});
