/**
 * The partition worker: reads one chunk (byte ranges of input objects), lets DuckDB
 * parse, type and transform its rows, writes the good rows as Parquet to staging and
 * every rejected row, with its reason, to the run's rejects. Nothing is dropped:
 * rows read = rows staged + rows rejected, or the chunk fails.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Config } from '../config.ts';
import type { Chunk, ChunkPart, ChunkResult, ChunkSummary, PartResult } from '../contracts.ts';
import { VerifyError } from '../errors.ts';
import { type Column, LINEAGE_COLUMNS, type Pipeline } from '../pipeline/definition.ts';
import { duckType } from '../pipeline/duck-types.ts';
import { literal } from '../pipeline/sql.ts';
import { layout } from '../storage/layout.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { decompress } from './compression.ts';
import { withConnection } from './duckdb.ts';
import { checkHeader } from './header.ts';
import { LineSplitter, stripBom } from './lines.ts';
import { SpoolWriter } from './spool-writer.ts';

/** How far past a range's end the first GET reads, to finish the last line without a second request. */
const OVERHANG = 64 * 1024;

export interface WorkerDeps {
  readonly store: ObjectStore;
  readonly config: Config;
  readonly pipeline: Pipeline;
}

/** A quoted identifier: names are validated, but may be SQL keywords (`at`, `day`). */
const q = (name: string) => `"${name}"`;

/** Guards json_type: DuckDB evaluates it even where json_valid is false, and it throws on invalid JSON. */
const IS_OBJECT = "CASE WHEN json_valid(__doc) THEN json_type(__doc) = 'OBJECT' ELSE false END";

interface Check {
  readonly expected: string;
  /** SQL that is true when the (non-null) text `value` is not acceptable. */
  readonly invalid: (value: string) => string;
}

const castFails = (col: Column) => (value: string) => `try_cast(${value} AS ${duckType(col)}) IS NULL`;

/**
 * Columns read as text and checked by Sluice, where DuckDB's reader is too lenient: it
 * rounds `12.5` into an integer and reads a timestamp without a zone as UTC. In JSON
 * Lines every typed value is checked this way. The tests are plain string functions
 * rather than regular expressions where they can be: they run on every value.
 */
function checkOf(col: Column, format: Pipeline['input']['format']): Check | undefined {
  switch (col.type) {
    case 'integer':
    case 'bigint':
      return {
        expected: 'an integer',
        invalid: (v) => `(${castFails(col)(v)} OR contains(${v}, '.') OR contains(${v}, 'e') OR contains(${v}, 'E'))`,
      };
    case 'decimal': {
      const whole = (col.precision ?? 18) - (col.scale ?? 0);
      const pattern = literal(`^\\s*[+-]?[0-9]{0,${whole}}(\\.[0-9]{0,${col.scale}})?\\s*$`);
      return {
        expected: `a decimal with at most ${whole} digits before the point and ${col.scale} after`,
        invalid: (v) => `(NOT regexp_matches(${v}, ${pattern}) OR ${castFails(col)(v)})`,
      };
    }
    case 'timestamptz':
      // After the 19 characters of YYYY-MM-DDTHH:MM:SS comes an optional fraction, then Z or an offset.
      return {
        expected: 'an ISO-8601 timestamp with a zone or Z',
        invalid: (v) =>
          `(${castFails(col)(v)} OR NOT (length(${v}) > 19 AND (suffix(${v}, 'Z') OR suffix(${v}, 'z') OR ` +
          `contains(substr(${v}, 20), '+') OR contains(substr(${v}, 20), '-'))))`,
      };
    case 'json':
      return { expected: 'JSON', invalid: (v) => `NOT json_valid(${v})` };
    default:
      return format === 'jsonl' && col.type !== 'string'
        ? { expected: `a ${col.type}`, invalid: castFails(col) }
        : undefined;
  }
}

