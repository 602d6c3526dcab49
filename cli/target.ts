/**
 * A target is an endpoint: the CLI, the end-to-end suite and the UI reach the embedded runtime,
 * LocalStack and AWS alike through `@aws-sdk/client-s3`, `client-sfn` and `client-athena`, and
 * through nothing else. `openTarget` gives those three clients and the names they need (buckets,
 * state machine, Athena workgroup and database):
 * - local: the endpoint of the `sluice dev` running for the folder, else an embedded runtime
 *   started in this process on a free port (closed by `close()`); the names are the local ones.
 * - localstack / aws: the stack's outputs (CloudFormation DescribeStacks), with the SDK settings
 *   of `targetConfig` (cli/remote.ts).
 */
import { AthenaClient } from '@aws-sdk/client-athena';
import { CloudFormationClient, DescribeStacksCommand, type Output } from '@aws-sdk/client-cloudformation';
import { S3Client } from '@aws-sdk/client-s3';
import { SFNClient } from '@aws-sdk/client-sfn';
import { findDev, startEmbedded } from '../runtime/dev.ts';
import { LOCAL_ATHENA_DATABASE, LOCAL_ATHENA_WORKGROUP } from '../runtime/environment.ts';
import { localS3Client } from '../runtime/s3-client.ts';
import { LOCAL_BUCKETS } from '../runtime/s3-server.ts';
import { STATE_MACHINE_ARN } from '../runtime/sfn-api.ts';
import { DEFAULT_STACK, messageOf, RemoteRunError, type Target, targetConfig } from './remote.ts';

/** What a client needs to know of a deployment besides its endpoint. */
export interface TargetNames {
  readonly inputBucket: string;
  readonly workingBucket: string;
  readonly warehouseBucket: string;
  readonly stateMachineArn: string;
  readonly workGroup: string;
  readonly database: string;
}

export interface TargetSession {
  readonly target: Target;
  /** e.g. "the embedded runtime at http://127.0.0.1:4577" or "LocalStack at ... (region us-east-1)". */
  readonly where: string;
  readonly s3: S3Client;
  readonly sfn: SFNClient;
  readonly athena: AthenaClient;
  readonly names: TargetNames;
  /** Destroys the clients; stops the embedded runtime this session started, if any. */
  close(): Promise<void>;
}

export interface OpenTargetOptions {
  readonly target: Target;
  /** The runtime folder of the local target (default `.sluice`). */
  readonly dir?: string;
  /** The repository root (pipelines, state machine, handlers) of the local target. */
  readonly repoRoot: string;
  /** The local target's pipeline definitions, when not the repository's `pipelines/`. */
  readonly pipelinesDir?: string;
  /** The deployed stack's name (localstack and aws), default {@link DEFAULT_STACK}. */
  readonly stack?: string;
  readonly log?: (line: string) => void;
  /** Local only: start an embedded runtime when no `sluice dev` runs (default true). */
  readonly startLocal?: boolean;
}

/** The stack outputs that name what a client needs (infra/stack.ts). */
export const STACK_OUTPUTS = {
  inputBucket: 'InputBucketName',
  workingBucket: 'WorkingBucketName',
  warehouseBucket: 'WarehouseBucketName',
  stateMachineArn: 'StateMachineArn',
  workGroup: 'AthenaWorkGroup',
  database: 'GlueDatabase',
} as const satisfies Record<keyof TargetNames, string>;

/** The embedded runtime's names: its buckets, its state machine, workgroup and database `sluice`. */
export const LOCAL_NAMES: TargetNames = {
  inputBucket: LOCAL_BUCKETS.input,
  workingBucket: LOCAL_BUCKETS.working,
  warehouseBucket: LOCAL_BUCKETS.warehouse,
  stateMachineArn: STATE_MACHINE_ARN,
  workGroup: LOCAL_ATHENA_WORKGROUP,
  database: LOCAL_ATHENA_DATABASE,
};

/** Clients for the embedded endpoint: any credentials are accepted there. */
function localClients(endpoint: string) {
  const common = {
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'sluice-local', secretAccessKey: 'sluice-local' },
  };
  return { s3: localS3Client(endpoint), sfn: new SFNClient(common), athena: new AthenaClient(common) };
}

