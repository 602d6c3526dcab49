/**
 * `sluice run <pipeline> --scheduled --target localstack|aws`: starts, on a deployed stack, the
 * run a pipeline's schedule starts, and waits for it. LocalStack's EventBridge Scheduler stores
 * schedules but never fires them (docs/localstack.md), so there this is the only way to get the
 * scheduled run; on AWS it starts one now instead of at the next cron time.
 *
 * The state machine is the stack's `StateMachineArn` output (CloudFormation DescribeStacks); the
 * input is the one the schedule sends (`RunRequest`, see infra/triggers.ts); the execution is
 * followed with DescribeExecution every 2 seconds until it is no longer RUNNING.
 */

import { randomBytes } from 'node:crypto';
import {
  CloudFormationClient,
  DescribeStacksCommand,
  type DescribeStacksCommandOutput,
} from '@aws-sdk/client-cloudformation';
import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import type { RunRequest } from '../functions/contracts.ts';
import { plainFailure } from '../functions/run/failure-message.ts';
import { readableCause } from '../runtime/state-machine.ts';

/** Where `sluice run` runs: the embedded runtime (default), LocalStack, or the AWS account of the SDK's configuration. */
export const TARGETS = ['local', 'localstack', 'aws'] as const;
export type Target = (typeof TARGETS)[number];
export type RemoteTarget = Exclude<Target, 'local'>;

export const DEFAULT_STACK = 'Sluice';
/** The stack output that names the pipeline state machine (infra/stack.ts). */
export const STATE_MACHINE_OUTPUT = 'StateMachineArn';
/** LocalStack's endpoint when AWS_ENDPOINT_URL is not set (the one cdklocal and awslocal use). */
export const LOCALSTACK_ENDPOINT = 'http://localhost.localstack.cloud:4566';
const POLL_MS = 2_000;

/** A remote run that could not be started or followed: printed as one line, without a stack trace. */
export class RemoteRunError extends Error {
  override name = 'RemoteRunError';
}

export function isTarget(value: string): value is Target {
  return (TARGETS as readonly string[]).includes(value);
}

/** The SDK client settings of a target, and how to name it in messages. */
export interface TargetConfig {
  readonly target: RemoteTarget;
  /** Passed to every client; empty for AWS (the SDK's default chain decides). */
  readonly clientConfig: {
    readonly endpoint?: string;
    readonly region?: string;
    readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
  };
  /** e.g. "LocalStack at http://localhost.localstack.cloud:4566 (region us-east-1)". */
  readonly where: string;
}

/**
 * LocalStack: AWS_ENDPOINT_URL, else http://localhost.localstack.cloud:4566; region AWS_REGION,
 * else us-east-1; test credentials unless the environment names some (AWS_ACCESS_KEY_ID or
 * AWS_PROFILE). These are cdklocal's defaults (node_modules/aws-cdk-local/src/index.js), so this
 * finds the stack `npm run localstack:deploy` created. LocalStack accepts any access key; an
 * alphanumeric one such as `test` means account 000000000000, and the secret is ignored
 * (https://docs.localstack.cloud/aws/capabilities/config/credentials).
 *
 * AWS: nothing is set; the SDK's default chain (environment, profile, SSO, instance role) gives
 * region and credentials.
 */
export function targetConfig(target: RemoteTarget, env: NodeJS.ProcessEnv = process.env): TargetConfig {
  if (target === 'aws') {
    const region = env.AWS_REGION || env.AWS_DEFAULT_REGION;
    const profile = env.AWS_PROFILE ? `profile ${env.AWS_PROFILE}` : 'the default profile';
    return {
      target,
      clientConfig: {},
      where: `AWS (${region ? `region ${region}` : 'the configured region'}, ${profile})`,
    };
  }
  const endpoint = env.AWS_ENDPOINT_URL || LOCALSTACK_ENDPOINT;
  const region = env.AWS_REGION || 'us-east-1';
  const configured = Boolean(env.AWS_ACCESS_KEY_ID || env.AWS_PROFILE);
  return {
    target,
    clientConfig: {
      endpoint,
      region,
      ...(configured ? {} : { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } }),
    },
    where: `LocalStack at ${endpoint} (region ${region})`,
  };
}

export interface RemoteRunOptions {
  readonly config: TargetConfig;
  readonly stack: string;
  readonly pipeline: string;
  readonly log: (line: string) => void;
  /** Milliseconds between DescribeExecution calls (2 s). */
  readonly pollMs?: number;
}

export interface RemoteRunResult {
  readonly executionArn: string;
  readonly stateMachineArn: string;
  readonly status: string;
  readonly startedAt?: Date;
  readonly stoppedAt?: Date;
  readonly error?: string;
  readonly cause?: string;
}

