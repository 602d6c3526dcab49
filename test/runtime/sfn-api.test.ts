/**
 * The embedded runtime's Step Functions API through real clients: `@aws-sdk/client-sfn` and the
 * AWS CLI v1, against the S3 server's port, over a runtime whose state machine is a one-Task ASL
 * (the placeholder of the Plan function substituted as in the real one) and whose Plan function
 * is a fake handler that can wait, fail or echo.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  DescribeExecutionCommand,
  DescribeStateMachineCommand,
  ExecutionAlreadyExists,
  ExecutionDoesNotExist,
  ListExecutionsCommand,
  ListStateMachinesCommand,
  SendTaskSuccessCommand,
  type SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalRuntime } from '../../runtime/local-runtime.ts';
import type { S3Server } from '../../runtime/s3-server.ts';
import { executionArn, STATE_MACHINE_ARN } from '../../runtime/sfn-api.ts';
import { startTestSfnApi, type TestSfnApi, waitForEnd as waitForEndOf } from './helpers.ts';

const run = promisify(execFile);

const ASL = {
  Comment: 'A one-Task state machine for the API tests',
  StartAt: 'Plan',
  States: {
    Plan: {
      Type: 'Task',
      Resource: 'arn:aws:states:::lambda:invoke',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: an ASL placeholder, which the runtime substitutes
      Parameters: { FunctionName: '${PlanFunctionArn}', 'Payload.$': '$' },
      OutputPath: '$.Payload',
      End: true,
    },
  },
};

/** The fake Plan function: waits `waitMs`, fails with `fail`, else answers with its input. */
const HANDLER = `
export const handler = async (event) => {
  if (event.waitMs) await new Promise((resolve) => setTimeout(resolve, event.waitMs).unref());
  if (event.fail) {
    const error = new Error(event.fail);
    error.name = 'Sluice.InputError';
    throw error;
  }
  return { ...event, rowsLoaded: 3 };
};
`;

let root: string;
let server: S3Server;
let runtime: LocalRuntime;
let sfn: SFNClient;

let api: TestSfnApi;

beforeAll(async () => {
  api = await startTestSfnApi('sfn-api-', ASL, { 'plan.ts': HANDLER });
  ({ root, server, runtime, sfn } = api);
});

afterAll(() => api?.close());

const waitForEnd = (arn: string) => waitForEndOf(sfn, arn, 200);

const start = (name: string | undefined, input: unknown) =>
  sfn.send(new StartExecutionCommand({ stateMachineArn: STATE_MACHINE_ARN, name, input: JSON.stringify(input) }));

