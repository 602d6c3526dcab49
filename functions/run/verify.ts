/**
 * Verify: every chunk of the manifest is accounted for, and in each, rows read =
 * rows staged + rows rejected. Decides which planned objects load (not those superseded,
 * deleted or partly failed), numbers rejected lines within their files, and returns
 * the statements for the state machine's Load map to send to Athena, in order: the
 * run's setup DDL, the loads (replacing the rows of older versions, or removing a
 * deleted object's), the derives, and (scheduled runs) table maintenance. See docs/loads.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import {
  type Chunk,
  type ChunkResult,
  MAX_NOT_LOADED_NAMED,
  type NotLoaded,
  type RunState,
  type Statement,
  type StatementStep,
  type VerifyResult,
} from '../contracts.ts';
import { VerifyError } from '../errors.ts';
import { loadedEntries, type VerifiedInputs, verifiedInputsKey } from '../ledger/ledger.ts';
import type { Pipeline } from '../pipeline/definition.ts';
import {
  deriveStatements,
  literal,
  loadStatements,
  maintenanceStatements,
  type ReplacedRows,
  removeStatements,
} from '../pipeline/sql.ts';
import { checkWindow, decodeEventKey, type RunInputs } from '../planning/planner.ts';
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

/** Up to this many keys, the current versions are read with one HeadObject each; past it, with a listing. */
const HEAD_LIMIT = 4 * S3_PARALLELISM;

/**
 * The current version (ETag) of each key in the input bucket; absent when deleted. HEAD for a
 * few keys, one listing of the pipeline's prefix for many (ListObjectsV2 gives the same ETag).
 */
async function currentVersions(
  keys: readonly string[],
  p: Pipeline,
  deps: VerifyDeps,
): Promise<Map<string, string | undefined>> {
  const { store, config } = deps;
  const out = new Map<string, string | undefined>();
  if (keys.length <= HEAD_LIMIT) {
    const heads = await mapLimit(keys, S3_PARALLELISM, (key) => store.head(config.inputBucket, key));
    for (const [i, key] of keys.entries()) out.set(key, heads[i]?.version);
    return out;
  }
  const listed = new Map((await store.list(config.inputBucket, p.input.prefix)).map((o) => [o.key, o.version]));
  for (const key of keys) out.set(key, listed.get(key));
  return out;
}

/** The days of each key's rows: the days of every chunk that held a part of it (a superset). */
function daysByKey(chunks: readonly Chunk[], results: ReadonlyMap<number, ChunkResult>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const chunk of chunks) {
    const result = results.get(chunk.index);
    if (!result) continue;
    for (const part of chunk.parts) {
      const days = out.get(part.key) ?? new Set<string>();
      for (const day of result.days) days.add(day);
      out.set(part.key, days);
    }
  }
  return out;
}

