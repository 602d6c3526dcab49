/**
 * What the CLI shows while it waits: for a run, its chunks done of the planned total, rows, MB/s
 * and the time left; for a backfill, its runs done. On a terminal (stderr is a TTY) one line redrawn
 * in place; otherwise plain timestamped lines, one per tenth of the work or per 30 s, so logs of
 * CI jobs stay short.
 *
 * A run's counts come from the APIs, so the display is the same on every target:
 * - the Distributed Map's run: ListMapRuns(executionArn), then DescribeMapRun's `itemCounts`
 *   (https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeMapRun.html);
 * - what the run planned (chunks, bytes): the Plan state's output in GetExecutionHistory;
 * - rows: the chunk results in the working bucket (ListObjectsV2, then GetObject of each new one).
 * Bytes done are estimated as the planned bytes times the share of chunks ended (the planner cuts
 * chunks of one size, so the estimate is close); rows are exact for the results read so far.
 * Every call is a detail: a target that refuses one leaves that part of the line out.
 */
import { GetObjectCommand, ListObjectsV2Command, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { DescribeMapRunCommand, GetExecutionHistoryCommand, ListMapRunsCommand } from '@aws-sdk/client-sfn';
import type { ChunkResult, RunState } from '../functions/contracts.ts';
import { layout } from '../functions/storage/layout.ts';
import type { TargetSession } from './target.ts';

/** A run's progress at one moment: what {@link renderRunProgress} draws. */
export interface RunProgress {
  /** Chunks planned (the Map run's items). */
  readonly total: number;
  readonly succeeded: number;
  /** Failed, timed out or aborted chunks. */
  readonly failed: number;
  readonly running: number;
  /** Rows read by the chunks whose results were read so far. */
  readonly rows?: number;
  /** The bytes the run planned to read. */
  readonly bytes?: number;
  /** Time since the chunks started (the Map run's start). */
  readonly elapsedMs: number;
}

const BAR_WIDTH = 24;

/** `1234567` → `1,234,567`. */
const count = (n: number) => Math.round(n).toLocaleString('en-US');

/** A duration to read at a glance: `42 s`, `3 min 05 s`, `2 h 07 min`. */
export function roughDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, '0')} s`;
  return `${Math.floor(seconds / 3600)} h ${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')} min`;
}

/** The parts of a progress line after the chunk counts: rows, MB/s, ETA (each only when known). */
function rates(p: RunProgress): string[] {
  const ended = p.succeeded + p.failed;
  const parts: string[] = [];
  if (p.rows !== undefined) parts.push(`${count(p.rows)} rows`);
  const seconds = p.elapsedMs / 1000;
  if (p.bytes !== undefined && p.total > 0 && ended > 0 && seconds > 0) {
    const megabytes = (p.bytes * ended) / p.total / 1_000_000;
    const rate = megabytes / seconds;
    parts.push(`${rate.toFixed(rate < 0.1 ? 3 : 1)} MB/s`);
  }
  if (ended > 0 && ended < p.total) parts.push(`ETA ${roughDuration((p.elapsedMs / ended) * (p.total - ended))}`);
  return parts;
}

/**
 * One line of a run's progress: `[#####-----] 12/30 chunks (1 failed, 4 running), 1,234 rows, 4.2 MB/s, ETA 35 s`.
 * `bar: false` leaves the bar out (plain lines). A pure function of the counts.
 */
export function renderRunProgress(p: RunProgress, options: { readonly bar?: boolean } = {}): string {
  const ended = p.succeeded + p.failed;
  const share = p.total > 0 ? Math.min(1, ended / p.total) : 0;
  const filled = Math.round(share * BAR_WIDTH);
  const bar = options.bar === false ? '' : `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] `;
  const states = [p.failed > 0 ? `${p.failed} failed` : '', p.running > 0 ? `${p.running} running` : ''].filter(
    Boolean,
  );
  const head = `${bar}${count(ended)}/${count(p.total)} chunks${options.bar === false ? ` (${Math.floor(share * 100)}%)` : ''}${states.length > 0 ? ` (${states.join(', ')})` : ''}`;
  return [head, ...rates(p)].join(', ');
}

/** Where progress goes: stderr, with `log` for timestamped lines. */
export interface ProgressOutput {
  /** Whether stderr is a terminal: a bar redrawn in place, else plain lines. */
  readonly tty: boolean;
  /** Writes one timestamped line (the CLI's log). */
  readonly log: (line: string) => void;
  /** @default process.stderr */
  readonly stream?: NodeJS.WriteStream;
}

