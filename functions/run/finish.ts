/**
 * Finish: the run has loaded. Mark its inputs loaded (so later runs skip them),
 * record the run, note that the DDL ran, and clean staging.
 */
import type { Config } from '../config.ts';
import type { RunRecord, RunState, VerifyResult } from '../contracts.ts';
import type { Pipeline } from '../pipeline/definition.ts';
import type { LedgerEntry, RunInputs } from '../planning/planner.ts';
import { layout } from '../storage/layout.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { runPipeline } from './run-state.ts';

export interface FinishDeps {
  readonly store: ObjectStore;
  readonly config: Config;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
  readonly now: () => Date;
}

export type FinishedRun = RunState & { readonly verify: VerifyResult };

export async function finish(run: FinishedRun, deps: FinishDeps): Promise<RunRecord> {
  const p = runPipeline(run, deps.pipelines);
  const { store, config } = deps;
  const stoppedAt = deps.now().toISOString();
  const inputs =
    (await store.getJson<RunInputs>(config.workingBucket, `${layout.runFolder(p.name, run.runId)}inputs.json`)) ?? [];
  for (const o of inputs) {
    const entry: LedgerEntry = { key: o.key, version: o.version, runId: run.runId, loadedAt: stoppedAt };
    await store.putJson(config.workingBucket, layout.ledger(p.name, o.key), entry);
  }
  await store.putJson(config.workingBucket, layout.setupMarker(p.name, run.setupHash), { runId: run.runId });
  const record: RunRecord = {
    id: run.runId,
    pipeline: p.name,
    trigger: run.trigger,
    status: 'SUCCEEDED',
    startedAt: run.startedAt,
    stoppedAt,
    inputKeys: inputs.map((o) => o.key),
    ...run.verify.summary,
  };
  await store.putJson(config.workingBucket, layout.runRecord(p.name, run.runId), record);
  // Staging is only needed until the MERGE has committed; rejects stay in the run's folder.
  await store.deletePrefix(config.workingBucket, layout.stagingRun(p.name, run.runId));
  await store.deletePrefix(config.workingBucket, layout.rejectsRun(p.name, run.runId));
  return record;
}
