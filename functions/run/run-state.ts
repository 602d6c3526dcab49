import type { RunState } from '../contracts.ts';
import { RequestError } from '../errors.ts';
import type { Pipeline } from '../pipeline/definition.ts';
import { assertRunId } from '../storage/layout.ts';

/** The pipeline a run state names, after checking the state's run id. */
export function runPipeline(run: RunState, pipelines: ReadonlyMap<string, Pipeline>): Pipeline {
  const p = run && typeof run.pipeline === 'string' ? pipelines.get(run.pipeline) : undefined;
  if (!p) throw new RequestError(`the run state names no known pipeline: ${JSON.stringify(run?.pipeline)}`);
  assertRunId(run.runId);
  return p;
}
