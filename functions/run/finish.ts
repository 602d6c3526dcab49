/**
 * Finish: the run has loaded. Mark its inputs loaded (so later runs skip them),
 * record the run, note that the DDL ran, and clean staging. Every step is idempotent,
 * and S3 requests run with bounded parallelism: a run of 100,000 inputs writes 100,000
 * ledger markers.
 */
import type { Config } from '../config.ts';
import type { RunRecord, RunState, VerifyResult } from '../contracts.ts';
import { markLoaded, unmarkLoaded, type VerifiedInputs, verifiedInputsKey } from '../ledger/ledger.ts';
import { recordAppliedTables } from '../pipeline/applied-tables.ts';
import type { Pipeline } from '../pipeline/definition.ts';
import type { RunInputs } from '../planning/planner.ts';
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

/**
 * The execution's output: the run record without its input keys. The output of a state is
 * capped at 256 KiB (an uncatchable States.DataLimitExceeded past it), and a scheduled run may
 * have 100,000 inputs; the keys stay in the record in S3.
 */
export type FinishOutput = Omit<RunRecord, 'inputKeys'>;

export async function finish(run: FinishedRun, deps: FinishDeps): Promise<FinishOutput> {
  const p = runPipeline(run, deps.pipelines);
  const { store, config } = deps;
  const stoppedAt = deps.now().toISOString();
  // What Verify decided this run loads (not the objects it found superseded, deleted or partly
  // failed: they stay unmarked) and removes; a state from before verified.json marks every input.
  const verified = await store.getJson<VerifiedInputs>(config.workingBucket, verifiedInputsKey(p.name, run.runId));
  const inputs =
    verified?.loaded ??
    (await store.getJson<RunInputs>(config.workingBucket, layout.runInputs(p.name, run.runId))) ??
    [];
  await markLoaded(store, config.workingBucket, p.name, inputs, run.runId, stoppedAt);
  await unmarkLoaded(store, config.workingBucket, p.name, verified?.removed ?? []);
  const record: RunRecord = {
    id: run.runId,
    pipeline: p.name,
    trigger: run.trigger,
    status: 'SUCCEEDED',
    startedAt: run.startedAt,
    stoppedAt,
    inputKeys: inputs.map((o) => o.key),
    ...(run.redriveOf ? { redriveOf: run.redriveOf } : {}),
    ...run.verify.summary,
  };
  await Promise.all([
    store.putJson(config.workingBucket, layout.setupMarker(p.name, run.setupHash), { runId: run.runId }),
    // Only a run whose setup ran changed the tables (Plan sends no setup when the shapes are recorded already).
    ...(run.setup.length > 0 ? [recordAppliedTables(store, config.workingBucket, p)] : []),
    store.putJson(config.workingBucket, layout.runRecord(p.name, run.runId), record),
    // Staging is only needed until the MERGE has committed; rejects stay in the run's folder.
    store.deletePrefix(config.workingBucket, layout.stagingRun(p.name, run.runId)),
    store.deletePrefix(config.workingBucket, layout.rejectsRun(p.name, run.runId)),
  ]);
  const { inputKeys: _keys, ...output } = record;
  return output;
}
