/**
 * GetExecutionHistory, the map runs (ListMapRuns, DescribeMapRun, ListExecutions of a map run) and
 * RedriveExecution of the embedded runtime, through `@aws-sdk/client-sfn` and the AWS CLI v1, over a
 * runtime whose state machine is Pass → Distributed Map (a Work Task per item) → Task (Finish), with
 * fake Work and Finish functions: Finish fails while a flag file exists, so a failed run can be
 * fixed and redriven.
 */
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  DescribeExecutionCommand,
  DescribeMapRunCommand,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  ListExecutionsCommand,
  ListMapRunsCommand,
  RedriveExecutionCommand,
  type SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { S3Server } from '../../runtime/s3-server.ts';
import { executionArn, STATE_MACHINE_ARN } from '../../runtime/sfn-api.ts';
import { execute } from '../../runtime/state-machine.ts';
import { startTestSfnApi, type TestSfnApi, waitForEnd as waitForEndOf } from './helpers.ts';

const run = promisify(execFile);

const lambda = (placeholder: string) => ({
  Type: 'Task',
  Resource: 'arn:aws:states:::lambda:invoke',
  Parameters: { FunctionName: `\${${placeholder}}`, 'Payload.$': '$' },
  OutputPath: '$.Payload',
});

const ASL = {
  StartAt: 'Prepare',
  States: {
    Prepare: { Type: 'Pass', Next: 'Chunks' },
    Chunks: {
      Type: 'Map',
      ItemsPath: '$.items',
      ItemProcessor: {
        ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'EXPRESS' },
        StartAt: 'Work',
        States: { Work: { ...lambda('WorkFunctionArn'), End: true } },
      },
      ResultPath: '$.chunks',
      Next: 'Finish',
    },
    Finish: { ...lambda('FinishFunctionArn'), End: true },
  },
};

const WORK = 'export const handler = async (item) => ({ doubled: item.n * 2 });\n';
/** Fails while the flag file named in the input exists. */
const FINISH = `
import { existsSync } from 'node:fs';
export const handler = async (event) => {
  if (existsSync(event.flag)) {
    const error = new Error('the flag is set');
    error.name = 'Sluice.InputError';
    throw error;
  }
  return { loaded: event.chunks.length };
};
`;

let root: string;
let server: S3Server;
let sfn: SFNClient;
let flag: string;

let api: TestSfnApi;

beforeAll(async () => {
  api = await startTestSfnApi('sfn-history-', ASL, { 'work.ts': WORK, 'finish.ts': FINISH });
  ({ root, server, sfn } = api);
  flag = join(root, 'broken');
});

afterAll(() => api?.close());

const waitForEnd = (arn: string) => waitForEndOf(sfn, arn, 400);

const items = [{ n: 1 }, { n: 2 }, { n: 3 }];

async function runToEnd(name: string) {
  await sfn.send(
    new StartExecutionCommand({ stateMachineArn: STATE_MACHINE_ARN, name, input: JSON.stringify({ items, flag }) }),
  );
  return waitForEnd(executionArn(name));
}

async function history(name: string): Promise<HistoryEvent[]> {
  const out = await sfn.send(new GetExecutionHistoryCommand({ executionArn: executionArn(name), maxResults: 1000 }));
  return out.events ?? [];
}

