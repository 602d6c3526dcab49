import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { StateMachineDefinition } from 'aws-local-stepfunctions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalAthena } from '../../runtime/athena.ts';
import { execute, type LocalServices } from '../../runtime/state-machine.ts';
import { startTestS3, type TestS3 } from './helpers.ts';

let t: TestS3;
beforeAll(async () => {
  t = await startTestS3();
  const items = Array.from({ length: 10 }, (_, i) => ({ index: i, fail: i === 3 || i === 7 }));
  await t.s3.send(
    new PutObjectCommand({ Bucket: 'sluice-working', Key: 'manifests/m.json', Body: JSON.stringify(items) }),
  );
});
afterAll(() => t.close());

/** A Distributed Map over the manifest in S3, as in the pipeline's Process state. */
function definition(map: Record<string, unknown>): StateMachineDefinition {
  return {
    StartAt: 'Process',
    States: {
      Process: {
        Type: 'Map',
        ItemReader: {
          Resource: 'arn:aws:states:::s3:getObject',
          ReaderConfig: { InputType: 'JSON' },
          Parameters: { 'Bucket.$': '$.manifest.bucket', 'Key.$': '$.manifest.key' },
        },
        ItemProcessor: {
          ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'EXPRESS' },
          StartAt: 'Work',
          States: {
            Work: {
              Type: 'Task',
              Resource: 'arn:aws:states:::lambda:invoke',
              Parameters: { FunctionName: 'sluice-work', 'Payload.$': '$' },
              OutputPath: '$.Payload',
              End: true,
            },
          },
        },
        ResultPath: '$.results',
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Caught' }],
        Next: 'Done',
        ...map,
      },
      Done: { Type: 'Succeed' },
      Caught: { Type: 'Pass', End: true },
    },
  } as unknown as StateMachineDefinition;
}

