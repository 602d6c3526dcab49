/**
 * Step Functions' 256 KiB limit, as AWS applies it: a state's input and output, a Distributed
 * Map child's input, and a Distributed Map's collected results without a ResultWriter. Each
 * ends the execution FAILED with States.DataLimitExceeded although the state has a Catch (and a
 * Retry) for States.ALL: AWS documents it as a terminal error States.ALL does not catch.
 */
import type { StateMachineDefinition } from 'aws-local-stepfunctions';
import { describe, expect, it } from 'vitest';
import { LocalAthena } from '../../runtime/athena.ts';
import { MAX_PAYLOAD_BYTES } from '../../runtime/data-limit.ts';
import { execute, type LocalServices } from '../../runtime/state-machine.ts';

/** Small fake functions: `echo` returns what it is given, `blob` a string of `size` bytes, `after` records it ran. */
function fakes(manifest: unknown[] = []) {
  const calls: string[] = [];
  const written: string[] = [];
  const services: LocalServices = {
    invokeLambda: async (functionName, payload) => {
      const name = functionName.split(':').pop() ?? '';
      calls.push(name);
      const event = payload as { size?: number; index?: number };
      if (name === 'blob') return { blob: 'y'.repeat(event.size ?? 0) };
      if (name === 'child') return { index: event.index, pad: 'z'.repeat(3000) };
      return { ran: name };
    },
    athena: new LocalAthena({ run: async () => {} }),
    publish: async () => {},
    getObject: async () => JSON.stringify(manifest),
    putObject: async (_bucket, key) => void written.push(key),
  };
  return { services, calls, written };
}

const catchAll = {
  Retry: [{ ErrorEquals: ['States.ALL'], IntervalSeconds: 1, MaxAttempts: 2 }],
  Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Caught' }],
};
const lambda = (name: string, payload: unknown) => ({
  Type: 'Task',
  Resource: 'arn:aws:states:::lambda:invoke',
  Parameters: { FunctionName: name, Payload: payload },
});
const machine = (states: Record<string, unknown>, startAt: string) =>
  ({
    StartAt: startAt,
    States: { ...states, Caught: { Type: 'Pass', End: true }, After: { ...lambda('after', {}), End: true } },
  }) as unknown as StateMachineDefinition;

const KB = 1024;

describe('States.DataLimitExceeded', () => {
  it("fails the execution when a Task's output (after ResultPath) passes 256 KiB, despite Catch and Retry", async () => {
    const { services, calls } = fakes();
    const definition = machine(
      {
        // The function's result (150 KB) is under the limit; the state's output, input + result, is not.
        Call: { ...lambda('blob', { size: 150 * KB }), ResultPath: '$.result', ...catchAll, Next: 'After' },
      },
      'Call',
    );

    const outcome = await execute(definition, { input: 'x'.repeat(150 * KB) }, { name: 'limit-1', services });

    expect(outcome).toMatchObject({ status: 'FAILED', error: 'States.DataLimitExceeded' });
    expect(outcome.cause).toContain('state "Call": its output');
    expect(outcome.cause).toContain(String(MAX_PAYLOAD_BYTES));
    // Not retried, not caught, and the next state never ran.
    expect(calls).toEqual(['blob']);
  });

  it("fails the execution on a Pass state's output too (every state is measured, not only Tasks)", async () => {
    const { services, calls } = fakes();
    const definition = machine(
      {
        Double: { Type: 'Pass', Parameters: { 'a.$': '$.blob', 'b.$': '$.blob' }, Next: 'Guarded' },
        Guarded: { ...lambda('guarded', {}), ...catchAll, Next: 'After' },
      },
      'Double',
    );

    const outcome = await execute(definition, { blob: 'x'.repeat(140 * KB) }, { name: 'limit-2', services });

    expect(outcome).toMatchObject({ status: 'FAILED', error: 'States.DataLimitExceeded' });
    expect(outcome.cause).toContain('state "Double": its output');
    expect(calls).toEqual([]);
  });

  it('fails the execution when a Lambda result passes 256 KiB (the connector output), even with ResultPath null', async () => {
    const { services, calls } = fakes();
    const definition = machine(
      { Call: { ...lambda('blob', { size: 300 * KB }), ResultPath: null, ...catchAll, Next: 'After' } },
      'Call',
    );

    const outcome = await execute(definition, {}, { name: 'limit-3', services });

    expect(outcome).toMatchObject({ status: 'FAILED', error: 'States.DataLimitExceeded' });
    expect(outcome.cause).toContain('state "Call": the output of its Resource');
    expect(calls).toEqual(['blob']);
  });

  it('leaves a state input and output of exactly 256 KiB alone, and fails one byte over', async () => {
    const { services } = fakes();
    const definition = {
      StartAt: 'Through',
      States: { Through: { Type: 'Pass', End: true } },
    } as unknown as StateMachineDefinition;
    // {"blob":"..."} is 11 bytes of JSON around the string; the limit counts UTF-8 bytes ('é' is 2).
    const exact = { blob: `${'x'.repeat(MAX_PAYLOAD_BYTES - 11 - 2)}é` };
    const over = { blob: `${'x'.repeat(MAX_PAYLOAD_BYTES - 11 - 1)}é` };

    const fits = await execute(definition, exact, { name: 'limit-4', services });
    const fails = await execute(definition, over, { name: 'limit-4b', services });

    expect(fits.status).toBe('SUCCEEDED');
    expect(fails).toMatchObject({ status: 'FAILED', error: 'States.DataLimitExceeded' });
    expect(fails.cause).toContain(`state "Through": its input is ${MAX_PAYLOAD_BYTES + 1} bytes`);
  });
});

