import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Alarm, type AlarmBase, ComparisonOperator, TreatMissingData } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

export interface FailureTopicProps {
  readonly emails: readonly string[];
}

/**
 * The failure topic. Its key is customer managed: CloudWatch alarms cannot publish to a
 * topic encrypted with the AWS managed `alias/aws/sns` key, whose policy cannot be changed.
 */
export class FailureTopic extends Construct {
  readonly key: Key;
  readonly topic: Topic;

  constructor(scope: Construct, id: string, props: FailureTopicProps) {
    super(scope, id);
    this.key = new Key(this, 'Key', {
      description: 'Sluice failure notifications',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
    });
    this.key.addToResourcePolicy(
      new PolicyStatement({
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
      }),
    );
    this.topic = new Topic(this, 'Topic', {
      displayName: 'Sluice run failures',
      masterKey: this.key,
      enforceSSL: true,
    });
    for (const email of props.emails) this.topic.addSubscription(new EmailSubscription(email));
  }

  /**
   * The alarm on starts that went to the dead-letter queue (a run that never started: nothing
   * else reports it). The alarms on runs are infra/monitoring.ts's, sent here with {@link notifyOn}.
   */
  alarmOn(deadLetterQueue: IQueue): void {
    this.notifyOn(
      new Alarm(this, 'StartsDeadLettered', {
        alarmDescription: 'A Sluice run could not be started: the trigger event is in the dead-letter queue.',
        metric: deadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: Duration.minutes(5),
          statistic: 'Max',
        }),
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );
  }

  /** Publishes the alarm's transitions to ALARM on the topic; the topic's policy lets this alarm (and only it) publish. */
  notifyOn(alarm: AlarmBase): void {
    alarm.addAlarmAction(new SnsAction(this.topic));
    this.topic.addToResourcePolicy(
      new PolicyStatement({
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: { ArnEquals: { 'aws:SourceArn': alarm.alarmArn } },
      }),
    );
  }
}
