/**
 * Defect 5 of issue 6: with 100,000 objects under the prefix and 20 ms per S3 request,
 * Plan and Finish must end in under a minute. The store charges 20 ms of SIMULATED time
 * per request (requests in flight together overlap; a listing costs one request per
 * 1,000 keys, page after page), so the test measures request rounds, not this machine.
 * The steps share one bucket of 100,000 objects (it takes seconds to build) and run in order.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../functions/config.ts';
import type { RunState } from '../../functions/contracts.ts';
import { markLoaded } from '../../functions/ledger/ledger.ts';
import { plan } from '../../functions/planning/planner.ts';
import { type FinishedRun, finish } from '../../functions/run/finish.ts';
import { layout } from '../../functions/storage/layout.ts';
import type { ObjectInfo } from '../../functions/storage/object-store.ts';
import { HEADER, logRow, pipelines, testConfig } from '../support/fixtures.ts';
import { MemoryStore, SimulatedClock, TimedStore } from '../support/memory-store.ts';

const OBJECTS = 100_000;
const FRESH = 3_000;
const LATENCY_MS = 20;
const MINUTE_MS = 60_000;
const body = `${HEADER}\n${logRow(1)}\n`;
const keyOf = (i: number) => `access-logs/2024/${String(i).padStart(6, '0')}.csv`;

const scheduled = (runId: string) =>
  ({ request: { pipeline: 'access-logs', trigger: 'schedule' }, runId, startedAt: '2024-03-05T20:00:00Z' }) as const;

function finished(state: RunState, inputs: number): FinishedRun {
  const summary = {
    chunks: state.chunks,
    chunksFailed: 0,
    inputs,
    rowsRead: 0,
    rowsLoaded: 0,
    rowsRejected: 0,
    days: [],
  };
  return { ...state, verify: { statements: [], summary } };
}

describe('Plan and Finish at 100,000 objects and 20 ms per request', () => {
  const memory = new MemoryStore();
  let config: Config;
  let all: ObjectInfo[];
  /** A store whose requests cost 20 ms each on a fresh simulated clock. */
  const timed = () => {
    const clock = new SimulatedClock(LATENCY_MS);
    return { clock, store: new TimedStore(memory, clock) };
  };

  beforeAll(async () => {
    config = testConfig();
    for (let i = 0; i < OBJECTS; i++) memory.put(config.inputBucket, keyOf(i), body);
    all = await memory.list(config.inputBucket, 'access-logs/');
    // All but the first FRESH objects were loaded by earlier runs.
    await markLoaded(memory, config.workingBucket, 'access-logs', all.slice(FRESH), 'earlier', '2024-03-01T00:00:00Z');
  }, 60_000);

  it(`Plan over ${OBJECTS} objects, ${FRESH} of them new: listings only, no request per object`, async () => {
    const { clock, store } = timed();
    const readsBefore = memory.reads.length;
    const state = await plan(scheduled('night-1'), { store, config, pipelines });
    expect(state.inputs).toBe(FRESH);
    expect(clock.now).toBeLessThan(MINUTE_MS / 4);
    // Objects read whole have their header checked by the worker that reads them (test/unit/refused-inputs.test.ts).
    expect(memory.reads.slice(readsBefore)).toEqual([]);
  }, 30_000);

  it(`Finish of a run with ${OBJECTS} inputs marks them all in under a minute`, async () => {
    // A run that loaded every object (a first load, or a backfill): its inputs as Plan records them.
    const state = await plan(scheduled('backfill'), { store: memory, config, pipelines });
    await memory.putJson(config.workingBucket, layout.runInputs('access-logs', 'backfill'), all);
    const { clock, store } = timed();
    await finish(finished(state, OBJECTS), { store, config, pipelines, now: () => new Date('2024-03-05T20:30:00Z') });
    expect(clock.now).toBeLessThan(MINUTE_MS);
  }, 30_000);

  it(`Plan over ${OBJECTS} objects all loaded: a few seconds of requests, and nothing planned`, async () => {
    const { clock, store } = timed();
    const state = await plan(scheduled('night-2'), { store, config, pipelines });
    expect(state.inputs).toBe(0);
    expect(clock.now).toBeLessThan(MINUTE_MS / 4);
    // Listings, not a request per object.
    expect(store.requests).toBeLessThan(OBJECTS / 100);
  }, 30_000);

  it('a new version is planned again, and its Finish leaves one marker per object', async () => {
    const changed = all[0] as ObjectInfo;
    memory.put(config.inputBucket, changed.key, `${body}${logRow(2)}\n`);
    const state = await plan(scheduled('night-3'), { store: memory, config, pipelines });
    expect(state.inputs).toBe(1);
    await finish(finished(state, 1), { store: memory, config, pipelines, now: () => new Date() });
    expect(await memory.list(config.workingBucket, layout.ledgerPrefix('access-logs'))).toHaveLength(OBJECTS);
    expect((await plan(scheduled('night-4'), { store: memory, config, pipelines })).inputs).toBe(0);
  }, 30_000);
});
