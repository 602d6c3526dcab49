import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, type DescribeExecutionCommandOutput, SFNClient } from '@aws-sdk/client-sfn';
import type { AwsJsonHandler } from '../../runtime/aws-api.ts';
import { createLocalRuntime, type LocalRuntime } from '../../runtime/local-runtime.ts';
import { localS3Client } from '../../runtime/s3-client.ts';
import { type ObjectCreated, type S3Server, startS3Server } from '../../runtime/s3-server.ts';
import { stepFunctionsApi } from '../../runtime/sfn-api.ts';
import { tempDir } from '../support/temp.ts';

export interface TestS3 {
  readonly dir: string;
  readonly server: S3Server;
  readonly s3: S3Client;
  readonly events: ObjectCreated[];
  close(): Promise<void>;
}

/** An embedded S3 server on a free port, with its data in a fresh temporary folder. */
export async function startTestS3(): Promise<TestS3> {
  const dir = tempDir('runtime-test-');
  const events: ObjectCreated[] = [];
  const server = await startS3Server({ dir, port: 0, onObjectCreated: (e) => events.push(e) });
  const s3 = localS3Client(server.endpoint);
  return {
    dir,
    server,
    s3,
    events,
    async close() {
      s3.destroy();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An embedded runtime serving its Step Functions API, over a repository of one ASL file and some handlers. */
export interface TestSfnApi {
  readonly root: string;
  readonly server: S3Server;
  readonly runtime: LocalRuntime;
  readonly sfn: SFNClient;
  close(): Promise<void>;
}

/**
 * Starts the S3 server with the Step Functions API of a local runtime whose repository holds
 * `asl` as its state machine and `handlers` (file name → source) under functions/handlers/.
 */
export async function startTestSfnApi(
  prefix: string,
  asl: unknown,
  handlers: Readonly<Record<string, string>>,
): Promise<TestSfnApi> {
  const root = tempDir(prefix);
  const repoRoot = join(root, 'repo');
  mkdirSync(join(repoRoot, 'state-machines'), { recursive: true });
  mkdirSync(join(repoRoot, 'functions', 'handlers'), { recursive: true });
  mkdirSync(join(repoRoot, 'pipelines'), { recursive: true });
  writeFileSync(join(repoRoot, 'state-machines', 'pipeline.asl.json'), JSON.stringify(asl, null, 2));
  for (const [file, source] of Object.entries(handlers)) {
    writeFileSync(join(repoRoot, 'functions', 'handlers', file), source);
  }
  const dir = join(root, '.sluice');
  let apis: Readonly<Record<string, AwsJsonHandler>> = {};
  const server = await startS3Server({ dir, port: 0, awsApis: () => apis });
  const runtime = createLocalRuntime({ dir, repoRoot, endpoint: server.endpoint });
  apis = { AWSStepFunctions: stepFunctionsApi(runtime) };
  const sfn = new SFNClient({
    endpoint: server.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'any', secretAccessKey: 'any' },
  });
  return {
    root,
    server,
    runtime,
    sfn,
    async close() {
      sfn.destroy();
      await runtime.stop();
      await server.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** DescribeExecution until the execution is no longer RUNNING (at most `tries` looks, 50 ms apart). */
export async function waitForEnd(sfn: SFNClient, arn: string, tries = 400): Promise<DescribeExecutionCommandOutput> {
  for (let i = 0; i < tries; i++) {
    const out = await sfn.send(new DescribeExecutionCommand({ executionArn: arn }));
    if (out.status !== 'RUNNING') return out;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${arn} is still RUNNING`);
}

/** The S3 error a request failed with: its code and HTTP status. */
export async function s3Failure(request: Promise<unknown>): Promise<{ name: string; status: number }> {
  try {
    await request;
  } catch (error) {
    if (error instanceof S3ServiceException) return { name: error.name, status: error.$metadata.httpStatusCode ?? 0 };
    throw error;
  }
  throw new Error('the request succeeded');
}