/** Starts the pipeline's scheduled run on the stack's state machine and waits until it is no longer RUNNING. */
export async function runScheduledRemote(options: RemoteRunOptions): Promise<RemoteRunResult> {
  const { config, stack, log } = options;
  const cloudFormation = new CloudFormationClient({ ...config.clientConfig });
  const sfn = new SFNClient({ ...config.clientConfig });
  try {
    const stateMachineArn = await findStateMachine(cloudFormation, stack, config.where);
    // Exactly what the pipeline's EventBridge Scheduler schedule sends (infra/triggers.ts).
    const input: RunRequest = { pipeline: options.pipeline, trigger: 'schedule' };
    const name = executionName(new Date());
    const started = await call(`start an execution of ${stateMachineArn} on ${config.where}`, () =>
      sfn.send(new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(input) })),
    );
    const executionArn = started.executionArn;
    if (!executionArn) throw new RemoteRunError(`StartExecution on ${config.where} returned no execution ARN`);
    log(
      `started ${executionArn} with ${JSON.stringify(input)}; checking every ${(options.pollMs ?? POLL_MS) / 1000} s`,
    );

    const since = Date.now();
    let lastNote = since;
    for (;;) {
      const execution: DescribeExecutionCommandOutput = await call(
        `describe execution ${executionArn} on ${config.where}`,
        () => sfn.send(new DescribeExecutionCommand({ executionArn })),
      );
      if (execution.status && execution.status !== 'RUNNING') {
        return {
          executionArn,
          stateMachineArn,
          status: execution.status,
          startedAt: execution.startDate,
          stoppedAt: execution.stopDate,
          error: execution.error,
          cause: execution.cause,
        };
      }
      if (Date.now() - lastNote >= 60_000) {
        lastNote = Date.now();
        log(`still RUNNING after ${Math.round((lastNote - since) / 60_000)} min`);
      }
      await new Promise((r) => setTimeout(r, options.pollMs ?? POLL_MS));
    }
  } finally {
    cloudFormation.destroy();
    sfn.destroy();
  }
}

/**
 * The execution's name, which the state machine passes on as the run id: `schedule-<UTC time>-<8 hex>`,
 * within StartExecution's rules (at most 80 characters; letters, digits, `-`, `_`). Without one,
 * Step Functions makes up a UUID, which says nothing in a list of runs.
 */
export function executionName(now: Date): string {
  const time = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '');
  return `schedule-${time}-${randomBytes(4).toString('hex')}`;
}

/** The stack's `StateMachineArn` output; a missing stack or output is an error saying what was looked for where. */
async function findStateMachine(client: CloudFormationClient, stack: string, where: string): Promise<string> {
  let stacks: DescribeStacksCommandOutput;
  try {
    stacks = await client.send(new DescribeStacksCommand({ StackName: stack }));
  } catch (error) {
    // CloudFormation answers a missing stack with ValidationError "Stack with id <name> does not exist".
    if (/does not exist/i.test(messageOf(error))) {
      throw new RemoteRunError(
        `there is no stack "${stack}" on ${where} (CloudFormation DescribeStacks: ${messageOf(error)}); deploy it first, or name the deployed stack with --stack <name>`,
      );
    }
    throw new RemoteRunError(`could not read stack "${stack}" on ${where}: ${messageOf(error)}${hint(error)}`);
  }
  const found = stacks.Stacks?.[0];
  if (!found) throw new RemoteRunError(`there is no stack "${stack}" on ${where} (DescribeStacks returned none)`);
  const output = found.Outputs?.find((o) => o.OutputKey === STATE_MACHINE_OUTPUT)?.OutputValue;
  if (!output) {
    const keys = (found.Outputs ?? []).map((o) => o.OutputKey).filter(Boolean);
    throw new RemoteRunError(
      `stack "${stack}" on ${where} (status ${found.StackStatus ?? 'unknown'}) has no output "${STATE_MACHINE_OUTPUT}"; ` +
        `its outputs are ${keys.length > 0 ? keys.join(', ') : '(none)'}. Is it a Sluice stack, fully deployed?`,
    );
  }
  return output;
}

/** Runs one SDK call; any failure (service error, refused connection, missing credentials) becomes one plain line. */
async function call<T>(what: string, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (error) {
    throw new RemoteRunError(`could not ${what}: ${messageOf(error)}${hint(error)}`);
  }
}

/** What to do about the SDK's configuration errors, which name no setting. */
function hint(error: unknown): string {
  const message = messageOf(error);
  if (/Region is missing/i.test(message)) return ' (set AWS_REGION, or a region in your AWS profile)';
  if (/Could not load credentials/i.test(message)) {
    return ' (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or sign in with aws sso login)';
  }
  if (/ECONNREFUSED|ENOTFOUND/.test(message)) return ' (is it running? AWS_ENDPOINT_URL sets the endpoint)';
  return '';
}

/**
 * An SDK or socket error's message, on one line (the SDK appends hints on further lines); a refused
 * connection to a dual-stack name is an AggregateError without a message.
 */
function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error).split('\n', 1)[0] ?? '';
  const name = error.name && error.name !== 'Error' ? `${error.name}: ` : '';
  if (error.message) return `${name}${error.message.split('\n', 1)[0]}`;
  const code = (error as { code?: unknown }).code;
  const inner = error instanceof AggregateError ? (error.errors[0] as Error | undefined)?.message : undefined;
  return `${name}${inner ?? (typeof code === 'string' ? code : 'no message')}`;
}

/** What the user reads at the end: the execution, its status, and for anything but success its error and cause. */
export function printRemoteResult(result: RemoteRunResult, pipeline: string): void {
  const seconds =
    result.startedAt && result.stoppedAt ? (result.stoppedAt.getTime() - result.startedAt.getTime()) / 1000 : undefined;
  console.log('');
  console.log(`execution ${result.executionArn}`);
  console.log(`status    ${result.status}`);
  if (seconds !== undefined) console.log(`duration  ${seconds.toFixed(1)} s`);
  if (result.status === 'SUCCEEDED') {
    console.log(`The scheduled run of ${pipeline} succeeded.`);
    return;
  }
  console.log(`error     ${result.error ?? '(none given)'}`);
  console.log(`cause     ${result.cause ? readableCause(result.cause) : '(none given)'}`);
  // The plain sentence, never Lambda's error JSON: the run record in the working bucket has the details.
  console.log(
    `The scheduled run of ${pipeline} ended ${result.status}` +
      (result.error ? ` with error ${result.error}` : '') +
      `: ${plainFailure(result.error, result.cause)}`,
  );
}
