/**
 * The targets of the CLI and how to reach LocalStack and AWS with the SDK: endpoint, region and
 * credentials (`targetConfig`), and SDK errors as one plain line (`messageOf`, `hint`). What is
 * found there (buckets, state machine, workgroup) comes from the stack's outputs: cli/target.ts.
 */

/** Where `sluice run` runs: the embedded runtime (default), LocalStack, or the AWS account of the SDK's configuration. */
export const TARGETS = ['local', 'localstack', 'aws'] as const;
export type Target = (typeof TARGETS)[number];
export type RemoteTarget = Exclude<Target, 'local'>;

export const DEFAULT_STACK = 'Sluice';
/** LocalStack's endpoint when AWS_ENDPOINT_URL is not set (the one cdklocal and awslocal use). */
export const LOCALSTACK_ENDPOINT = 'http://localhost.localstack.cloud:4566';

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

/** What to do about the SDK's configuration errors, which name no setting. */
export function hint(error: unknown): string {
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
export function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error).split('\n', 1)[0] ?? '';
  const name = error.name && error.name !== 'Error' ? `${error.name}: ` : '';
  if (error.message) return `${name}${error.message.split('\n', 1)[0]}`;
  const code = (error as { code?: unknown }).code;
  const inner = error instanceof AggregateError ? (error.errors[0] as Error | undefined)?.message : undefined;
  return `${name}${inner ?? (typeof code === 'string' ? code : 'no message')}`;
}