function workers() {
  const stats = { running: 0, peak: 0, calls: 0 };
  const services: LocalServices = {
    invokeLambda: async (_fn, payload) => {
      const item = payload as { index: number; fail: boolean };
      stats.calls++;
      stats.running++;
      stats.peak = Math.max(stats.peak, stats.running);
      await new Promise((r) => setTimeout(r, 20));
      stats.running--;
      if (item.fail) throw Object.assign(new Error(`chunk ${item.index} is corrupt`), { name: 'Sluice.InputError' });
      return { index: item.index, rows: item.index * 10 };
    },
    athena: new LocalAthena({ run: async () => {} }),
    publish: async () => {},
    getObject: async (bucket, key) => {
      const out = await t.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return (await out.Body?.transformToString()) ?? '';
    },
    putObject: async (bucket, key, body) => {
      await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
  };
  return { stats, services };
}

const input = { manifest: { bucket: 'sluice-working', key: 'manifests/m.json' }, maxConcurrency: 3, tolerated: 20 };

describe('distributed map (supplied by the runtime)', () => {
  it('reads items with the ItemReader, honours MaxConcurrencyPath and returns child outputs in order', async () => {
    const { stats, services } = workers();

    const outcome = await execute(
      definition({ MaxConcurrencyPath: '$.maxConcurrency', ToleratedFailurePercentagePath: '$.tolerated' }),
      input,
      { name: 'map-1', services },
    );

    const results = (outcome.output as { results: { index?: number; Error?: string }[] }).results;
    expect(outcome.status).toBe('SUCCEEDED');
    expect(stats.peak).toBe(3);
    expect(results.map((r) => r.index ?? r.Error)).toEqual([
      0,
      1,
      2,
      'Sluice.InputError',
      4,
      5,
      6,
      'Sluice.InputError',
      8,
      9,
    ]);
  });

  it('fails with States.ExceedToleratedFailureThreshold above the threshold, naming the first failed item', async () => {
    const { services } = workers();

    const outcome = await execute(definition({ MaxConcurrency: 1, ToleratedFailurePercentage: 10 }), input, {
      name: 'map-2',
      services,
    });

    const error = (outcome.output as { error: { Error: string; Cause: string } }).error;
    expect(error.Error).toBe('States.ExceedToleratedFailureThreshold');
    expect(error.Cause).toContain('item 3: Sluice.InputError');
    expect(error.Cause).toContain('chunk 3 is corrupt');
  });

  it('fails on the first failure when no tolerance is set, and stops starting items', async () => {
    const { stats, services } = workers();

    const outcome = await execute(definition({ MaxConcurrency: 1 }), input, { name: 'map-3', services });

    expect((outcome.output as { error: { Error: string } }).error.Error).toBe('States.ExceedToleratedFailureThreshold');
    expect(stats.calls).toBe(4);
  });

  it('applies ToleratedFailureCount', async () => {
    const { services } = workers();

    const outcome = await execute(definition({ ToleratedFailureCount: 2 }), input, { name: 'map-4', services });

    expect(outcome.status).toBe('SUCCEEDED');
    expect((outcome.output as { error?: unknown }).error).toBeUndefined();
  });

  it('writes the results with a ResultWriter as AWS does: manifest.json, SUCCEEDED_0.json, FAILED_0.json', async () => {
    const { services } = workers();
    const writer = {
      ResultWriter: {
        Resource: 'arn:aws:states:::s3:putObject',
        Parameters: { Bucket: 'sluice-working', Prefix: 'map-results' },
      },
      Label: 'Chunks',
      ToleratedFailureCount: 2,
    };

    const outcome = await execute(definition(writer), input, { name: 'map-5', services });

    const output = (
      outcome.output as { results: { MapRunArn: string; ResultWriterDetails: { Bucket: string; Key: string } } }
    ).results;
    expect(outcome.status).toBe('SUCCEEDED');
    expect(Object.keys(output).sort()).toEqual(['MapRunArn', 'ResultWriterDetails']);
    const mapRunId = output.MapRunArn.split(':').pop() ?? '';
    expect(output.MapRunArn).toBe(`arn:aws:states:us-east-1:000000000000:mapRun:sluice-pipeline/Chunks:${mapRunId}`);
    expect(output.ResultWriterDetails).toEqual({
      Bucket: 'sluice-working',
      Key: `map-results/${mapRunId}/manifest.json`,
    });

    const read = async (key: string) => {
      const out = await t.s3.send(new GetObjectCommand({ Bucket: 'sluice-working', Key: key }));
      return JSON.parse((await out.Body?.transformToString()) ?? '');
    };
    const manifest = await read(output.ResultWriterDetails.Key);
    expect(manifest).toEqual({
      DestinationBucket: 'sluice-working',
      MapRunArn: output.MapRunArn,
      ResultFiles: {
        FAILED: [{ Key: `map-results/${mapRunId}/FAILED_0.json`, Size: expect.any(Number) }],
        PENDING: [],
        SUCCEEDED: [{ Key: `map-results/${mapRunId}/SUCCEEDED_0.json`, Size: expect.any(Number) }],
      },
    });
    const succeeded = await read(manifest.ResultFiles.SUCCEEDED[0].Key);
    const failed = await read(manifest.ResultFiles.FAILED[0].Key);
    expect(succeeded).toHaveLength(8);
    expect(succeeded[0]).toMatchObject({
      Status: 'SUCCEEDED',
      Input: JSON.stringify({ index: 0, fail: false }),
      InputDetails: { Included: true },
      Output: JSON.stringify({ index: 0, rows: 0 }),
      OutputDetails: { Included: true },
      ExecutionArn: expect.stringMatching(/^arn:aws:states:us-east-1:000000000000:execution:sluice-pipeline\/Chunks:/),
      StartDate: expect.any(String),
      StopDate: expect.any(String),
    });
    expect(failed.map((f: { Input: string; Error: string; Cause: string }) => [f.Input, f.Error])).toEqual([
      [JSON.stringify({ index: 3, fail: true }), 'Sluice.InputError'],
      [JSON.stringify({ index: 7, fail: true }), 'Sluice.InputError'],
    ]);
    expect(failed[0].Cause).toContain('chunk 3 is corrupt');
    expect(failed[0]).not.toHaveProperty('Output');
  });

  it('refuses a ResultWriter it cannot write, when the definition is loaded', async () => {
    const { services } = workers();
    const writer = { ResultWriter: { WriterConfig: { Transformation: 'FLATTEN', OutputType: 'JSON' } } };

    await expect(execute(definition(writer), input, { name: 'map-6', services })).rejects.toThrow(
      'state "Process": the embedded runtime supports a ResultWriter with Resource arn:aws:states:::s3:putObject',
    );
  });
});
