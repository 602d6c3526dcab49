/**
 * Verify: every chunk of the manifest is accounted for, and in each, rows read =
 * rows staged + rows rejected. Numbers rejected lines within their files, and returns
 * the statements for the state machine's Load map to send to Athena, in order: the
 * run's setup DDL, the loads, the derives, and (scheduled runs) table maintenance.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import type { Chunk, ChunkResult, RunState, Statement, StatementStep, VerifyResult } from '../contracts.ts';
import { VerifyError } from '../errors.ts';
import type { Pipeline } from '../pipeline/definition.ts';
import { deriveStatements, literal, loadStatements, maintenanceStatements } from '../pipeline/sql.ts';
import { mapLimit, S3_PARALLELISM } from '../storage/concurrency.ts';
import { layout } from '../storage/layout.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { withConnection } from '../worker/duckdb.ts';
import { cutAtWord, plainText } from './failure-message.ts';
import { runPipeline } from './run-state.ts';

export interface VerifyDeps {
  readonly store: ObjectStore;
  readonly config: Config;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
  /** Today's date in UTC, `YYYY-MM-DD` (a clock, so tests can fix it). */
  readonly today: () => string;
}

/** The day before `today` (UTC), which a scheduled run always rebuilds: it is complete by then. */
export function previousDay(today: string): string {
  const d = new Date(`${today}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() - 1);
  return d.toISOString().slice(0, 10);
}

export async function verify(run: RunState, deps: VerifyDeps): Promise<VerifyResult> {
  const p = runPipeline(run, deps.pipelines);
  const { store, config } = deps;
  const chunks = (await store.getJson<Chunk[]>(run.manifest.bucket, run.manifest.key)) ?? [];
  const results = new Map<number, ChunkResult>();
  const listed = await store.list(config.workingBucket, layout.chunkResultsPrefix(p.name, run.runId));
  const read = await mapLimit(listed, S3_PARALLELISM, (o) => store.getJson<ChunkResult>(config.workingBucket, o.key));
  for (const r of read) if (r) results.set(r.index, r);
  const missing = chunks.filter((c) => !results.has(c.index)).map((c) => c.index);
  const allowed = Math.floor((chunks.length * run.toleratedFailurePercentage) / 100);
  const byIndex = new Map(chunks.map((c) => [c.index, c]));
  if (missing.length > allowed) {
    throw new VerifyError(
      plainText(
        `${missing.length} of ${chunks.length} chunks have no result (${missing.slice(0, 20).join(', ')}${missing.length > 20 ? ', ...' : ''}), ` +
          `covering ${filesOf(missing.map((i) => byIndex.get(i)))}; at most ${allowed} may fail (processing.toleratedFailurePercentage ` +
          `${run.toleratedFailurePercentage}), so nothing was loaded. The failed chunks' errors are in the run record; fix those files and upload them again.`,
      ),
    );
  }
  for (const r of results.values()) {
    if (r.rowsRead !== r.rowsStaged + r.rowsRejected) {
      throw new VerifyError(
        plainText(
          `The rows of ${filesOf([byIndex.get(r.index)])} do not add up (chunk ${r.index}): ${r.rowsRead} read, but ${r.rowsStaged} staged ` +
            `and ${r.rowsRejected} rejected, so nothing was loaded. This is a bug in Sluice or the pipeline's transform; report it with the run id.`,
        ),
      );
    }
  }
  // An object whose chunk failed (within the tolerance) is loaded by none of its chunks: its rows would be partial.
  const failedKeys = new Set(missing.flatMap((i) => byIndex.get(i)?.parts.map((part) => part.key) ?? []));
  if (failedKeys.size > 0) {
    const keys = [...failedKeys];
    throw new VerifyError(
      plainText(
        `${keys.slice(0, 10).join(', ')}${keys.length > 10 ? ` and ${keys.length - 10} more` : ''} could only be partly processed ` +
          '(some of their chunks failed), so they were not loaded nor marked loaded; fix them and upload them again.',
      ),
    );
  }
  const ok = [...results.values()];
  const days = [...new Set(ok.flatMap((r) => r.days))].sort();
  const rowsRejected = ok.reduce((s, r) => s + r.rowsRejected, 0);
  const rowsRead = ok.reduce((s, r) => s + r.rowsRead, 0);
  if (rowsRead > 0 && rowsRejected / rowsRead > p.rejects.maxShare) {
    const worst = await rejectsByFile(run, ok, deps).catch(() => []);
    const named = worst
      .map(
        (f) =>
          `${f.key}: ${f.rejected} rejected${f.line !== null ? ` (first at line ${f.line}${f.column ? `, column ${f.column}` : ''}: ${cutAtWord(f.reason, 120)})` : ''}`,
      )
      .join('; ');
    throw new VerifyError(
      plainText(
        `${rowsRejected} of ${rowsRead} rows (${((100 * rowsRejected) / rowsRead).toFixed(1)}%) were rejected, more than pipeline ${p.name} ` +
          `allows (rejects.maxShare ${100 * p.rejects.maxShare}%), so nothing was loaded. ${named ? `Most rejects: ${named}. ` : ''}` +
          `Check that ${worst.length === 1 ? 'this file is' : 'these files are'} ${p.name} input, fix and upload again, or raise rejects.maxShare. ` +
          `The rejected lines are under s3://${config.workingBucket}/${layout.runFolder(p.name, run.runId)}rejects/`,
      ),
    );
  }
  if (rowsRejected > 0) await numberRejects(run, p, ok, deps);
  const deriveDays = run.trigger === 'schedule' ? [...new Set([...days, previousDay(deps.today())])].sort() : days;
  const step =
    (name: StatementStep) =>
    (sql: string): Statement => ({ step: name, sql });
  const statements: Statement[] = [
    ...(run.setup ?? []).map(step('setup')),
    ...loadStatements(p, run.runId, days, days.length > 0, rowsRejected > 0).map(step('load')),
    ...(deriveDays.length > 0 ? deriveStatements(p, deriveDays) : []).map(step('derive')),
    // Compaction and snapshot expiry ride on the schedule: an upload's run stays a load.
    ...(run.trigger === 'schedule' ? maintenanceStatements(p, deriveDays) : []).map(step('maintain')),
  ];
  return {
    statements,
    summary: {
      chunks: chunks.length,
      chunksFailed: missing.length,
      inputs: run.inputs,
      rowsRead,
      rowsLoaded: ok.reduce((s, r) => s + r.rowsStaged, 0),
      rowsRejected,
      days,
    },
  };
}