/** The AWS CLI v1 against the endpoint, with dummy credentials and no user configuration. */
async function awsCli(...args: string[]) {
  return run('python3', ['-m', 'awscli', ...args, '--endpoint-url', server.endpoint, '--region', 'us-east-1'], {
    env: {
      ...process.env,
      AWS_ACCESS_KEY_ID: 'any',
      AWS_SECRET_ACCESS_KEY: 'any',
      AWS_CONFIG_FILE: join(root, 'no-aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(root, 'no-aws-credentials'),
      AWS_PAGER: '',
    },
  });
}

const hasAwsCli = run('python3', ['-m', 'awscli', '--version']).then(
  () => true,
  () => false,
);

describe('the Step Functions API of the embedded runtime (@aws-sdk/client-sfn)', () => {
  it('lists and describes the state machine, with the local values in its definition', async () => {
    const list = await sfn.send(new ListStateMachinesCommand({}));
    expect(list.stateMachines).toEqual([
      {
        stateMachineArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:sluice-pipeline',
        name: 'sluice-pipeline',
        type: 'STANDARD',
        creationDate: expect.any(Date),
      },
    ]);

    const described = await sfn.send(new DescribeStateMachineCommand({ stateMachineArn: STATE_MACHINE_ARN }));
    expect(described).toMatchObject({
      stateMachineArn: STATE_MACHINE_ARN,
      name: 'sluice-pipeline',
      status: 'ACTIVE',
      type: 'STANDARD',
      roleArn: 'arn:aws:iam::000000000000:role/sluice-local',
      creationDate: expect.any(Date),
    });
    const definition = JSON.parse(described.definition ?? '{}');
    expect(definition.Comment).toBe(ASL.Comment);
    expect(definition.States.Plan.Parameters.FunctionName).toBe(
      'arn:aws:lambda:us-east-1:000000000000:function:sluice-plan',
    );

    await expect(
      sfn.send(
        new DescribeStateMachineCommand({
          stateMachineArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:another',
        }),
      ),
    ).rejects.toMatchObject({ name: 'StateMachineDoesNotExist', $metadata: { httpStatusCode: 400 } });
    await expect(sfn.send(new DescribeStateMachineCommand({ stateMachineArn: 'not-an-arn' }))).rejects.toMatchObject({
      name: 'InvalidArn',
    });
  });

  it('starts a named execution at once and sees it SUCCEED through DescribeExecution', async () => {
    const before = Date.now();
    const started = await start('api-ok-1', { pipeline: 'access-logs', trigger: 'schedule' });

    expect(started.executionArn).toBe('arn:aws:states:us-east-1:000000000000:execution:sluice-pipeline:api-ok-1');
    expect(started.startDate?.getTime()).toBeGreaterThanOrEqual(before - 1);
    const ended = await waitForEnd(String(started.executionArn));
    expect(ended).toMatchObject({
      executionArn: started.executionArn,
      stateMachineArn: STATE_MACHINE_ARN,
      name: 'api-ok-1',
      status: 'SUCCEEDED',
      startDate: started.startDate,
      stopDate: expect.any(Date),
    });
    expect(JSON.parse(String(ended.input))).toEqual({ pipeline: 'access-logs', trigger: 'schedule' });
    expect(JSON.parse(String(ended.output))).toEqual({ pipeline: 'access-logs', trigger: 'schedule', rowsLoaded: 3 });
    // The run history of `sluice runs` is the same record.
    expect(runtime.executions.listRuns().find((row) => row.id === 'api-ok-1')).toMatchObject({
      pipeline: 'access-logs',
      trigger: 'schedule',
      status: 'SUCCEEDED',
      rowsLoaded: 3,
    });
  });

  it('names an execution started without a name, and reports a failure with its error and cause', async () => {
    const started = await start(undefined, { pipeline: 'access-logs', trigger: 'schedule', fail: 'bad header' });

    expect(started.executionArn).toMatch(
      /^arn:aws:states:us-east-1:000000000000:execution:sluice-pipeline:access-logs-\d{8}T\d{6}Z-[a-z0-9]{6}$/,
    );
    const ended = await waitForEnd(String(started.executionArn));
    expect(ended).toMatchObject({ status: 'FAILED', error: 'Sluice.InputError' });
    expect(ended.cause).toContain('bad header');
    expect(ended.output).toBeUndefined();
  });

  it('refuses a name in use (ExecutionAlreadyExists), and answers an open one started again with the same input', async () => {
    await expect(start('api-ok-1', { pipeline: 'access-logs', trigger: 'schedule' })).rejects.toBeInstanceOf(
      ExecutionAlreadyExists,
    );
    await expect(start('api-ok-1', { other: true })).rejects.toMatchObject({
      name: 'ExecutionAlreadyExists',
      $metadata: { httpStatusCode: 400 },
    });

    const first = await start('api-open-1', { pipeline: 'access-logs', trigger: 'schedule', waitMs: 300 });
    const again = await start('api-open-1', { pipeline: 'access-logs', trigger: 'schedule', waitMs: 300 });
    expect(again).toMatchObject({ executionArn: first.executionArn, startDate: first.startDate });
    await expect(start('api-open-1', { pipeline: 'access-logs', trigger: 'object' })).rejects.toMatchObject({
      name: 'ExecutionAlreadyExists',
    });
    expect((await waitForEnd(String(first.executionArn))).status).toBe('SUCCEEDED');
  });

  it("validates the name, the input and the state machine as AWS does, with AWS's error names", async () => {
    await expect(start('has space', {})).rejects.toMatchObject({ name: 'InvalidName' });
    await expect(start('x'.repeat(81), {})).rejects.toMatchObject({ name: 'InvalidName' });
    await expect(
      sfn.send(new StartExecutionCommand({ stateMachineArn: STATE_MACHINE_ARN, name: 'api-bad-json', input: '{nope' })),
    ).rejects.toMatchObject({ name: 'InvalidExecutionInput', $metadata: { httpStatusCode: 400 } });
    await expect(
      sfn.send(
        new StartExecutionCommand({ stateMachineArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:other' }),
      ),
    ).rejects.toMatchObject({ name: 'StateMachineDoesNotExist' });
    await expect(sfn.send(new StartExecutionCommand({ stateMachineArn: 'arn:aws:s3:::bucket' }))).rejects.toMatchObject(
      { name: 'InvalidArn' },
    );
    // Nothing was started by the refused requests.
    expect(runtime.executions.read('api-bad-json')).toBeUndefined();
  });

  it('answers an unknown execution with ExecutionDoesNotExist, as the SDK names it', async () => {
    const missing = sfn.send(new DescribeExecutionCommand({ executionArn: executionArn('no-such-run') }));
    await expect(missing).rejects.toBeInstanceOf(ExecutionDoesNotExist);
    await expect(missing).rejects.toMatchObject({
      name: 'ExecutionDoesNotExist',
      message: expect.stringContaining('no-such-run'),
      $metadata: { httpStatusCode: 400 },
    });
    await expect(
      sfn.send(
        new DescribeExecutionCommand({
          executionArn: 'arn:aws:states:us-east-1:000000000000:execution:other-machine:api-ok-1',
        }),
      ),
    ).rejects.toMatchObject({ name: 'ExecutionDoesNotExist' });
    await expect(sfn.send(new DescribeExecutionCommand({ executionArn: 'api-ok-1' }))).rejects.toMatchObject({
      name: 'InvalidArn',
    });
  });

  it('stops a long execution: it ends ABORTED with the given error and cause', async () => {
    const started = await start('api-long-1', { pipeline: 'access-logs', trigger: 'schedule', waitMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await sfn.send(new DescribeExecutionCommand({ executionArn: started.executionArn }))).status).toBe(
      'RUNNING',
    );

    const stopped = await sfn.send(
      new StopExecutionCommand({ executionArn: started.executionArn, error: 'Operator.Stop', cause: 'not needed' }),
    );

    expect(stopped.stopDate).toBeInstanceOf(Date);
    const described = await sfn.send(new DescribeExecutionCommand({ executionArn: started.executionArn }));
    expect(described).toMatchObject({
      status: 'ABORTED',
      error: 'Operator.Stop',
      cause: 'not needed',
      stopDate: stopped.stopDate,
    });
    expect(runtime.executions.listRuns().find((row) => row.id === 'api-long-1')).toMatchObject({
      status: 'ABORTED',
      message: 'Stopped with StopExecution (Operator.Stop: not needed).',
    });
    // Stopping it again changes nothing; stopping an unknown one is ExecutionDoesNotExist.
    const again = await sfn.send(new StopExecutionCommand({ executionArn: started.executionArn }));
    expect(again.stopDate).toEqual(stopped.stopDate);
    await expect(
      sfn.send(new StopExecutionCommand({ executionArn: executionArn('no-such-run') })),
    ).rejects.toMatchObject({ name: 'ExecutionDoesNotExist' });
  });

  it('lists executions newest first, by status, in pages', async () => {
    for (const name of ['api-page-1', 'api-page-2', 'api-page-3']) {
      await waitForEnd(String((await start(name, { pipeline: 'access-logs', trigger: 'schedule' })).executionArn));
    }

    const all = await sfn.send(new ListExecutionsCommand({ stateMachineArn: STATE_MACHINE_ARN }));
    const startDates = (all.executions ?? []).map((e) => e.startDate?.getTime() ?? 0);
    expect(startDates).toEqual([...startDates].sort((a, b) => b - a));
    expect(all.nextToken).toBeUndefined();
    expect(all.executions?.[0]).toEqual({
      executionArn: executionArn('api-page-3'),
      stateMachineArn: STATE_MACHINE_ARN,
      name: 'api-page-3',
      status: 'SUCCEEDED',
      startDate: expect.any(Date),
      stopDate: expect.any(Date),
    });

    const succeeded: string[] = [];
    let nextToken: string | undefined;
    let pages = 0;
    do {
      const page = await sfn.send(
        new ListExecutionsCommand({
          stateMachineArn: STATE_MACHINE_ARN,
          statusFilter: 'SUCCEEDED',
          maxResults: 2,
          nextToken,
        }),
      );
      expect(page.executions?.length).toBeLessThanOrEqual(2);
      succeeded.push(...(page.executions ?? []).map((e) => String(e.name)));
      nextToken = page.nextToken;
      pages++;
    } while (nextToken);
    expect(succeeded.slice(0, 3)).toEqual(['api-page-3', 'api-page-2', 'api-page-1']);
    expect(succeeded).toEqual(
      (all.executions ?? []).filter((e) => e.status === 'SUCCEEDED').map((e) => String(e.name)),
    );
    expect(pages).toBe(Math.ceil(succeeded.length / 2));

    const aborted = await sfn.send(
      new ListExecutionsCommand({ stateMachineArn: STATE_MACHINE_ARN, statusFilter: 'ABORTED' }),
    );
    expect(aborted.executions?.map((e) => e.name)).toEqual(['api-long-1']);

    await expect(
      sfn.send(new ListExecutionsCommand({ stateMachineArn: STATE_MACHINE_ARN, nextToken: 'not-a-token' })),
    ).rejects.toMatchObject({ name: 'InvalidToken' });
    await expect(
      sfn.send(new ListExecutionsCommand({ stateMachineArn: STATE_MACHINE_ARN, maxResults: 1001 })),
    ).rejects.toMatchObject({ name: 'ValidationException' });
  });

  it('answers the operations it does not serve with UnknownOperationException', async () => {
    await expect(sfn.send(new SendTaskSuccessCommand({ taskToken: 'token', output: '{}' }))).rejects.toMatchObject({
      name: 'UnknownOperationException',
      message: 'SendTaskSuccess is not served by the embedded runtime yet',
    });
  });
});

describe('the Step Functions API of the embedded runtime (AWS CLI v1)', () => {
  it('lists the state machine, starts an execution, sees it succeed and lists executions in pages', async (context) => {
    if (!(await hasAwsCli)) {
      context.skip('the AWS CLI v1 (python3 -m awscli) is not installed');
      return;
    }
    const machines = JSON.parse((await awsCli('stepfunctions', 'list-state-machines')).stdout);
    expect(machines.stateMachines).toMatchObject([{ stateMachineArn: STATE_MACHINE_ARN, type: 'STANDARD' }]);

    const started = JSON.parse(
      (
        await awsCli(
          'stepfunctions',
          'start-execution',
          '--state-machine-arn',
          STATE_MACHINE_ARN,
          '--name',
          'cli-run-1',
          '--input',
          JSON.stringify({ pipeline: 'access-logs', trigger: 'schedule' }),
        )
      ).stdout,
    );
    expect(started.executionArn).toBe(executionArn('cli-run-1'));
    await waitForEnd(started.executionArn);
    const described = JSON.parse(
      (await awsCli('stepfunctions', 'describe-execution', '--execution-arn', started.executionArn)).stdout,
    );
    expect(described).toMatchObject({ name: 'cli-run-1', status: 'SUCCEEDED' });
    expect(JSON.parse(described.output)).toMatchObject({ rowsLoaded: 3 });

    // --page-size 1: the CLI follows nextToken page by page.
    const listed = JSON.parse(
      (
        await awsCli(
          'stepfunctions',
          'list-executions',
          '--state-machine-arn',
          STATE_MACHINE_ARN,
          '--status-filter',
          'SUCCEEDED',
          '--page-size',
          '1',
        )
      ).stdout,
    );
    const direct = await sfn.send(
      new ListExecutionsCommand({ stateMachineArn: STATE_MACHINE_ARN, statusFilter: 'SUCCEEDED' }),
    );
    expect(listed.executions.map((e: { name: string }) => e.name)).toEqual(direct.executions?.map((e) => e.name));
    expect(listed.executions[0].name).toBe('cli-run-1');

    await expect(
      awsCli('stepfunctions', 'describe-execution', '--execution-arn', executionArn('no-such-run')),
    ).rejects.toMatchObject({
      stderr: expect.stringContaining(
        'An error occurred (ExecutionDoesNotExist) when calling the DescribeExecution operation',
      ),
    });
  });
});
