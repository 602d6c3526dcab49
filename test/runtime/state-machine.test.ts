import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StateMachineDefinition } from 'aws-local-stepfunctions';
import { describe, expect, it } from 'vitest';
import { ALL_PLACEHOLDERS, HANDLERS } from '../../functions/catalog.ts';
import { LocalAthena } from '../../runtime/athena.ts';
import {
  execute,
  handlerModules,
  LOCAL_PLACEHOLDERS,
  type LocalServices,
  loadDefinition,
} from '../../runtime/state-machine.ts';

const FAKE_HANDLERS = join(import.meta.dirname, 'fake-handlers');
const FAKE_FUNCTIONS = { 'sluice-ok': 'ok.ts', 'sluice-flaky': 'flaky.ts', 'sluice-reject': 'reject.ts' };
const fn = (name: string) => `arn:aws:lambda:us-east-1:000000000000:function:sluice-${name}`;

function services(overrides: Partial<LocalServices> = {}): LocalServices {
  return {
    invokeLambda: handlerModules(FAKE_HANDLERS, FAKE_FUNCTIONS),
    athena: new LocalAthena({ run: async () => {} }),
    publish: async () => {},
    getObject: async () => '[]',
    putObject: async () => {},
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

describe('state machine: lambda functions come from the catalog', () => {
  it('maps a local function name to the entry file the catalog gives it', async () => {
    const invoke = handlerModules(FAKE_HANDLERS);

    const result = await invoke(`arn:aws:lambda:us-east-1:000000000000:function:${HANDLERS.plan.localName}`, { a: 1 });

    expect(result).toEqual({ fake: HANDLERS.plan.entry, event: { a: 1 } });
  });

  it('fails like Lambda for a function the catalog does not have', async () => {
    const invoke = handlerModules(FAKE_HANDLERS);

    await expect(invoke(fn('ok'), {})).rejects.toMatchObject({ name: 'Lambda.ResourceNotFoundException' });
  });
});

describe('state machine: Athena through the aws-sdk integration', () => {
  /** Start, then Get, as the ASL's loop does (without the Wait and the Choice). */
  const definition = {
    StartAt: 'Start',
    States: {
      Start: {
        Type: 'Task',
        Resource: 'arn:aws:states:::aws-sdk:athena:startQueryExecution',
        Parameters: { 'QueryString.$': '$.sql', WorkGroup: 'wg', QueryExecutionContext: { Database: 'db' } },
        ResultPath: '$.started',
        Next: 'Get',
      },
      Get: {
        Type: 'Task',
        Resource: 'arn:aws:states:::aws-sdk:athena:getQueryExecution',
        Parameters: { 'QueryExecutionId.$': '$.id' },
        End: true,
      },
    },
  } as unknown as StateMachineDefinition;

  it('fails GetQueryExecution of an unknown id with Athena.InvalidRequestException', async () => {
    const outcome = await execute(
      definition,
      { sql: 'SELECT 1', id: 'no-such-query' },
      {
        name: 'athena-1',
        services: services(),
      },
    );

    expect(outcome).toMatchObject({ status: 'FAILED', error: 'Athena.InvalidRequestException' });
    expect(outcome.cause).toContain('no-such-query');
  });

  it("returns GetQueryExecution's response shape", async () => {
    const athena = new LocalAthena({ run: async () => {} });
    const { QueryExecutionId } = await athena.startQueryExecution({
      QueryString: 'CREATE TABLE t (id bigint)',
      WorkGroup: 'wg',
      QueryExecutionContext: { Database: 'db' },
    });
    await athena.idle();

    const outcome = await execute(
      definition,
      { sql: 'SELECT 1', id: QueryExecutionId },
      {
        name: 'athena-2',
        services: services({ athena }),
      },
    );

    expect(outcome.output).toEqual({
      QueryExecution: {
        QueryExecutionId,
        Query: 'CREATE TABLE t (id bigint)',
        StatementType: 'DDL',
        WorkGroup: 'wg',
        QueryExecutionContext: { Database: 'db' },
        Status: {
          State: 'SUCCEEDED',
          SubmissionDateTime: expect.any(String),
          CompletionDateTime: expect.any(String),
        },
      },
    });
  });

  it('has no athena .sync integration any more (the ASL does not use it; LocalStack has none)', async () => {
    const sync = {
      StartAt: 'Q',
      States: { Q: { Type: 'Task', Resource: 'arn:aws:states:::athena:startQueryExecution.sync', End: true } },
    } as unknown as StateMachineDefinition;

    await expect(execute(sync, {}, { name: 'athena-3', services: services() })).rejects.toThrow(
      'state "Q": the resource "arn:aws:states:::athena:startQueryExecution.sync" has no local implementation',
    );
  });
});

describe('state machine: loading the definition', () => {
  it('substitutes every placeholder of the real ASL file', () => {
    const definition = loadDefinition(join(import.meta.dirname, '../../state-machines/pipeline.asl.json'));

    expect(JSON.stringify(definition.States)).not.toContain('${');
    expect(JSON.stringify(definition.States)).toContain(LOCAL_PLACEHOLDERS.WorkFunctionArn);
  });

  it("has a local value for every placeholder of the catalog, the handlers' from their local names", () => {
    expect(Object.keys(LOCAL_PLACEHOLDERS).sort()).toEqual([...ALL_PLACEHOLDERS].sort());
    for (const handler of Object.values(HANDLERS)) {
      expect(LOCAL_PLACEHOLDERS[handler.placeholder]).toBe(
        `arn:aws:lambda:us-east-1:000000000000:function:${handler.localName}`,
      );
    }
    expect(LOCAL_PLACEHOLDERS).toMatchObject({
      WorkingBucketName: 'sluice-working',
      ChildExecutionType: 'EXPRESS',
      AthenaWorkGroup: 'sluice',
      GlueDatabase: 'sluice',
    });
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