/** The union of some days, sorted; null when one of them is unknown. */
function unionDays(lists: readonly (readonly string[] | undefined)[]): string[] | null {
  if (lists.some((d) => d === undefined)) return null;
  return [...new Set(lists.flatMap((d) => d ?? []))].sort();
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
  const inputs = (await store.getJson<RunInputs>(config.workingBucket, layout.runInputs(p.name, run.runId))) ?? [];
  // Partial failure (within the tolerance): an object with a failed chunk is loaded by none of its
  // chunks, since its rows would be partial; it stays unmarked, so the next scheduled run retries it.
  const failedKeys = new Set(missing.flatMap((i) => byIndex.get(i)?.parts.map((part) => part.key) ?? []));
  // A version that is no longer the object's current one is not loaded: the run that planned the
  // newer version loads that (or, deleted, nothing is). Verify runs under the pipeline's lease, so no
  // other run's load can commit between this check and this run's.
  const current = await currentVersions(
    inputs.filter((o) => !failedKeys.has(o.key)).map((o) => o.key),
    p,
    deps,
  );
  const notLoaded: NotLoaded[] = [];
  for (const o of inputs) {
    const now = current.get(o.key);
    if (failedKeys.has(o.key)) notLoaded.push({ key: o.key, version: o.version, reason: 'chunk-failed' });
    else if (now === undefined) notLoaded.push({ key: o.key, version: o.version, reason: 'deleted' });
    else if (now !== o.version) notLoaded.push({ key: o.key, version: o.version, reason: 'superseded' });
  }
  const excluded = new Set(notLoaded.map((n) => n.key));
  const loadable = inputs.filter((o) => !excluded.has(o.key));
  const ok = [...results.values()];
  const excludedRows = await rowsOfKeys(run, excluded, chunks, results, deps);
  const keyDays = daysByKey(chunks, results);
  const days = [...new Set(loadable.flatMap((o) => [...(keyDays.get(o.key) ?? [])]))].sort();
  const rowsRejected = ok.reduce((s, r) => s + r.rowsRejected, 0) - excludedRows.rejected;
  const rowsRead = ok.reduce((s, r) => s + r.rowsRead, 0) - excludedRows.staged - excludedRows.rejected;
  const rowsLoaded = ok.reduce((s, r) => s + r.rowsStaged, 0) - excludedRows.staged;
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
  if (rowsRejected > 0) await numberRejects(run, p, ok, excluded, deps);

  // What the table holds now for these keys (the ledger, read under the lease): a new version
  // replaces the rows of the old one, a reload the rows of the same one, on the days they are on.
  const held = await loadedEntries(
    store,
    config.workingBucket,
    p.name,
    loadable.map((o) => o.key),
  );
  const replace: ReplacedRows[] = [];
  for (const o of loadable) {
    const entries = held.get(o.key) ?? [];
    // Already loaded (a replay, or a run that loaded it first): its rows are there, nothing to replace.
    if (!run.reload && entries.some((e) => e.version === o.version)) continue;
    const replaced = run.reload ? entries : entries.filter((e) => e.version !== o.version);
    if (replaced.length > 0 || run.reload) replace.push({ key: o.key, days: unionDays(replaced.map((e) => e.days)) });
  }
  const replacedDays = replace.flatMap((r) => r.days ?? []);

  // A delete run: remove the key's rows, unless the object exists again (its object run loads it).
  const removed: string[] = [];
  let removedDays: string[] | null = [];
  if (run.remove !== undefined) {
    const candidates = [...new Set([run.remove, decodeEventKey(run.remove)])];
    const exists = await mapLimit(candidates, S3_PARALLELISM, (key) => store.head(config.inputBucket, key));
    if (exists.every((o) => o === undefined)) {
      const entries = await loadedEntries(store, config.workingBucket, p.name, candidates);
      for (const [key, list] of entries) if (list.length > 0) removed.push(key);
      removedDays = unionDays([...entries.values()].flat().map((e) => e.days));
    }
  }

  const window = run.window ? checkWindow(run.window.from, run.window.to) : [];
  const loadDays = [...days, ...replacedDays, ...(removedDays ?? []), ...window];
  const deriveDays = [
    ...new Set(run.trigger === 'schedule' ? [...loadDays, previousDay(deps.today())] : loadDays),
  ].sort();
  const step =
    (name: StatementStep) =>
    (sql: string): Statement => ({ step: name, sql });
  const hasStaged = days.length > 0 && rowsLoaded > 0;
  const statements: Statement[] = [
    ...(run.setup ?? []).map(step('setup')),
    ...loadStatements(p, run.runId, days, hasStaged, rowsRejected > 0, {
      exclude: [...excluded],
      replace,
      reload: run.reload === true,
    }).map(step('load')),
    ...removeStatements(p, removed, removedDays).map(step('load')),
    ...(deriveDays.length > 0 ? deriveStatements(p, deriveDays) : []).map(step('derive')),
    // Compaction and snapshot expiry ride on the schedule: an upload's run stays a load.
    ...(run.trigger === 'schedule' ? maintenanceStatements(p, deriveDays) : []).map(step('maintain')),
  ];
  const verified: VerifiedInputs = {
    loaded: loadable.map((o) => ({ ...o, days: [...(keyDays.get(o.key) ?? [])].sort() })),
    notLoaded,
    removed,
  };
  await store.putJson(config.workingBucket, verifiedInputsKey(p.name, run.runId), verified);
  return {
    statements,
    summary: {
      chunks: chunks.length,
      chunksFailed: missing.length,
      inputs: run.inputs,
      rowsRead,
      rowsLoaded,
      rowsRejected,
      days,
      ...(notLoaded.length > 0
        ? { notLoaded: notLoaded.slice(0, MAX_NOT_LOADED_NAMED), inputsNotLoaded: notLoaded.length }
        : {}),
      ...(removed.length > 0 ? { removed: removed.join(', ') } : {}),
    },
  };
}

/**
 * The rows that chunks which succeeded staged and rejected for these keys (objects not loaded):
 * read from the Parquet of only the chunks that hold a part of one, so that the run's counts
 * are those of the rows it loads.
 */
async function rowsOfKeys(
  run: RunState,
  keys: ReadonlySet<string>,
  chunks: readonly Chunk[],
  results: ReadonlyMap<number, ChunkResult>,
  deps: VerifyDeps,
): Promise<{ staged: number; rejected: number }> {
  const affected = chunks
    .filter((c) => results.has(c.index) && c.parts.some((part) => keys.has(part.key)))
    .map((c) => results.get(c.index) as ChunkResult);
  if (affected.length === 0) return { staged: 0, rejected: 0 };
  const { store, config } = deps;
  const dir = await mkdtemp(join(config.tmpDir, `verify-${run.runId}-`));
  try {
    const download = async (key: string | null, name: string) => {
      if (!key) return undefined;
      const file = join(dir, name);
      await store.downloadFile(config.workingBucket, key, file);
      return literal(file);
    };
    const staged = (
      await mapLimit(affected, S3_PARALLELISM, (r) => download(r.stagingKey, `s${r.index}.parquet`))
    ).filter((f): f is string => f !== undefined);
    const rejected = (
      await mapLimit(affected, S3_PARALLELISM, (r) => download(r.rejectsKey, `r${r.index}.parquet`))
    ).filter((f): f is string => f !== undefined);
    const inKeys = [...keys].map(literal).join(', ');
    return await withConnection(config.tmpDir, async (c) => {
      const count = async (files: string[]) => {
        if (files.length === 0) return 0;
        const rows = (
          await c.runAndReadAll(
            `SELECT count(*) FROM read_parquet([${files.join(', ')}], union_by_name = true) WHERE source_key IN (${inKeys})`,
          )
        ).getRowsJson() as [number | string][];
        return Number(rows[0]?.[0] ?? 0);
      };
      return { staged: await count(staged), rejected: await count(rejected) };
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
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
async function numberRejects(
  run: RunState,
  p: Pipeline,
  results: ChunkResult[],
  excluded: ReadonlySet<string>,
  deps: VerifyDeps,
): Promise<void> {
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
        ${excluded.size > 0 ? `WHERE r.source_key NOT IN (${[...excluded].map(literal).join(', ')})` : ''}
        ORDER BY r.source_key, r.source_offset
      ) TO ${literal(out)} (FORMAT parquet)`);
    });
    await store.putFile(config.workingBucket, layout.rejects(p.name, run.runId), out);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
