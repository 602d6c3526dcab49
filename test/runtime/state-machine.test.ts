import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StateMachineDefinition } from 'aws-local-stepfunctions';
import { describe, expect, it } from 'vitest';
import {
  execute,
  handlerModules,
  LOCAL_PLACEHOLDERS,
  type LocalServices,
  loadDefinition,
} from '../../runtime/state-machine.ts';

const FAKE_HANDLERS = join(import.meta.dirname, 'fake-handlers');
const fn = (name: string) => `arn:aws:lambda:us-east-1:000000000000:function:sluice-${name}`;

function services(overrides: Partial<LocalServices> = {}): LocalServices {
  return {
    invokeLambda: handlerModules(FAKE_HANDLERS),
    runQuery: async () => {},
    publish: async () => {},
    getObject: async () => '[]',
    ...overrides,
  };
}

/** A Task invoking `function`, retried on Sluice.TransientError, caught into `$.error`. */
function invoke(functionName: string, payload: unknown): StateMachineDefinition {
  return {
    StartAt: 'Call',
    States: {
      Call: {
        Type: 'Task',
        Resource: 'arn:aws:states:::lambda:invoke',
        Parameters: { FunctionName: fn(functionName), Payload: payload },
        OutputPath: '$.Payload',
        Retry: [
          {
            ErrorEquals: ['Sluice.TransientError'],
            IntervalSeconds: 1,
            MaxAttempts: 2,
            BackoffRate: 1,
            JitterStrategy: 'FULL',
          },
        ],
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Caught' }],
        End: true,
      },
      Caught: { Type: 'Pass', End: true },
    },
  } as unknown as StateMachineDefinition;
}

describe('state machine: lambda:invoke', () => {
  it('returns the handler result as Payload, as the Lambda integration does', async () => {
    const outcome = await execute(invoke('ok', { a: 1 }), {}, { name: 'run-1', services: services() });

    expect(outcome).toMatchObject({ status: 'SUCCEEDED', output: { a: 1, handled: true } });
  });

  it("keeps a handler error's name, so Retry matches Sluice.TransientError", async () => {
    const outcome = await execute(
      invoke('flaky', { id: 'retry-1', failures: 2 }),
      {},
      { name: 'run-2', services: services() },
    );

    expect(outcome.output).toEqual({ id: 'retry-1', calls: 3 });
  });

  it('gives up after MaxAttempts and the Catch sees the error name and a Lambda-style JSON cause', async () => {
    const outcome = await execute(
      invoke('flaky', { id: 'retry-2', failures: 5 }),
      {},
      { name: 'run-3', services: services() },
    );

    const error = (outcome.output as { error: { Error: string; Cause: string } }).error;
    expect(error.Error).toBe('Sluice.TransientError');
    expect(JSON.parse(error.Cause)).toMatchObject({
      errorType: 'Sluice.TransientError',
      errorMessage: 'S3 throttled (call 3)',
    });
  });

  it('does not retry an InputError (only TransientError is listed)', async () => {
    const outcome = await execute(invoke('reject', {}), {}, { name: 'run-4', services: services() });

    expect((outcome.output as { error: { Error: string } }).error.Error).toBe('Sluice.InputError');
  });
});

describe('state machine: athena and the Fail state', () => {
  const definition = {
    StartAt: 'Query',
    States: {
      Query: {
        Type: 'Task',
        Resource: 'arn:aws:states:::athena:startQueryExecution.sync',
        Parameters: { 'QueryString.$': '$.sql', WorkGroup: 'sluice' },
        ResultPath: null,
        Catch: [{ ErrorEquals: ['States.TaskFailed'], ResultPath: '$.error', Next: 'Failed' }],
        End: true,
      },
      Failed: { Type: 'Fail', ErrorPath: '$.error.Error', CausePath: '$.error.Cause' },
    },
  } as unknown as StateMachineDefinition;

  it('reports a failed query as States.TaskFailed with the engine message as cause, through Fail ErrorPath/CausePath', async () => {
    const failing = services({
      runQuery: async () => {
        throw new Error('Catalog Error: Table with name nope does not exist!');
      },
    });

    const outcome = await execute(definition, { sql: 'SELECT * FROM nope' }, { name: 'run-5', services: failing });

    expect(outcome).toMatchObject({
      status: 'FAILED',
      error: 'States.TaskFailed',
      cause: 'Catalog Error: Table with name nope does not exist!',
    });
  });

  it('runs the query text it was given', async () => {
    const seen: string[] = [];

    await execute(
      definition,
      { sql: 'SELECT 1' },
      { name: 'run-6', services: services({ runQuery: async (sql) => void seen.push(sql) }) },
    );

    expect(seen).toEqual(['SELECT 1']);
  });
});

describe('state machine: loading the definition', () => {
  it('substitutes every placeholder of the real ASL file', () => {
    const definition = loadDefinition(join(import.meta.dirname, '../../state-machines/pipeline.asl.json'));

    expect(JSON.stringify(definition.States)).not.toContain('${');
    expect(JSON.stringify(definition.States)).toContain(LOCAL_PLACEHOLDERS.WorkFunctionArn);
  });

  it('fails naming an unknown placeholder', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'asl-')), 'x.asl.json');
    writeFileSync(
      file,
      JSON.stringify({ StartAt: 'A', States: { A: { Type: 'Pass', Result: '$' + '{Mystery}', End: true } } }),
    );

    expect(() => loadDefinition(file)).toThrow(/\$\{Mystery\}/);
  });

  it('fails naming the state and resource it cannot run', async () => {
    const definition = {
      StartAt: 'Put',
      States: { Put: { Type: 'Task', Resource: 'arn:aws:states:::dynamodb:putItem', End: true } },
    } as unknown as StateMachineDefinition;

    await expect(execute(definition, {}, { name: 'run-7', services: services() })).rejects.toThrow(
      'state "Put": the resource "arn:aws:states:::dynamodb:putItem" has no local implementation',
    );
  });
});
