/**
 * `npm run bench:planning`: the real Plan handler (functions/handlers/plan.ts, with the
 * dependencies the embedded runtime gives it) plans a scheduled run of `access-logs` over
 * `--objects` small CSV objects (default 100,000) under the pipeline's prefix, through the S3
 * API of the embedded S3 server (`runtime/s3-server.ts`, HTTP on 127.0.0.1): one listing of
 * the prefix, the ledger's listings, the bin-packing and the manifest written back. Objects read
 * whole have their header checked by the worker that reads them, so Plan sends no request per
 * object. Target: <= 10 s.
 *
 * The objects are written once, straight into the server's folder by its own store (not timed),
 * and kept in `.bench/planning-<n>/` for the next runs. Prints the planning time (median, min,
 * max of `--runs`, default 3) and where it went (time spent in each kind of S3 call, overlapping).
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { PlanEvent, RunState } from '../functions/contracts.ts';
import { createHandler } from '../functions/handlers/plan.ts';
import { splitIntoChunks } from '../functions/planning/planner.ts';
import { mapLimit } from '../functions/storage/concurrency.ts';
import type { ObjectStore } from '../functions/storage/object-store.ts';
import { localHandlerDeps } from '../runtime/environment.ts';
import { LOCAL_BUCKETS, OBJECTS_FOLDER, startS3Server, VERSIONED_BUCKETS } from '../runtime/s3-server.ts';
import { ObjectStore as EmbeddedStore } from '../runtime/s3-store.ts';
import { benchDir, median, report, root, spread } from './report.ts';

const { values } = parseArgs({
  options: {
    objects: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '3' },
    'no-append': { type: 'boolean', default: false },
  },
});
const TARGET_SECONDS = 10;
const HEADER = 'event_time,user_id,session_id,method,path,status,bytes_sent,latency_ms,user_agent,country';

/** Writes the objects through the embedded S3's own store (what a PUT does, without HTTP), once. */
async function populate(dir: string, count: number): Promise<void> {
  const done = join(dir, 'populated');
  if (existsSync(done)) return;
  rmSync(dir, { recursive: true, force: true });
  console.log(`writing ${count} objects into ${dir} (once) ...`);
  const store = new EmbeddedStore({ root: join(dir, OBJECTS_FOLDER), versioned: VERSIONED_BUCKETS });
  for (const bucket of Object.values(LOCAL_BUCKETS)) await store.putBucket(bucket);
  const indexes = Array.from({ length: count }, (_, i) => i);
  await mapLimit(indexes, 32, async (i) => {
    const second = String(i % 60).padStart(2, '0');
    const body = `${HEADER}\n2024-03-01T00:00:${second}Z,u${i},s${i},GET,/p/${i % 97},200,${i % 5000},12.5,bench,DE\n`;
    await store.putObject({
      bucket: LOCAL_BUCKETS.input,
      key: `access-logs/day=2024-03-01/part-${String(i).padStart(6, '0')}.csv`,
      content: Buffer.from(body),
      metadata: {},
    });
  });
  writeFileSync(done, `${count}\n`);
}

/** The store with the time spent in each method recorded (calls overlap: a span is first start to last end). */
function timedStore(store: ObjectStore, spans: Map<string, { calls: number; first: number; last: number }>) {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        const started = performance.now();
        try {
          return await value.apply(target, args);
        } finally {
          const span = spans.get(String(property)) ?? { calls: 0, first: started, last: started };
          span.calls++;
          span.last = Math.max(span.last, performance.now());
          spans.set(String(property), span);
        }
      };
    },
  });
}

async function main(): Promise<void> {
  const count = Number(values.objects);
  const runs = Number(values.runs);
  if (!(count >= 1) || !(runs >= 1)) throw new Error('--objects and --runs must be positive numbers');
  const dir = join(benchDir, `planning-${count}`);
  mkdirSync(benchDir, { recursive: true });
  await populate(dir, count);
  const server = await startS3Server({ dir, port: 0 });
  const seconds: number[] = [];
  const listing: number[] = [];
  let last: { state: RunState; spans: Map<string, { calls: number; first: number; last: number }> } | undefined;
  try {
    for (let run = 1; run <= runs; run++) {
      // Fresh dependencies each run, as a cold Plan Lambda has.
      const deps = localHandlerDeps(server.endpoint, { dir, repoRoot: root }, {})();
      const spans = new Map<string, { calls: number; first: number; last: number }>();
      const plan = createHandler({ ...deps, store: timedStore(deps.store, spans) });
      const event: PlanEvent = {
        request: { pipeline: 'access-logs', trigger: 'schedule' },
        runId: `bench-planning-${run}-${Date.now()}`,
        startedAt: new Date().toISOString(),
      };
      const started = performance.now();
      const state = await plan(event);
      seconds.push((performance.now() - started) / 1000);
      last = { state, spans };
      // The listing and bin-packing alone: what Plan costs beyond them is the ledger and the manifest.
      const pipeline = deps.pipelines.get('access-logs');
      if (!pipeline) throw new Error('no access-logs pipeline in pipelines/');
      const listStarted = performance.now();
      const listed = await deps.store.list(LOCAL_BUCKETS.input, pipeline.input.prefix);
      splitIntoChunks(listed, pipeline, pipeline.processing.chunkSize, event.runId);
      listing.push((performance.now() - listStarted) / 1000);
      console.log(
        `run ${run} planned ${state.inputs} objects into ${state.chunks} chunks in ${(seconds.at(-1) as number).toFixed(2)} s; listing and bin-packing alone ${(listing.at(-1) as number).toFixed(2)} s`,
      );
    }
  } finally {
    await server.close();
  }
  const calls = [...(last?.spans ?? new Map()).entries()]
    .map(([method, span]) => `${method} ${span.calls} calls over ${((span.last - span.first) / 1000).toFixed(2)} s`)
    .join('; ');
  const lines = [
    `${count} objects of ${last?.state.bytes ? Math.round(last.state.bytes / count) : 0} bytes under s3://${LOCAL_BUCKETS.input}/access-logs/, a scheduled run of access-logs planned by the Plan handler through the S3 API of the embedded S3 server (HTTP, 127.0.0.1); ${runs} runs`,
    `time to plan: ${spread(seconds)} (target <= ${TARGET_SECONDS} s): ${median(seconds) <= TARGET_SECONDS ? 'met' : 'not met'}`,
    `the listing and bin-packing alone (ListObjectsV2 pages, splitIntoChunks): ${spread(listing)}`,
    `${last?.state.chunks ?? 0} chunks; S3 calls of the last run: ${calls}`,
  ];
  report('bench:planning', lines, !values['no-append']);
}

await main();
