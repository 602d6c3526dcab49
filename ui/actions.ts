/**
 * The UI's actions, through the same StartExecution calls and inputs as the CLI (cli/commands.ts):
 * the scheduled run (the schedule's input), a redrive (`<run>-redrive-<n>` with redriveOf), a
 * backfill (one run per window of at most 7 days, trigger backfill). They start runs and return
 * their ids; the run list shows them as they go.
 */

import { executionNameOf, RedriveRefusedError, startExecution, startRedrive } from '../cli/client.ts';
import type { Pipeline } from '../functions/pipeline/definition.ts';
import { newExecutionName } from '../runtime/executions.ts';
import { RUN_ID, UiRequestError, type UiSource } from './data.ts';

function pipelineOf(source: UiSource, name: unknown): Pipeline {
  const pipeline = typeof name === 'string' ? source.pipelines.get(name) : undefined;
  if (!pipeline) {
    throw new UiRequestError(
      `no pipeline named "${String(name)}"; the pipelines are ${[...source.pipelines.keys()].join(', ') || '(none)'}`,
    );
  }
  return pipeline;
}

/** Starts the run the pipeline's schedule would start (infra/triggers.ts sends this input). */
export async function startScheduled(source: UiSource, name: unknown): Promise<{ runs: string[] }> {
  const pipeline = pipelineOf(source, name);
  const input = { pipeline: pipeline.name, trigger: 'schedule' };
  const arn = await startExecution(source.session, input, newExecutionName(pipeline.name));
  return { runs: [executionNameOf(arn)] };
}

/** Continues a failed run as `sluice redrive` does: the next free `<run>-redrive-<n>`. */
export async function redrive(source: UiSource, id: unknown): Promise<{ runs: string[] }> {
  if (typeof id !== 'string' || !RUN_ID.test(id)) throw new UiRequestError(`"${String(id)}" is not a run id`);
  try {
    return { runs: [(await startRedrive(source.session, id)).name] };
  } catch (error) {
    if (error instanceof RedriveRefusedError) {
      throw new UiRequestError(error.message, error.reason === 'unknown' ? 404 : 400);
    }
    throw error;
  }
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;
/** Days per backfill run: the CLI's default (`--days-per-run 7`). */
const DAYS_PER_RUN = 7;
/** At most this many days in one backfill from the UI: a year. */
const MAX_DAYS = 366;

function day(value: unknown, field: string): string {
  const text = typeof value === 'string' ? value : '';
  const parsed = new Date(`${text}T00:00:00Z`);
  if (!DAY.test(text) || Number.isNaN(parsed.getTime()) || parsed.toISOString().slice(0, 10) !== text) {
    throw new UiRequestError(`${field} "${String(value)}" is not a day (YYYY-MM-DD)`);
  }
  return text;
}

const addDays = (d: string, n: number) => {
  const date = new Date(`${d}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + n);
  return date.toISOString().slice(0, 10);
};

/** Re-derives (or with `reload`, reloads then re-derives) the days from..to, as `sluice backfill` does. */
export async function backfill(
  source: UiSource,
  body: { pipeline?: unknown; from?: unknown; to?: unknown; reload?: unknown },
): Promise<{ runs: string[] }> {
  const pipeline = pipelineOf(source, body.pipeline);
  const from = day(body.from, 'from');
  const to = day(body.to, 'to');
  if (from > to) throw new UiRequestError(`from ${from} is after to ${to}`);
  const span = (Date.parse(to) - Date.parse(from)) / 86_400_000 + 1;
  if (span > MAX_DAYS) throw new UiRequestError(`the window has ${span} days; at most ${MAX_DAYS} from the UI`);
  const runs: string[] = [];
  for (let start = from; start <= to; start = addDays(start, DAYS_PER_RUN)) {
    // ISO days sort as text: the earlier of the window's last day and `to`.
    const end = [addDays(start, DAYS_PER_RUN - 1), to].sort()[0] ?? to;
    const input = {
      pipeline: pipeline.name,
      trigger: 'backfill',
      from: start,
      to: end,
      ...(body.reload === true ? { reload: true } : {}),
    };
    runs.push(
      executionNameOf(await startExecution(source.session, input, newExecutionName(`${pipeline.name}-backfill`))),
    );
  }
  return { runs };
}
