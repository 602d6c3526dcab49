/**
 * The embedded stack in the test's own process (S3 API on a free port, the ASL file, the real
 * handlers, the DuckDB warehouse), for end-to-end tests that need many objects or chunks.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Embedded, startEmbedded } from '../../runtime/dev.ts';
import type { ExecutionRecord } from '../../runtime/executions.ts';
import { uploadFile } from '../../runtime/upload.ts';
import { tempDir } from './temp.ts';

const REPO_ROOT = join(import.meta.dirname, '../..');

export const newStackDir = () => tempDir('e2e-');

export interface TestStack {
  readonly dir: string;
  readonly embedded: Embedded;
  /** Uploads a file under the key and waits for the run its object event starts. */
  upload(key: string, body: string | Buffer): Promise<ExecutionRecord>;
  /** Rows of a warehouse query. */
  query(sql: string): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

/**
 * Starts the stack on `dir` (default: a new temporary folder, removed by `close`), with the
 * pipelines, ASL file and handlers of `repoRoot` (default: this repository).
 */
export async function startTestStack(dir = newStackDir(), repoRoot = REPO_ROOT): Promise<TestStack> {
  const runs = new Map<string, Promise<ExecutionRecord>>();
  const embedded = await startEmbedded({
    dir,
    repoRoot,
    port: 0,
    log: () => {},
    onExecution: (event, execution) => runs.set(event.key, execution),
  });
  return {
    dir,
    embedded,
    async upload(key, body) {
      const file = join(dir, 'upload.tmp');
      writeFileSync(file, body);
      runs.delete(key);
      await uploadFile(embedded.runtime.s3, 'sluice-input', key, file);
      for (let i = 0; i < 200 && !runs.has(key); i++) await new Promise((r) => setTimeout(r, 50));
      const run = runs.get(key);
      if (!run) throw new Error(`no run started for ${key}`);
      return run;
    },
    query: (sql) => embedded.runtime.warehouse.query(sql),
    async close() {
      await embedded.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The rows of the three tables, ordered, to compare before and after a run. */
export async function snapshot(stack: TestStack): Promise<Record<string, unknown>> {
  return {
    access_logs: await stack.query(
      'SELECT source_key, source_version, source_offset, event_time, path FROM access_logs ORDER BY source_key, source_offset',
    ),
    access_logs_rejects: await stack.query(
      'SELECT source_key, source_version, line_number, reason FROM access_logs_rejects ORDER BY source_key, line_number',
    ),
    daily_traffic: await stack.query('SELECT * FROM daily_traffic ORDER BY day, path'),
  };
}