/** The files of some chunks, for a message: `a.csv, b.csv and 3 more`. */
function filesOf(chunks: readonly (Chunk | undefined)[]): string {
  const keys = [...new Set(chunks.flatMap((c) => c?.parts.map((p) => p.key) ?? []))];
  if (keys.length === 0) return 'no file';
  return `${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ` and ${keys.length - 5} more files` : ''}`;
}

/** The line number base of each part: the lines of the parts of its file before it (see numberRejects). */
function lineBases(results: readonly ChunkResult[]): string[] {
  const bases: string[] = [];
  const byKey = new Map<string, { start: number; lines: number }[]>();
  for (const r of results) {
    for (const part of r.parts) {
      const parts = byKey.get(part.key);
      if (parts) parts.push(part);
      else byKey.set(part.key, [part]);
    }
  }
  for (const [key, parts] of byKey) {
    let base = 0;
    for (const part of [...parts].sort((a, b) => a.start - b.start)) {
      bases.push(`(${literal(key)}, ${part.start}, ${base})`);
      base += part.lines;
    }
  }
  return bases;
}

interface FileRejects {
  readonly key: string;
  readonly rejected: number;
  readonly line: number | null;
  readonly column: string | null;
  readonly reason: string;
}

/** The files with the most rejects (at most 5), each with its first reject: for the too-many-rejects message. */
async function rejectsByFile(run: RunState, results: ChunkResult[], deps: VerifyDeps): Promise<FileRejects[]> {
  const { store, config } = deps;
  const withRejects = results.filter((r) => r.rejectsKey);
  if (withRejects.length === 0) return [];
  const dir = await mkdtemp(join(config.tmpDir, `verify-${run.runId}-`));
  try {
    const files = await mapLimit(withRejects, S3_PARALLELISM, async (r) => {
      const file = join(dir, `${r.index}.parquet`);
      await store.downloadFile(config.workingBucket, r.rejectsKey as string, file);
      return literal(file);
    });
    return await withConnection(config.tmpDir, async (c) => {
      await c.run('CREATE OR REPLACE TEMP TABLE bases (source_key VARCHAR, part_start BIGINT, base BIGINT)');
      await c.run(`INSERT INTO bases VALUES ${lineBases(results).join(', ')}`);
      const rows = (
        await c.runAndReadAll(`
          SELECT r.source_key, count(*) AS rejected, min(b.base + r.local_line) AS line,
                 arg_min(r.column_name, b.base + r.local_line) AS column_name,
                 arg_min(r.reason, b.base + r.local_line) AS reason
          FROM read_parquet([${files.join(', ')}]) r LEFT JOIN bases b USING (source_key, part_start)
          GROUP BY r.source_key ORDER BY rejected DESC, r.source_key LIMIT 5`)
      ).getRowsJson() as [string, number | string, number | string | null, string | null, string | null][];
      return rows.map(([key, rejected, line, column, reason]) => ({
        key,
        rejected: Number(rejected),
        line: line === null ? null : Number(line),
        column,
        reason: reason ?? '',
      }));
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Workers know a rejected line's number within their byte range only. The line number
 * in the file adds the lines of the ranges before it, which only now are all known.
 */
async function numberRejects(run: RunState, p: Pipeline, results: ChunkResult[], deps: VerifyDeps): Promise<void> {
  const { store, config } = deps;
  const bases = lineBases(results);
  const dir = await mkdtemp(join(config.tmpDir, `verify-${run.runId}-`));
  try {
    const withRejects = results.filter((r) => r.rejectsKey);
    const files = await mapLimit(withRejects, S3_PARALLELISM, async (r) => {
      const file = join(dir, `${r.index}.parquet`);
      await store.downloadFile(config.workingBucket, r.rejectsKey as string, file);
      return literal(file);
    });
    const out = join(dir, 'rejects.parquet');
    await withConnection(config.tmpDir, async (c) => {
      await c.run(`CREATE OR REPLACE TEMP TABLE bases (source_key VARCHAR, part_start BIGINT, base BIGINT)`);
      await c.run(`INSERT INTO bases VALUES ${bases.join(', ')}`);
      await c.run(`COPY (
        SELECT r.source_key, r.source_version, r.source_offset, b.base + r.local_line AS line_number,
               r.column_name, r.reason, r.raw_line
        FROM read_parquet([${files.join(', ')}]) r JOIN bases b USING (source_key, part_start)
        ORDER BY r.source_key, r.source_offset
      ) TO ${literal(out)} (FORMAT parquet)`);
    });
    await store.putFile(config.workingBucket, layout.rejects(p.name, run.runId), out);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