describe('States.DataLimitExceeded in a Distributed Map', () => {
  const distributed = (extra: Record<string, unknown>) =>
    machine(
      {
        Process: {
          Type: 'Map',
          ItemReader: {
            Resource: 'arn:aws:states:::s3:getObject',
            ReaderConfig: { InputType: 'JSON' },
            Parameters: { Bucket: 'sluice-working', Key: 'manifest.json' },
          },
          ItemProcessor: {
            ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'EXPRESS' },
            StartAt: 'Child',
            States: { Child: { ...lambda('child', { 'index.$': '$.index' }), OutputPath: '$.Payload', End: true } },
          },
          ResultPath: null,
          ...catchAll,
          Next: 'After',
          ...extra,
        },
      },
      'Process',
    );

  it("fails the execution when a child's input (the item) passes 256 KiB", async () => {
    const manifest = [{ index: 0 }, { index: 1, parts: 'p'.repeat(300 * KB) }, { index: 2 }];
    const { services, calls } = fakes(manifest);

    const outcome = await execute(distributed({ MaxConcurrency: 1 }), {}, { name: 'limit-5', services });

    expect(outcome).toMatchObject({ status: 'FAILED', error: 'States.DataLimitExceeded' });
    expect(outcome.cause).toContain('the input of child 1');
    expect(calls).toEqual(['child']);
  });

  it('fails the execution when the collected child outputs pass 256 KiB without a ResultWriter (ResultPath null or not)', async () => {
    // 100 children of about 3 KB each: every child is small, their array is not.
    const manifest = Array.from({ length: 100 }, (_, index) => ({ index }));
    const { services, calls } = fakes(manifest);

    const outcome = await execute(distributed({}), {}, { name: 'limit-6', services });

    expect(outcome).toMatchObject({ status: 'FAILED', error: 'States.DataLimitExceeded' });
    expect(outcome.cause).toContain("the array of its 100 children's outputs");
    expect(calls.filter((c) => c === 'after')).toEqual([]);
  });

  it('succeeds with the same children when a ResultWriter takes their results to S3', async () => {
    const manifest = Array.from({ length: 100 }, (_, index) => ({ index }));
    const { services, calls, written } = fakes(manifest);
    const writer = {
      ResultWriter: {
        Resource: 'arn:aws:states:::s3:putObject',
        Parameters: { Bucket: 'sluice-working', Prefix: 'r' },
      },
    };

    const outcome = await execute(distributed(writer), {}, { name: 'limit-7', services });

    expect(outcome.status).toBe('SUCCEEDED');
    expect(calls.at(-1)).toBe('after');
    expect(written.map((k) => k.split('/').pop())).toEqual(['SUCCEEDED_0.json', 'manifest.json']);
  });
});
