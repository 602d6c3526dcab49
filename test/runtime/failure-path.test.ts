/**
 * The ASL's failure path, run from the real `pipeline.asl.json`: an error caught without a
 * Cause (a Fail state that sets none, some States.* errors) must still be recorded, notified
 * and end the execution with its own error name. Reading `$.error.Cause` directly would fail
 * the failure path itself with States.Runtime, which nothing catches on AWS: no record, no
 * notification.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HANDLERS } from '../../functions/catalog.ts';
import { execute, type LocalServices, loadDefinition } from '../../runtime/state-machine.ts';

const ASL = join(import.meta.dirname, '../../state-machines/pipeline.asl.json');

/**
 * The real definition, with Plan replaced by what its Catch (`ResultPath: $.error`) hands on when
 * AWS reports an error without a Cause. (aws-local-stepfunctions would invent a Cause for a Fail
 * state without one, so the error is put in place by a Pass state instead.)
 */
function definitionFailingWithoutCause() {
  const definition = loadDefinition(ASL) as unknown as { States: Record<string, Record<string, unknown>> };
  const [caught] = (definition.States.Plan as { Catch: { Next: string; ResultPath: string }[] }).Catch;
  // A Choice keeps the states after Plan reachable, as the interpreter requires.
  definition.States.Plan = {
    Type: 'Choice',
    Choices: [{ Variable: '$.neverSet', IsPresent: true, Next: 'HasChunks' }],
    Default: 'CaughtWithoutCause',
  };
  definition.States.CaughtWithoutCause = {
    Type: 'Pass',
    Result: { Error: 'Sluice.Boom' },
    ResultPath: caught?.ResultPath,
    Next: caught?.Next,
  };
  return definition as unknown as ReturnType<typeof loadDefinition>;
}

/** Services with only a RecordFailure function (`recordFailure`) and SNS; any other call fails the test. */
function failureServices(recordFailure: (payload: unknown) => Promise<unknown>) {
  const published: string[] = [];
  const noQuery = async (): Promise<never> => {
    throw new Error('no query expected');
  };
  const services: LocalServices = {
    invokeLambda: async (functionName, payload) => {
      if (functionName.endsWith(`:${HANDLERS.recordFailure.localName}`)) return recordFailure(payload);
      throw new Error(`unexpected call to ${functionName}`);
    },
    athena: { startQueryExecution: noQuery, getQueryExecution: noQuery, stopQueryExecution: async () => ({}) },
    publish: async (message) => void published.push(String(message.Message)),
    getObject: async () => '[]',
    putObject: async () => {},
  };
  return { services, published };
}

describe('the failure path of the ASL', () => {
  it('records, notifies and fails with the original error when the caught error has no Cause', async () => {
    const recorded: unknown[] = [];
    const { services, published } = failureServices(async (payload) => {
      recorded.push(payload);
      return { error: { message: 'the plain message RecordFailure wrote' } };
    });

    const outcome = await execute(
      definitionFailingWithoutCause(),
      { pipeline: 'access-logs', trigger: 'schedule' },
      { name: 'no-cause-1', services },
    );

    expect(outcome).toMatchObject({ status: 'FAILED', error: 'Sluice.Boom' });
    expect(outcome.cause).toMatch(/reported no cause/);
    expect(recorded).toHaveLength(1);
    expect(recorded[0]).toMatchObject({ error: { Error: 'Sluice.Boom', Cause: expect.stringMatching(/no cause/) } });
    expect(published).toEqual(['Sluice run no-cause-1 failed (Sluice.Boom): the plain message RecordFailure wrote']);
  });

  it('still notifies, with the cause as caught, when RecordFailure itself fails', async () => {
    const { services, published } = failureServices(async () => {
      throw new Error('the working bucket is unreachable');
    });

    const outcome = await execute(
      definitionFailingWithoutCause(),
      { pipeline: 'access-logs', trigger: 'schedule' },
      { name: 'no-record-1', services },
    );

    expect(outcome).toMatchObject({ status: 'FAILED', error: 'Sluice.Boom' });
    expect(published).toEqual([expect.stringMatching(/^Sluice run no-record-1 failed \(Sluice\.Boom\): .*no cause/)]);
  });
});
