/**
 * How Sluice redrives a failed run, on every target: a new execution, named after the failed
 * one, with its input and `redriveOf`. The ledger (loaded object versions) and the loads keyed
 * on lineage make it add nothing twice; Plan plans again what the failed run did not load.
 *
 * Not Step Functions' RedriveExecution: LocalStack answers it with HTTP 501
 * (https://github.com/orgs/localstack/discussions/63), and the state machine catches every
 * failure to record and notify it, so the unsuccessful step of a failed run is the terminal Fail
 * state; "When you redrive an execution, it continues the failed execution from the unsuccessful
 * step" (https://docs.aws.amazon.com/step-functions/latest/dg/redrive-executions.html), which
 * would only fail again. The embedded runtime still serves RedriveExecution as AWS does.
 */

/** Execution names: 1 to 80 of A-Z, a-z, 0-9, `-` and `_`. */
const MAX_NAME = 80;

/** The name of the `attempt`th redrive of `run`: `<run>-redrive-<attempt>`, the run's name cut to fit 80 characters. */
export function redriveExecutionName(run: string, attempt: number): string {
  const base = run.replace(/-redrive-\d+$/, '');
  const suffix = `-redrive-${attempt}`;
  return `${base.slice(0, MAX_NAME - suffix.length)}${suffix}`;
}

/** The input of a redrive: the failed run's input, with `redriveOf` naming the run it continues (the first one). */
export function redriveInput(input: unknown, run: string): Record<string, unknown> {
  const fields = typeof input === 'object' && input !== null && !Array.isArray(input) ? input : {};
  const original = (fields as { redriveOf?: unknown }).redriveOf;
  return { ...fields, redriveOf: typeof original === 'string' ? original : run };
}