interface Spool {
  readonly file: string;
  rowsRead: number;
  readonly parts: PartResult[];
}

export async function processChunk(chunk: Chunk, deps: WorkerDeps): Promise<ChunkResult> {
  const { store, config, pipeline } = deps;
  const dir = await mkdtemp(join(config.tmpDir, `chunk-${chunk.index}-`));
  try {
    const spool = await spoolChunk(chunk, deps, join(dir, 'rows.csv'));
    const result = await withConnection(config.tmpDir, (c) => parseAndStage(c, chunk, pipeline, spool, dir));
    const stagingKey = result.rowsStaged > 0 ? layout.staging(pipeline.name, chunk.runId, chunk.index) : null;
    const rejectsKey = result.rowsRejected > 0 ? layout.chunkRejects(pipeline.name, chunk.runId, chunk.index) : null;
    if (stagingKey) await store.putFile(config.workingBucket, stagingKey, join(dir, 'staged.parquet'));
    if (rejectsKey) await store.putFile(config.workingBucket, rejectsKey, join(dir, 'rejects.parquet'));
    const chunkResult: ChunkResult = {
      index: chunk.index,
      rowsRead: spool.rowsRead,
      rowsStaged: result.rowsStaged,
      rowsRejected: result.rowsRejected,
      days: result.days,
      parts: spool.parts,
      stagingKey,
      rejectsKey,
    };
    await store.putJson(config.workingBucket, layout.chunkResult(pipeline.name, chunk.runId, chunk.index), chunkResult);
    return chunkResult;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * What the Work handler returns: the counts of a chunk's result, a few bytes however many
 * parts or days the chunk had (the result itself is in the run's folder for Verify).
 */
export function chunkSummary(r: ChunkResult): ChunkSummary {
  return { index: r.index, rowsRead: r.rowsRead, rowsStaged: r.rowsStaged, rowsRejected: r.rowsRejected };
}

/** Streams the bytes of one part: the whole object (decompressed), or its range plus the overhang. */
async function* partBytes(store: ObjectStore, p: Pipeline, bucket: string, part: ChunkPart): AsyncGenerator<Buffer> {
  // Every GET names the planned version (If-Match): a version replaced since Plan fails the read, never mixes in.
  if (part.compression !== 'none') {
    const source = (await store.getStream(
      bucket,
      part.key,
      undefined,
      undefined,
      part.version,
    )) as AsyncIterable<Buffer>;
    yield* decompress(source, part.compression, p.input.maxDecompressionRatio, `s3://${bucket}/${part.key}`);
    return;
  }
  let from = part.start > 0 ? part.start - 1 : 0;
  let to = Math.min(part.size, part.end + OVERHANG);
  while (from < part.size) {
    for await (const b of (await store.getStream(bucket, part.key, from, to, part.version)) as AsyncIterable<Buffer>)
      yield b;
    from = to;
    to = Math.min(part.size, to + 4 * OVERHANG);
  }
}

/** The separator of the spool file: the input's delimiter, or a comma for JSON Lines (one quoted field). */
const spoolDelimiter = (p: Pipeline) => (p.input.format === 'jsonl' ? ',' : p.input.delimiter);

/**
 * Writes `part<d>offset<d>line number<d><line>` for every data line of the chunk to a
 * local file for DuckDB to parse; the prefix carries each row's lineage through
 * DuckDB's reader and its rejects.
 */
async function spoolChunk(chunk: Chunk, deps: WorkerDeps, file: string): Promise<Spool> {
  const { pipeline, config, store } = deps;
  const separator = spoolDelimiter(pipeline).charCodeAt(0);
  const jsonl = pipeline.input.format === 'jsonl';
  const hasHeader = pipeline.input.header && !jsonl;
  const out = new SpoolWriter(file);
  const spool: Spool = { file, rowsRead: 0, parts: [] };
  try {
    for (const [index, part] of chunk.parts.entries()) {
      const where = `s3://${config.inputBucket}/${part.key}`;
      let lines = 0;
      const splitter = new LineSplitter({
        readFrom: part.start > 0 ? part.start - 1 : 0,
        start: part.start,
        end: part.compression === 'none' ? part.end : Number.POSITIVE_INFINITY,
        maxLineBytes: pipeline.input.maxLineBytes,
        where,
        onLine: (offset, line) => {
          lines++;
          if (offset === 0) {
            line = stripBom(line);
            if (hasHeader) {
              checkHeader(pipeline, line, where);
              return;
            }
          }
          if (line.length === 0) return;
          spool.rowsRead++;
          out.record(index, offset, lines, separator, line, jsonl);
        },
      });
      for await (const bytes of partBytes(store, pipeline, config.inputBucket, part)) {
        if (!splitter.push(bytes)) break;
      }
      splitter.finish();
      spool.parts.push({ key: part.key, start: part.start, lines });
    }
  } finally {
    out.close();
  }
  return spool;
}

async function count(c: DuckDBConnection, sql: string): Promise<number> {
  const reader = await c.runAndReadAll(sql);
  return Number(reader.getRows()[0]?.[0] ?? 0);
}

/**
 * The columns of the chunk's lines, in file order: the header (from the planner, once per
 * chunk; in its first part in manifests planned before that), or the schema's.
 */
function fileColumns(chunk: Chunk, p: Pipeline): readonly string[] {
  return chunk.columns ?? chunk.parts[0]?.columns ?? p.schema.map((col) => col.name);
}

const SPOOL_LINEAGE = [`'__part': 'INTEGER'`, `'__offset': 'BIGINT'`, `'__line': 'BIGINT'`];

const readerOptions = (p: Pipeline) => `header = false, auto_detect = false, strict_mode = true, null_padding = false,
    max_line_size = ${p.input.maxLineBytes + 64}, store_rejects = true,
    rejects_table = 'sluice_rejects', rejects_scan = 'sluice_reject_scans'`;

/** DuckDB's reader over a CSV/TSV spool file: lineage, then the file's columns (checked ones as text). */
function csvSource(chunk: Chunk, p: Pipeline, spool: Spool): string {
  const bySchema = new Map(p.schema.map((col) => [col.name, col]));
  const columns = fileColumns(chunk, p).map((name, i) => {
    const col = bySchema.get(name);
    if (!col) return `${literal(`__extra_${i}`)}: 'VARCHAR'`;
    return `${literal(name)}: ${literal(checkOf(col, p.input.format) ? 'VARCHAR' : duckType(col))}`;
  });
  const nulls = `[${p.input.nullStrings.map(literal).join(', ')}]`;
  return `read_csv(${literal(spool.file)}, columns = {${[...SPOOL_LINEAGE, ...columns].join(', ')}},
      delim = ${literal(p.input.delimiter)}, quote = ${literal(p.input.quote)}, escape = ${literal(p.input.escape)},
      nullstr = ${nulls}, ${readerOptions(p)})`;
}

/**
 * JSON Lines: the spool carries each line as one quoted CSV field; the fields are taken
 * out by name into `parsed` (lines that are not JSON objects are rejected later).
 */
async function readJsonLines(c: DuckDBConnection, p: Pipeline, spool: Spool): Promise<string> {
  await c.run(`CREATE OR REPLACE TEMP TABLE raw_docs AS SELECT * FROM read_csv(${literal(spool.file)},
    columns = {${[...SPOOL_LINEAGE, `'__doc': 'VARCHAR'`].join(', ')}}, delim = ',', quote = '"', escape = '"',
    ${readerOptions(p)})`);
  const fields = p.schema.map((col) => {
    const path = literal(`$.${col.name}`);
    return col.type === 'json'
      ? `CAST(json_extract(__doc, ${path}) AS VARCHAR) AS ${q(col.name)}`
      : `json_extract_string(__doc, ${path}) AS ${q(col.name)}`;
  });
  await c.run(`CREATE OR REPLACE TEMP TABLE parsed AS
    SELECT __part, __offset, __line, ${fields.join(', ')}, __doc FROM raw_docs WHERE ${IS_OBJECT}`);
  await c.run(`INSERT INTO rejected
    SELECT __part, __offset, __line, NULL, 'JSON: the line is not a JSON object', __doc FROM raw_docs
    WHERE NOT (${IS_OBJECT})`);
  return 'parsed';
}

/**
 * Parses, checks, transforms and stages one chunk. CSV/TSV take two scans of the spool
 * file and keep nothing in memory: the first finds the rows that fail Sluice's checks,
 * the second streams the other rows through the casts and the transform into Parquet
 * (DuckDB's reader leaves out, and records, the rows it cannot read). Only when the
 * counts do not add up are the rows kept, to find the ones the transform dropped.
 */
async function parseAndStage(
  c: DuckDBConnection,
  chunk: Chunk,
  p: Pipeline,
  spool: Spool,
  dir: string,
): Promise<{ rowsStaged: number; rowsRejected: number; days: string[] }> {
  const partValues = chunk.parts
    .map((part, i) => `(${i}, ${literal(part.key)}, ${literal(part.version)}, ${part.start})`)
    .join(', ');
  await c.run(`CREATE OR REPLACE TEMP TABLE parts (part INTEGER, source_key VARCHAR, source_version VARCHAR, part_start BIGINT);
    INSERT INTO parts VALUES ${partValues};
    CREATE OR REPLACE TEMP TABLE rejected (part INTEGER, line_offset BIGINT, local_line BIGINT, column_name VARCHAR, reason VARCHAR, raw VARCHAR);`);
  const jsonl = p.input.format === 'jsonl';
  const source = jsonl ? await readJsonLines(c, p, spool) : csvSource(chunk, p, spool);
  const checks = p.schema.flatMap((col) => {
    const check = checkOf(col, p.input.format);
    return check ? [{ col, check, test: `(${q(col.name)} IS NOT NULL AND ${check.invalid(q(col.name))})` }] : [];
  });
  if (checks.length > 0) {
    // One scan for every check; a row may fail several.
    await c.run(`INSERT INTO rejected
      SELECT __part, __offset, __line,
             CASE ${checks.map((k) => `WHEN ${k.test} THEN ${literal(k.col.name)}`).join(' ')} END,
             concat_ws('; ', ${checks
               .map(
                 (k) =>
                   `CASE WHEN ${k.test} THEN 'CAST: ' || ${literal(`${k.col.name} must be ${k.check.expected}, found `)} || ${q(k.col.name)} END`,
               )
               .join(', ')}),
             ${jsonl ? '__doc' : 'NULL'}
      FROM ${source} WHERE ${checks.map((k) => k.test).join(' OR ')}`);
  }
  // Lineage by CASE on the part number: no join per row. The anti join only when a check failed.
  const byPart = (field: 'key' | 'version') =>
    `CASE src.__part ${chunk.parts.map((part, i) => `WHEN ${i} THEN ${literal(part[field])}`).join(' ')} END`;
  const lineage = `${byPart('key')} AS source_key, ${byPart('version')} AS source_version, src.__offset AS source_offset`;
  const casts = new Map(
    checks.map(({ col }) => [col.name, `CAST(src.${q(col.name)} AS ${duckType(col)}) AS ${q(col.name)}`]),
  );
  const columns = p.schema.map((col) => casts.get(col.name) ?? `src.${q(col.name)}`).join(', ');
  const defineInput = async (from: string) => {
    const failed = (await count(c, 'SELECT count(*) FROM rejected')) > 0;
    await c.run(`CREATE OR REPLACE TEMP VIEW input AS SELECT ${columns}, ${lineage} FROM ${from} src
      ${failed ? 'ANTI JOIN rejected ON rejected.part = src.__part AND rejected.line_offset = src.__offset' : ''}`);
  };
  await defineInput(source);
  const day = q(p.table.partitionDay);
  const tableColumns = [...p.table.columns, ...LINEAGE_COLUMNS].map((col) => q(col.name)).join(', ');
  const stagedFile = literal(join(dir, 'staged.parquet'));
  const rowsStaged = await count(
    c,
    `COPY (SELECT ${tableColumns} FROM (${p.transform}) WHERE ${day} IS NOT NULL)
     TO ${stagedFile} (FORMAT parquet, COMPRESSION zstd)`,
  );
  // The reader's rejects (both scans record them: grouped to one row per line).
  const d = literal(spoolDelimiter(p));
  const expected = jsonl ? 1 : fileColumns(chunk, p).length;
  await c.run(`INSERT INTO rejected
    SELECT CAST(split_part(csv_line, ${d}, 1) AS INTEGER), CAST(split_part(csv_line, ${d}, 2) AS BIGINT),
           CAST(split_part(csv_line, ${d}, 3) AS BIGINT), first(column_name ORDER BY column_idx),
           string_agg(DISTINCT CASE WHEN error_type IN ('MISSING COLUMNS', 'TOO MANY COLUMNS')
                      THEN error_type || ': expected ${expected} columns'
                      ELSE error_type || ': ' || error_message END, '; '),
           first(csv_line)
    FROM sluice_rejects GROUP BY 1, 2, 3`);
  let rowsRejected = await count(c, 'SELECT count(DISTINCT (part, line_offset)) FROM rejected');
  if (rowsStaged + rowsRejected !== spool.rowsRead) {
    // Rare: the transform dropped rows or left the partition column empty. Keep the rows to find them.
    if (!jsonl) {
      await c.run(`CREATE OR REPLACE TEMP TABLE parsed AS SELECT * FROM ${source}`);
      await defineInput('parsed');
    }
    rowsRejected = await rejectUnplaced(c, p);
  }
  if (rowsStaged + rowsRejected !== spool.rowsRead) {
    throw new VerifyError(
      `chunk ${chunk.index} of run ${chunk.runId}: read ${spool.rowsRead} rows but staged ${rowsStaged} and rejected ${rowsRejected}; ` +
        'the transform must return one row per input row',
    );
  }
  if (rowsRejected > 0) await writeRejects(c, p, spool, dir);
  if (rowsStaged === 0) return { rowsStaged, rowsRejected, days: [] };
  const identity = chunk.parts.length > 1 ? '(source_key, source_offset)' : 'source_offset';
  const [check] = (
    await c.runAndReadAll(
      `SELECT count(*) - count(DISTINCT ${identity}),
              list(DISTINCT strftime(CAST(${day} AS DATE), '%Y-%m-%d') ORDER BY strftime(CAST(${day} AS DATE), '%Y-%m-%d'))
       FROM read_parquet(${stagedFile})`,
    )
  ).getRowsJson() as [number | string, string[]][];
  const duplicates = Number(check?.[0] ?? 0);
  if (duplicates > 0) {
    throw new VerifyError(
      `chunk ${chunk.index} of run ${chunk.runId}: the transform of pipeline ${p.name} returned ${duplicates} extra rows for some lines; it must return one row per input row`,
    );
  }
  return { rowsStaged, rowsRejected, days: check?.[1] ?? [] };
}

/**
 * The rare path, when the counts do not add up: rows the transform dropped, or whose
 * partition column came out empty, are rejected with that reason rather than lost.
 * Returns the new number of rejected rows.
 */
async function rejectUnplaced(c: DuckDBConnection, p: Pipeline): Promise<number> {
  const day = q(p.table.partitionDay);
  await c.run(`CREATE OR REPLACE TEMP TABLE transformed AS ${p.transform}`);
  await c.run(`INSERT INTO rejected
    SELECT parts.part, i.source_offset, parsed.__line, NULL, 'TRANSFORM: the transform returned no row for this line', NULL
    FROM input i JOIN parts USING (source_key, source_version)
    JOIN parsed ON parsed.__part = parts.part AND parsed.__offset = i.source_offset
    ANTI JOIN transformed t ON t.source_key = i.source_key AND t.source_offset = i.source_offset`);
  await c.run(`INSERT INTO rejected
    SELECT parts.part, t.source_offset, parsed.__line, ${literal(p.table.partitionDay)},
           ${literal(`MISSING: ${p.table.partitionDay} is empty; it is the partition column`)}, NULL
    FROM transformed t JOIN parts USING (source_key, source_version)
    JOIN parsed ON parsed.__part = parts.part AND parsed.__offset = t.source_offset
    WHERE t.${day} IS NULL`);
  return count(c, 'SELECT count(DISTINCT (part, line_offset)) FROM rejected');
}

/** Finds spooled lines by (part, offset) and returns them as JSON Lines for DuckDB. */
function spooledLines(file: string, delimiter: string, wanted: Set<string>): string {
  const bytes = readFileSync(file);
  const sep = delimiter.charCodeAt(0);
  const out: string[] = [];
  for (let start = 0; start < bytes.length && out.length < wanted.size; ) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    const first = bytes.indexOf(sep, start);
    const second = bytes.indexOf(sep, first + 1);
    const part = bytes.toString('latin1', start, first);
    const offset = bytes.toString('latin1', first + 1, second);
    if (wanted.has(`${part}:${offset}`)) {
      out.push(
        JSON.stringify({ part: Number(part), line_offset: Number(offset), line: bytes.toString('utf8', start, end) }),
      );
    }
    start = end + 1;
  }
  return `${out.join('\n')}\n`;
}

/** Rejects with local line numbers; Verify turns them into line numbers in the file. */
async function writeRejects(c: DuckDBConnection, p: Pipeline, spool: Spool, dir: string): Promise<void> {
  const d = literal(spoolDelimiter(p));
  // Lines DuckDB parsed but Sluice rejected afterwards have no raw text yet: take it from the spool file.
  const missing = (await c.runAndReadAll('SELECT part, line_offset FROM rejected WHERE raw IS NULL')).getRows();
  if (missing.length > 0) {
    const file = join(dir, 'raw-lines.jsonl');
    writeFileSync(
      file,
      spooledLines(spool.file, spoolDelimiter(p), new Set(missing.map(([part, o]) => `${part}:${o}`))),
    );
    await c.run(`UPDATE rejected SET raw = src.line FROM read_json(${literal(file)},
        columns = {'part': 'INTEGER', 'line_offset': 'BIGINT', 'line': 'VARCHAR'}, format = 'newline_delimited') src
      WHERE rejected.raw IS NULL AND rejected.part = src.part AND rejected.line_offset = src.line_offset`);
  }
  // Strip the spool prefix (part, offset, line number) to give back the line as it was in the file.
  const unprefixed = `regexp_replace(r.raw, '^([0-9]+' || ${d} || '){3}', '')`;
  await c.run(`COPY (
    SELECT parts.source_key, parts.source_version, r.line_offset AS source_offset, parts.part_start,
           r.local_line, r.column_name, r.reason,
           substr(${unprefixed}, 1, ${p.rejects.maxRawLineChars}) AS raw_line
    FROM (SELECT part, line_offset, max(local_line) AS local_line, first(column_name) AS column_name,
                 string_agg(reason, '; ') AS reason, first(raw) AS raw
          FROM rejected GROUP BY part, line_offset) r
    JOIN parts ON parts.part = r.part
    ORDER BY parts.part, r.line_offset
  ) TO ${literal(join(dir, 'rejects.parquet'))} (FORMAT parquet)`);
}
