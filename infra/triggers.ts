import { Duration, Stack } from 'aws-cdk-lib';
import { EventField, Rule, RuleTargetInput } from 'aws-cdk-lib/aws-events';
import { SfnStateMachine } from 'aws-cdk-lib/aws-events-targets';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { CfnSchedule } from 'aws-cdk-lib/aws-scheduler';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { RunRequest } from '../functions/contracts.ts';
import { DefinitionError } from '../functions/errors.ts';
import type { Pipeline } from '../functions/pipeline/definition.ts';
import { toEventBridgeCron } from './cron.ts';
import { acknowledge } from './nag.ts';

export interface TriggersProps {
  readonly pipelines: readonly Pipeline[];
  readonly inputBucket: IBucket;
  readonly stateMachine: IStateMachine;
  /** The state machine's ARN as built from its name (the Scheduler role's policy names it). */
  readonly stateMachineArn: string;
  readonly schedulesEnabled: boolean;
}

/** Retries of a failed StartExecution (EventBridge Scheduler's default is 185). */
const START_RETRIES = 3;

/** Wildcard patterns treat `*` as "anything": a literal `*` (or `\`) in a prefix is escaped. */
const wildcardLiteral = (text: string) => text.replace(/[\\*]/g, '\\$&');

/** The EventBridge pattern for a pipeline's input keys: its prefix and one of its suffixes. */
export function inputKeyPatterns(pipeline: Pipeline): { wildcard: string }[] {
  return pipeline.input.suffixes.map((suffix) => ({
    wildcard: `${wildcardLiteral(pipeline.input.prefix)}*${wildcardLiteral(suffix)}`,
  }));
}

/**
 * What starts runs: per pipeline, an EventBridge rule on objects created under its input
 * prefix, one on objects deleted there when it has `onDelete: remove`, and an EventBridge
 * Scheduler schedule when it has one. Starts that keep failing
 * land in one dead-letter queue.
 */
export class Triggers extends Construct {
  readonly deadLetterQueue: Queue;

  constructor(scope: Construct, id: string, props: TriggersProps) {
    super(scope, id);
    this.deadLetterQueue = new Queue(this, 'DeadLetters', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    acknowledge(
      this.deadLetterQueue,
      'AwsSolutions-SQS3',
      'This queue is itself the dead-letter queue of the EventBridge rule and Scheduler targets; a DLQ of a DLQ would add nothing.',
    );

    for (const pipeline of props.pipelines) this.addObjectRule(pipeline, props);
    for (const pipeline of props.pipelines.filter((p) => p.onDelete === 'remove')) this.addDeleteRule(pipeline, props);

    const scheduled = props.pipelines.filter((p) => p.schedule !== undefined);
    if (scheduled.length === 0) return;
    const role = new Role(this, 'SchedulerRole', {
      assumedBy: new ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
      }),
      description: 'Sluice schedules: start the pipeline state machine',
    });
    role.addToPolicy(new PolicyStatement({ actions: ['states:StartExecution'], resources: [props.stateMachineArn] }));
    // Scheduler sends undeliverable events to the DLQ with the schedule's role.
    role.addToPolicy(new PolicyStatement({ actions: ['sqs:SendMessage'], resources: [this.deadLetterQueue.queueArn] }));
    for (const pipeline of scheduled) this.addSchedule(pipeline, role, props);
  }

  /** A run for every object created under the pipeline's input (S3 "Object Created" through EventBridge). */
  private addObjectRule(pipeline: Pipeline, props: TriggersProps): void {
    this.addObjectEventRule(pipeline, props, {
      id: `${pipeline.name}-objects`,
      description: `Sluice ${pipeline.name}: run on objects created under ${pipeline.input.prefix}`,
      detailType: 'Object Created',
      trigger: 'object',
    });
  }

  /**
   * With `onDelete: remove`, a rule on S3's "Object Deleted" events under the pipeline's input:
   * on the versioned input bucket a DeleteObject without a version id creates a delete marker,
   * which S3 reports as "Object Deleted" (deletion-type "Delete Marker Created"); the run removes
   * the key's rows unless the object exists again when it verifies.
   * https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html
   */
  private addDeleteRule(pipeline: Pipeline, props: TriggersProps): void {
    this.addObjectEventRule(pipeline, props, {
      id: `${pipeline.name}-deletes`,
      description: `Sluice ${pipeline.name}: remove the rows of objects deleted under ${pipeline.input.prefix}`,
      detailType: 'Object Deleted',
      trigger: 'delete',
    });
  }

  /** An EventBridge rule on one S3 event type of the pipeline's input keys, starting a run with the bucket and key. */
  private addObjectEventRule(
    pipeline: Pipeline,
    props: TriggersProps,
    rule: {
      readonly id: string;
      readonly description: string;
      readonly detailType: 'Object Created' | 'Object Deleted';
      readonly trigger: 'object' | 'delete';
    },
  ): void {
    const input: RunRequest = {
      pipeline: pipeline.name,
      trigger: rule.trigger,
      bucket: EventField.fromPath('$.detail.bucket.name'),
      key: EventField.fromPath('$.detail.object.key'),
    };
    new Rule(this, rule.id, {
      description: rule.description,
      eventPattern: {
        source: ['aws.s3'],
        detailType: [rule.detailType],
        detail: {
          bucket: { name: [props.inputBucket.bucketName] },
          object: { key: inputKeyPatterns(pipeline) },
        },
      },
      targets: [
        new SfnStateMachine(props.stateMachine, {
          input: RuleTargetInput.fromObject(input),
          deadLetterQueue: this.deadLetterQueue,
          retryAttempts: START_RETRIES,
          maxEventAge: Duration.hours(2),
        }),
      ],
    });
  }

  private addSchedule(pipeline: Pipeline, role: Role, props: TriggersProps): void {
    const schedule = pipeline.schedule;
    if (!schedule) return;
    let expression: string;
    try {
      expression = toEventBridgeCron(schedule.cron);
    } catch (error) {
      throw new DefinitionError(`${pipeline.file}: schedule.cron: ${(error as Error).message}`, { cause: error });
    }
    const input: RunRequest = { pipeline: pipeline.name, trigger: 'schedule' };
    new CfnSchedule(this, `${pipeline.name}-schedule`, {
      description: `Sluice ${pipeline.name}: ${schedule.cron} (${schedule.timezone})`,
      scheduleExpression: expression,
      scheduleExpressionTimezone: schedule.timezone,
      flexibleTimeWindow: { mode: 'OFF' },
      state: props.schedulesEnabled ? 'ENABLED' : 'DISABLED',
      target: {
        arn: props.stateMachine.stateMachineArn,
        roleArn: role.roleArn,
        input: JSON.stringify(input),
        retryPolicy: { maximumRetryAttempts: START_RETRIES, maximumEventAgeInSeconds: 2 * 60 * 60 },
        deadLetterConfig: { arn: this.deadLetterQueue.queueArn },
      },
    });
  }
}