/** Plain lines: at most one per 30 s, besides one per tenth of the chunks. */
const PLAIN_EVERY_MS = 30_000;

/**
 * Shows a run's progress until `stop()`: polls the APIs in the background (every 250 ms on the
 * embedded runtime, every 2 s elsewhere; rows every 1 s / 5 s). `stop()` draws the last counts
 * and ends the bar's line.
 */
export function watchRun(
  session: TargetSession,
  executionArn: string,
  output: ProgressOutput,
): { stop(): Promise<void> } {
  const local = session.target === 'local';
  const pollMs = local ? 250 : 2_000;
  const rowsEveryMs = local ? 1_000 : 5_000;
  const stream = output.stream ?? process.stderr;
  const since = Date.now();
  const source = new RunCounts(session, executionArn);
  let stopped = false;
  let wake: () => void = () => {};
  let drawn = false;
  let lastPlain = since;
  let lastTenth = -1;
  let lastLine = '';
  let lastRows = 0;

  const draw = (final: boolean) => {
    const progress = source.progress();
    if (output.tty) {
      const line = progress
        ? renderRunProgress(progress)
        : `RUNNING for ${roughDuration(Date.now() - since)}, no chunks started yet`;
      stream.write(`\r${line}\u001b[K`);
      drawn = true;
      return;
    }
    const now = Date.now();
    if (!progress) {
      if (now - lastPlain >= PLAIN_EVERY_MS) {
        lastPlain = now;
        output.log(`RUNNING for ${roughDuration(now - since)}, no chunks started yet`);
      }
      return;
    }
    const ended = progress.succeeded + progress.failed;
    const tenth = progress.total > 0 ? Math.floor((ended * 10) / progress.total) : 0;
    const line = renderRunProgress(progress, { bar: false });
    if (tenth > lastTenth || now - lastPlain >= PLAIN_EVERY_MS || (final && line !== lastLine)) {
      lastTenth = tenth;
      lastPlain = now;
      lastLine = line;
      output.log(line);
    }
  };

  const loop = (async () => {
    while (!stopped) {
      const withRows = Date.now() - lastRows >= rowsEveryMs;
      if (withRows) lastRows = Date.now();
      await source.refresh(withRows);
      if (stopped) break;
      draw(false);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  })();

  return {
    async stop() {
      stopped = true;
      wake();
      await loop;
      // The last counts, also for a run too short for a poll to see its chunks.
      await source.refresh(true);
      if (source.progress()) draw(true);
      if (drawn) stream.write('\n');
    },
  };
}

/** At most this many new chunk results are read per refresh, 8 at a time. */
const RESULTS_PER_REFRESH = 200;

/** A run's counts as the APIs give them, refreshed on demand; failures leave the last counts. */
class RunCounts {
  private mapRunArn: string | undefined;
  private plan: Pick<RunState, 'pipeline' | 'runId' | 'chunks' | 'bytes'> | null | undefined;
  private counts: Omit<RunProgress, 'rows' | 'bytes'> | undefined;
  private mapRunStart: number | undefined;
  private mapRunStop: number | undefined;
  private readonly rowsOf = new Map<string, number>();
  private readonly session: TargetSession;
  private readonly executionArn: string;

  constructor(session: TargetSession, executionArn: string) {
    this.session = session;
    this.executionArn = executionArn;
  }

  progress(): RunProgress | undefined {
    if (!this.counts) return undefined;
    const rows = this.rowsOf.size > 0 ? [...this.rowsOf.values()].reduce((a, b) => a + b, 0) : undefined;
    return {
      ...this.counts,
      elapsedMs: this.mapRunStart !== undefined ? (this.mapRunStop ?? Date.now()) - this.mapRunStart : 0,
      ...(rows !== undefined ? { rows } : {}),
      ...(this.plan ? { bytes: this.plan.bytes } : {}),
    };
  }

  async refresh(withRows: boolean): Promise<void> {
    try {
      await this.refreshCounts();
      if (withRows) await this.refreshRows();
    } catch (error) {
      // Progress is a detail: the run goes on, and the next poll tries again.
      if (process.env.SLUICE_DEBUG) console.error(`progress: ${(error as Error).message}`);
    }
  }

  private async refreshCounts(): Promise<void> {
    const { sfn } = this.session;
    if (!this.mapRunArn) {
      const { mapRuns = [] } = await sfn.send(new ListMapRunsCommand({ executionArn: this.executionArn }));
      const newest = [...mapRuns].sort((a, b) => (a.startDate?.getTime() ?? 0) - (b.startDate?.getTime() ?? 0)).at(-1);
      if (!newest?.mapRunArn) return;
      this.mapRunArn = newest.mapRunArn;
    }
    if (this.plan === undefined) this.plan = await planOf(this.session, this.executionArn);
    const run = await sfn.send(new DescribeMapRunCommand({ mapRunArn: this.mapRunArn }));
    const items = run.itemCounts;
    if (!items) return;
    this.mapRunStart = run.startDate?.getTime();
    this.mapRunStop = run.stopDate?.getTime();
    this.counts = {
      total: items.total ?? 0,
      succeeded: items.succeeded ?? 0,
      failed: (items.failed ?? 0) + (items.timedOut ?? 0) + (items.aborted ?? 0),
      running: items.running ?? 0,
      elapsedMs: 0,
    };
  }

  /** Reads the chunk results not read yet (their rows). */
  private async refreshRows(): Promise<void> {
    if (!this.plan) return;
    const { s3, names } = this.session;
    const keys = await listKeys(this.session, layout.chunkResultsPrefix(this.plan.pipeline, this.plan.runId));
    const fresh = keys.filter((key) => !this.rowsOf.has(key)).slice(0, RESULTS_PER_REFRESH);
    for (let i = 0; i < fresh.length; i += 8) {
      await Promise.all(
        fresh.slice(i, i + 8).map(async (key) => {
          const out = await s3.send(new GetObjectCommand({ Bucket: names.workingBucket, Key: key }));
          const result = JSON.parse((await out.Body?.transformToString()) ?? 'null') as ChunkResult | null;
          if (typeof result?.rowsRead === 'number') this.rowsOf.set(key, result.rowsRead);
        }),
      );
    }
  }
}

/**
 * What the run planned: the Plan state's output (RunState) in the first page of the history, or
 * null when it is not there (the Plan state's output is in its StateExited event).
 */
export async function planOf(
  session: TargetSession,
  executionArn: string,
): Promise<Pick<RunState, 'pipeline' | 'runId' | 'chunks' | 'bytes' | 'inputs'> | null> {
  const { events = [] } = await session.sfn.send(
    new GetExecutionHistoryCommand({ executionArn, maxResults: 100, includeExecutionData: true }),
  );
  for (const event of events) {
    const exited = event.stateExitedEventDetails;
    if (exited?.name !== 'Plan' || !exited.output) continue;
    try {
      const state = JSON.parse(exited.output) as Partial<RunState>;
      if (typeof state.pipeline === 'string' && typeof state.runId === 'string' && typeof state.chunks === 'number') {
        return {
          pipeline: state.pipeline,
          runId: state.runId,
          chunks: state.chunks,
          bytes: typeof state.bytes === 'number' ? state.bytes : 0,
          inputs: typeof state.inputs === 'number' ? state.inputs : 0,
        };
      }
    } catch {
      // a truncated output (over 256 KiB) is not JSON: no plan
    }
  }
  return null;
}

/** Every key under `prefix` in the working bucket (ListObjectsV2, all pages). */
export async function listKeys(session: TargetSession, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page: ListObjectsV2CommandOutput = await session.s3.send(
      new ListObjectsV2Command({
        Bucket: session.names.workingBucket,
        Prefix: prefix,
        ...(token ? { ContinuationToken: token } : {}),
      }),
    );
    for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

/** A progress bar of finished runs (backfill) on a terminal, one line per finished run otherwise. */
export class Progress {
  private finishedRuns = 0;
  private runningRuns = 0;
  private readonly since = Date.now();
  private readonly total: number;
  private readonly output: ProgressOutput;

  constructor(total: number, output: ProgressOutput) {
    this.total = total;
    this.output = output;
  }

  started(): void {
    this.runningRuns++;
    this.draw();
  }

  done(line: string): void {
    this.runningRuns--;
    this.finishedRuns++;
    if (this.output.tty) this.draw();
    else this.output.log(`${this.finishedRuns}/${this.total} ${line}`);
  }

  end(): void {
    if (this.output.tty) (this.output.stream ?? process.stderr).write('\n');
  }

  private draw(): void {
    if (!this.output.tty) return;
    const filled = Math.round((this.finishedRuns / this.total) * BAR_WIDTH);
    const elapsed = Date.now() - this.since;
    const eta = this.finishedRuns > 0 ? (elapsed / this.finishedRuns) * (this.total - this.finishedRuns) : undefined;
    (this.output.stream ?? process.stderr).write(
      `\r[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${this.finishedRuns}/${this.total} runs, ${this.runningRuns} running${eta !== undefined ? `, ETA ${roughDuration(eta)}` : ''}\u001b[K`,
    );
  }
}
