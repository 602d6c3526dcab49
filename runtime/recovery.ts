/**
 * Crash recovery for `sluice dev` (issue 8): an execution left RUNNING by a runtime process that
 * died (killed, out of memory, the machine restarted) can never finish. When `sluice dev` starts,
 * it marks each such execution of its folder FAILED for good (error `Sluice.RuntimeExited`, as
 * listing already shows it) and at once starts its redrive: a new execution
 * `<run>-redrive-<n>` (the first free n) with the run's input and `redriveOf`, as `sluice redrive`
 * does (`functions/run/redrive.ts`); the ledger makes it add nothing twice. On AWS an execution
 * outlives its clients, so there is nothing to recover there.
 *
 * Executions whose input names no pipeline (started through the API with any JSON) are marked
 * FAILED only. Two runtimes recovering one folder at the same moment are not kept apart; `sluice
 * dev` refuses to start twice for one folder.
 */
import { redriveExecutionName, redriveInput } from '../functions/run/redrive.ts';
import { ExecutionExistsError, type ExecutionRecord } from './executions.ts';
import { endEvent, HistoryWriter } from './history.ts';
import type { LocalRuntime } from './local-runtime.ts';

/** The error listing gives an execution whose runtime process died (`ExecutionStore`). */
const RUNTIME_EXITED = 'Sluice.RuntimeExited';

/** The first `<run>-redrive-<n>` no execution has. */
function freeRedriveName(runtime: LocalRuntime, run: string): string {
  for (let attempt = 1; ; attempt++) {
    const name = redriveExecutionName(run, attempt);
    if (!runtime.executions.read(name)) return name;
  }
}

/**
 * Marks the executions of dead runtimes FAILED and starts their redrives; logs one line each.
 * Resolves with the redrives' final records (the promises of `startExecution`).
 */
export function recoverExecutions(runtime: LocalRuntime, log: (line: string) => void): Promise<ExecutionRecord>[] {
  const redrives: Promise<ExecutionRecord>[] = [];
  for (const record of runtime.executions.list()) {
    // `read` shows a dead runtime's RUNNING execution as FAILED with this error, still without a stop time.
    if (record.error !== RUNTIME_EXITED || record.stoppedAt !== null) continue;
    const failed: ExecutionRecord = { ...record, stoppedAt: new Date().toISOString() };
    runtime.executions.write(failed);
    const end = endEvent(failed);
    new HistoryWriter(runtime.executions.folder, record.id).add(end.type, end.details);
    const input = record.input as { pipeline?: unknown } | null;
    if (typeof input !== 'object' || input === null || typeof input.pipeline !== 'string') {
      log(`${record.id}: its runtime (process ${record.pid}) exited before it finished; marked FAILED`);
      continue;
    }
    for (;;) {
      const name = freeRedriveName(runtime, record.id);
      try {
        redrives.push(runtime.startExecution(redriveInput(record.input, record.id), { name }));
        log(
          `${record.id}: its runtime (process ${record.pid}) exited before it finished; marked FAILED and redriven as ${name}`,
        );
        break;
      } catch (error) {
        // Another process took the name meanwhile: the next one.
        if (!(error instanceof ExecutionExistsError)) throw error;
      }
    }
  }
  return redrives;
}