describe('GetExecutionHistory and the map runs (@aws-sdk/client-sfn)', () => {
  it('records the events Step Functions records, numbered and chained, with inputs and outputs', async () => {
    expect((await runToEnd('history-ok')).status).toBe('SUCCEEDED');

    const events = await history('history-ok');

    expect(events.map((event) => event.type)).toEqual([
      'ExecutionStarted',
      'PassStateEntered',
      'PassStateExited',
      'MapStateEntered',
      'MapStateStarted',
      'MapRunStarted',
      'MapRunSucceeded',
      'MapStateSucceeded',
      'MapStateExited',
      'TaskStateEntered',
      'TaskScheduled',
      'TaskStarted',
      'TaskSucceeded',
      'TaskStateExited',
      'ExecutionSucceeded',
    ]);
    expect(events.map((event) => event.id)).toEqual(events.map((_, index) => index + 1));
    expect(events.map((event) => event.previousEventId)).toEqual(events.map((_, index) => index));
    expect(events[0]?.timestamp).toBeInstanceOf(Date);
    expect(JSON.parse(String(events[0]?.executionStartedEventDetails?.input))).toEqual({ items, flag });
    const entered = events.find((event) => event.type === 'TaskStateEntered');
    expect(entered?.stateEnteredEventDetails).toMatchObject({ name: 'Finish', inputDetails: { truncated: false } });
    expect(events.find((event) => event.type === 'TaskScheduled')?.taskScheduledEventDetails).toMatchObject({
      resourceType: 'lambda',
      resource: 'invoke',
      region: 'us-east-1',
    });
    const succeeded = events.find((event) => event.type === 'TaskSucceeded')?.taskSucceededEventDetails;
    expect(JSON.parse(String(succeeded?.output))).toMatchObject({ Payload: { loaded: 3 } });
    expect(JSON.parse(String(events.at(-1)?.executionSucceededEventDetails?.output))).toEqual({ loaded: 3 });
  });

  it('pages the history, newest first on request, without execution data on request', async () => {
    const all = await history('history-ok');
    const paged: HistoryEvent[] = [];
    let nextToken: string | undefined;
    do {
      const page = await sfn.send(
        new GetExecutionHistoryCommand({ executionArn: executionArn('history-ok'), maxResults: 4, nextToken }),
      );
      expect(page.events?.length).toBeLessThanOrEqual(4);
      paged.push(...(page.events ?? []));
      nextToken = page.nextToken;
    } while (nextToken);
    expect(paged.map((event) => event.id)).toEqual(all.map((event) => event.id));

    const reversed = await sfn.send(
      new GetExecutionHistoryCommand({
        executionArn: executionArn('history-ok'),
        reverseOrder: true,
        includeExecutionData: false,
      }),
    );
    expect(reversed.events?.map((event) => event.id)).toEqual(all.map((event) => event.id).reverse());
    expect(reversed.events?.at(-1)?.executionStartedEventDetails?.input).toBeUndefined();
    expect(reversed.events?.at(-1)?.executionStartedEventDetails?.roleArn).toBeDefined();
  });

  it('lists and describes the Distributed Map run with its counts, and lists its children', async () => {
    const runs = await sfn.send(new ListMapRunsCommand({ executionArn: executionArn('history-ok') }));
    expect(runs.mapRuns).toHaveLength(1);
    const mapRunArn = String(runs.mapRuns?.[0]?.mapRunArn);
    expect(mapRunArn).toMatch(
      /^arn:aws:states:us-east-1:000000000000:mapRun:sluice-pipeline\/history-ok:[0-9a-f-]{36}$/,
    );
    const started = (await history('history-ok')).find((event) => event.type === 'MapRunStarted');
    expect(started?.mapRunStartedEventDetails?.mapRunArn).toBe(mapRunArn);

    const described = await sfn.send(new DescribeMapRunCommand({ mapRunArn }));
    expect(described).toMatchObject({
      mapRunArn,
      executionArn: executionArn('history-ok'),
      status: 'SUCCEEDED',
      startDate: expect.any(Date),
      stopDate: expect.any(Date),
      itemCounts: { total: 3, succeeded: 3, failed: 0, pending: 0, running: 0 },
      executionCounts: { total: 3, succeeded: 3 },
    });

    const children = await sfn.send(new ListExecutionsCommand({ mapRunArn }));
    expect(children.executions).toHaveLength(3);
    expect(children.executions?.every((child) => child.status === 'SUCCEEDED' && child.mapRunArn === mapRunArn)).toBe(
      true,
    );
    await expect(
      sfn.send(new DescribeMapRunCommand({ mapRunArn: mapRunArn.replace(/[0-9a-f]{12}$/, '000000000000') })),
    ).rejects.toMatchObject({ name: 'ResourceNotFound' });
  });
});

