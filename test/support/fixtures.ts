import { join } from 'node:path';
import type { Config } from '../../functions/config.ts';
import { loadPipelines, type Pipeline } from '../../functions/pipeline/definition.ts';
import { tempDir } from './temp.ts';

export { HEADER } from '../../demo/generate.ts';

export const pipelines = loadPipelines(join(import.meta.dirname, '../../pipelines'));
export const accessLogs = pipelines.get('access-logs') as Pipeline;

export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    inputBucket: 'sluice-input',
    workingBucket: 'sluice-working',
    warehouseBucket: 'sluice-warehouse',
    pipelinesDir: join(import.meta.dirname, '../../pipelines'),
    tmpDir: tempDir('test-'),
    chunkSizeOverride: undefined,
    ...overrides,
  };
}

/** One access-log row; fields can be overridden. */
export function logRow(i: number, fields: Partial<Record<string, string>> = {}): string {
  const day = String(1 + (i % 3)).padStart(2, '0');
  const row = {
    event_time: `2024-03-${day}T${String(i % 24).padStart(2, '0')}:15:00Z`,
    user_id: `u${i % 17}`,
    session_id: `s${i}`,
    method: i % 5 === 0 ? 'POST' : 'GET',
    path: `/p/${i % 4}`,
    status: String(i % 11 === 0 ? 503 : 200),
    bytes_sent: String(1000 + i),
    latency_ms: (i / 7).toFixed(3),
    user_agent: i % 2 ? '"Mozilla/5.0 (X11, Linux)"' : 'curl/8.5',
    country: ['KR', 'US', 'DE'][i % 3] as string,
    ...fields,
  };
  return Object.values(row).join(',');
}