export async function openTarget(options: OpenTargetOptions): Promise<TargetSession> {
  if (options.target === 'local') return openLocal(options);
  const config = targetConfig(options.target);
  const stack = options.stack ?? DEFAULT_STACK;
  const names = await stackNames(new CloudFormationClient({ ...config.clientConfig }), stack, config.where);
  const s3 = new S3Client({
    ...config.clientConfig,
    ...(options.target === 'localstack' ? { forcePathStyle: true } : {}),
  });
  const sfn = new SFNClient({ ...config.clientConfig });
  const athena = new AthenaClient({ ...config.clientConfig });
  return {
    target: options.target,
    where: `stack "${stack}" on ${config.where}`,
    s3,
    sfn,
    athena,
    names,
    async close() {
      s3.destroy();
      sfn.destroy();
      athena.destroy();
    },
  };
}

async function openLocal(options: OpenTargetOptions): Promise<TargetSession> {
  const paths = {
    dir: options.dir ?? '.sluice',
    repoRoot: options.repoRoot,
    ...(options.pipelinesDir ? { pipelinesDir: options.pipelinesDir } : {}),
  };
  const running = await findDev(paths);
  let stop: (() => Promise<void>) | undefined;
  let endpoint: string;
  let where: string;
  if (running) {
    endpoint = running.endpoint;
    where = `sluice dev at ${endpoint} (pid ${running.pid})`;
  } else if (options.startLocal === false) {
    throw new RemoteRunError(`sluice dev is not running for ${paths.dir}; start it with "npx sluice dev"`);
  } else {
    const embedded = await startEmbedded({ ...paths, port: 0, ...(options.log ? { log: options.log } : {}) });
    endpoint = embedded.endpoint;
    where = `the embedded runtime at ${endpoint} (in this process)`;
    stop = () => embedded.stop();
  }
  const clients = localClients(endpoint);
  return {
    target: 'local',
    where,
    ...clients,
    names: LOCAL_NAMES,
    async close() {
      clients.s3.destroy();
      clients.sfn.destroy();
      clients.athena.destroy();
      await stop?.();
    },
  };
}

/** The names from the stack's outputs; a missing stack or output is an error saying what was looked for where. */
async function stackNames(client: CloudFormationClient, stack: string, where: string): Promise<TargetNames> {
  try {
    let outputs: readonly Output[];
    try {
      const found = (await client.send(new DescribeStacksCommand({ StackName: stack }))).Stacks?.[0];
      if (!found) throw new RemoteRunError(`there is no stack "${stack}" on ${where} (DescribeStacks returned none)`);
      outputs = found.Outputs ?? [];
    } catch (error) {
      if (error instanceof RemoteRunError) throw error;
      // CloudFormation answers a missing stack with ValidationError "Stack with id <name> does not exist".
      if (/does not exist/i.test(messageOf(error))) {
        throw new RemoteRunError(
          `there is no stack "${stack}" on ${where} (CloudFormation DescribeStacks: ${messageOf(error)}); deploy it first, or name the deployed stack with --stack <name>`,
        );
      }
      throw new RemoteRunError(`could not read stack "${stack}" on ${where}: ${messageOf(error)}`);
    }
    const value = (key: string) => outputs.find((o) => o.OutputKey === key)?.OutputValue;
    const missing = Object.values(STACK_OUTPUTS).filter((key) => !value(key));
    if (missing.length > 0) {
      const keys = outputs.map((o) => o.OutputKey).filter(Boolean);
      throw new RemoteRunError(
        `stack "${stack}" on ${where} has no output ${missing.join(', ')}; its outputs are ${keys.length > 0 ? keys.join(', ') : '(none)'}. Is it a Sluice stack, fully deployed?`,
      );
    }
    return Object.fromEntries(
      Object.entries(STACK_OUTPUTS).map(([name, key]) => [name, value(key) as string]),
    ) as unknown as TargetNames;
  } finally {
    client.destroy();
  }
}