describe('RedriveExecution (@aws-sdk/client-sfn)', () => {
  it('refuses an execution that did not fail, with the reason DescribeExecution gives', async () => {
    const described = await sfn.send(new DescribeExecutionCommand({ executionArn: executionArn('history-ok') }));
    expect(described).toMatchObject({
      redriveCount: 0,
      redriveStatus: 'NOT_REDRIVABLE',
      redriveStatusReason: 'Execution is SUCCEEDED and cannot be redriven.',
    });
    await expect(
      sfn.send(new RedriveExecutionCommand({ executionArn: executionArn('history-ok') })),
    ).rejects.toMatchObject({
      name: 'ExecutionNotRedrivable',
      message: 'Execution is SUCCEEDED and cannot be redriven.',
    });
  });

  it('continues a failed execution from its failed state, under the same name, once per client token', async () => {
    writeFileSync(flag, '');
    const failed = await runToEnd('redrive-me');
    expect(failed).toMatchObject({ status: 'FAILED', error: 'Sluice.InputError', redriveStatus: 'REDRIVABLE' });
    rmSync(flag);

    const redriven = await sfn.send(
      new RedriveExecutionCommand({ executionArn: executionArn('redrive-me'), clientToken: 'fix-1' }),
    );
    const again = await sfn.send(
      new RedriveExecutionCommand({ executionArn: executionArn('redrive-me'), clientToken: 'fix-1' }),
    );
    const ended = await waitForEnd(executionArn('redrive-me'));

    expect(again.redriveDate).toEqual(redriven.redriveDate);
    expect(ended).toMatchObject({
      name: 'redrive-me',
      status: 'SUCCEEDED',
      redriveCount: 1,
      redriveDate: redriven.redriveDate,
    });
    expect(JSON.parse(String(ended.output))).toEqual({ loaded: 3 });
    const types = (await history('redrive-me')).map((event) => event.type);
    // The states that succeeded are not run again; Finish is, after the failure and the redrive.
    expect(types.filter((type) => type === 'PassStateEntered')).toHaveLength(1);
    expect(types.filter((type) => type === 'MapRunStarted')).toHaveLength(1);
    expect(types.slice(types.indexOf('ExecutionFailed'))).toEqual([
      'ExecutionFailed',
      'ExecutionRedriven',
      'TaskStateEntered',
      'TaskScheduled',
      'TaskStarted',
      'TaskSucceeded',
      'TaskStateExited',
      'ExecutionSucceeded',
    ]);
    expect(types.filter((type) => type === 'TaskFailed')).toHaveLength(1);

    const redrivenList = await sfn.send(
      new ListExecutionsCommand({ stateMachineArn: STATE_MACHINE_ARN, redriveFilter: 'REDRIVEN' }),
    );
    expect(redrivenList.executions?.map((item) => [item.name, item.redriveCount])).toEqual([['redrive-me', 1]]);
  });
});

describe('an execution over its TimeoutSeconds', () => {
  it('ends TIMED_OUT with States.Timeout, as DescribeExecution says on AWS', async () => {
    const definition = {
      StartAt: 'Sleep',
      TimeoutSeconds: 1,
      States: { Sleep: { Type: 'Wait', Seconds: 60, End: true } },
    };
    const services = {} as never;

    const outcome = await execute(definition as never, {}, { name: 'slow', services, waitTimeOverrides: {} });

    expect(outcome).toMatchObject({ status: 'TIMED_OUT', error: 'States.Timeout' });
  });
});

describe('GetExecutionHistory and ListMapRuns (AWS CLI v1)', () => {
  it('pages the history and lists the map runs', async (context) => {
    const hasCli = await run('python3', ['-m', 'awscli', '--version']).then(
      () => true,
      () => false,
    );
    if (!hasCli) {
      context.skip('the AWS CLI v1 (python3 -m awscli) is not installed');
      return;
    }
    const cli = async (...args: string[]) =>
      JSON.parse(
        (
          await run(
            'python3',
            ['-m', 'awscli', 'stepfunctions', ...args, '--endpoint-url', server.endpoint, '--region', 'us-east-1'],
            {
              env: {
                ...process.env,
                AWS_ACCESS_KEY_ID: 'any',
                AWS_SECRET_ACCESS_KEY: 'any',
                AWS_CONFIG_FILE: join(root, 'no-aws-config'),
                AWS_SHARED_CREDENTIALS_FILE: join(root, 'no-aws-credentials'),
                AWS_PAGER: '',
              },
            },
          )
        ).stdout,
      );
    const arn = executionArn('history-ok');
    const events = await cli('get-execution-history', '--execution-arn', arn, '--page-size', '2');
    expect(events.events.map((event: { id: number }) => event.id)).toEqual(
      (await history('history-ok')).map((event) => event.id),
    );
    const runs = await cli('list-map-runs', '--execution-arn', arn);
    expect(runs.mapRuns).toMatchObject([{ executionArn: arn, stateMachineArn: STATE_MACHINE_ARN }]);
  });
});
