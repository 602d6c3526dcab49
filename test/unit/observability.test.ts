import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Chunk } from '../../functions/contracts.ts';
import { chunkMeasures, METRICS, observe, type Telemetry } from '../../functions/observability.ts';

/** Telemetry as Lambda builds it (service = the stack), and the JSON lines it writes. */
function lambdaTelemetry(): { telemetry: Telemetry; lines: () => Record<string, unknown>[] } {
  vi.stubEnv('POWERTOOLS_DEV', '');
  vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'false');
  const written: string[] = [];
  // Powertools writes ERROR and WARN lines to stderr, the others (and EMF) to stdout.
  for (const stream of [process.stdout, process.stderr]) {
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
  }
  const telemetry = {
    logger: new Logger({ serviceName: 'SluiceStack' }),
    metrics: new Metrics({ namespace: METRICS.namespace, serviceName: 'SluiceStack' }),
  };
  const lines = () =>
    written
      .join('')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { telemetry, lines };
}

const chunk: Chunk = {
  runId: 'run-1',
  pipeline: 'access-logs',
  index: 7,
  parts: [{ key: 'a.csv', version: 'e', size: 5000, start: 1000, end: 3000, compression: 'none' }],
};
const summary = { index: 7, rowsRead: 100, rowsStaged: 90, rowsRejected: 10 };

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

describe('observe (Lambda only)', () => {
  it('writes JSON log lines with the run id, pipeline and chunk index, and the chunk metrics as one EMF line', async () => {
    const { telemetry, lines } = lambdaTelemetry();
    const work = observe(telemetry, { step: 'work', measure: chunkMeasures }, async () => summary);

    await expect(work(chunk, { awsRequestId: 'req-1' })).resolves.toEqual(summary);

    const [log, emf] = lines();
    expect(log).toMatchObject({
      level: 'INFO',
      message: 'work done',
      service: 'SluiceStack',
      step: 'work',
      runId: 'run-1',
      pipeline: 'access-logs',
      chunk: 7,
      requestId: 'req-1',
    });
    expect(emf).toMatchObject({
      _aws: {
        CloudWatchMetrics: [
          {
            Namespace: 'Sluice',
            Dimensions: [['service', 'pipeline']],
            Metrics: expect.arrayContaining([
              { Name: 'RowsRead', Unit: 'Count' },
              { Name: 'BytesRead', Unit: 'Bytes' },
              { Name: 'ChunkDuration', Unit: 'Milliseconds' },
            ]),
          },
        ],
      },
      service: 'SluiceStack',
      pipeline: 'access-logs',
      RowsRead: 100,
      RowsStaged: 90,
      RowsRejected: 10,
      BytesRead: 2000,
    });
  });

  it('logs a failure with its error and the run keys, and rethrows it unchanged', async () => {
    const { telemetry, lines } = lambdaTelemetry();
    const error = Object.assign(new Error('line 3: not a timestamp'), { name: 'Sluice.WorkerError' });
    const work = observe(telemetry, { step: 'work', measure: chunkMeasures }, async () => {
      throw error;
    });

    await expect(work(chunk)).rejects.toBe(error);

    expect(lines()).toEqual([
      expect.objectContaining({
        level: 'ERROR',
        message: 'work failed',
        runId: 'run-1',
        chunk: 7,
        error: expect.objectContaining({ name: 'Sluice.WorkerError', message: 'line 3: not a timestamp' }),
      }),
    ]);
  });

  it('counts a reported failure per pipeline and for the whole stack', async () => {
    const { telemetry, lines } = lambdaTelemetry();
    const record = observe(
      telemetry,
      {
        step: 'record-failure',
        measure: () => [{ name: METRICS.runsReported, unit: 'Count', value: 1, stackWide: true }],
      },
      async () => ({}),
    );

    await record({ run: { pipeline: 'access-logs' }, runId: 'run-2' });

    const emf = lines().find((line) => '_aws' in line);
    expect(emf).toMatchObject({
      _aws: { CloudWatchMetrics: [{ Dimensions: [['service', 'pipeline'], ['service']] }] },
      pipeline: 'access-logs',
      FailedRunsReported: 1,
    });
    expect(lines()[0]).toMatchObject({ runId: 'run-2', pipeline: 'access-logs' });
  });

  it('leaves the handler as it is without telemetry (the embedded runtime, tests): nothing is printed', async () => {
    const out = vi.spyOn(process.stdout, 'write');
    const err = vi.spyOn(process.stderr, 'write');
    const handler = async () => summary;

    expect(observe(undefined, { step: 'work', measure: chunkMeasures }, handler)).toBe(handler);
    await handler();
    expect(out).not.toHaveBeenCalled();
    expect(err).not.toHaveBeenCalled();
  });
});
