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
import { InputError, VerifyError } from '../errors.ts';
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
  /** SQL that is true when the (non-null) text `value` is not acceptable. Cheap: it runs on every value. */
  readonly invalid: (value: string) => string;
  /** SQL for the reason a failing value is rejected (after `CAST: `). Evaluated only for failing rows. */
  readonly reason: (value: string) => string;
}

/** A value as shown in a reason: at most 60 characters. */
const shown = (v: string) => `(CASE WHEN length(${v}) > 60 THEN left(${v}, 60) || '...' ELSE ${v} END)`;
const text = (s: string) => literal(s);

const INTEGER_RANGES: Record<string, string> = {
  integer: '-2147483648 to 2147483647',
  bigint: '-9223372036854775808 to 9223372036854775807',
};
/**
 * Shapes as anchored regular expressions: on short values they cost less than a string
 * function with a character set (ltrim(v, '0123456789+-') took 0.15 s per 500,000 values,
 * this test 0.03 s), and they say the rule of docs/values.md exactly.
 */
const INTEGER_SHAPE = text('[+-]?[0-9]+');
const DOUBLE_SHAPE = text('[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?');
const YEAR = '([0-9]{4})';
const DATE_SHAPE = `${YEAR}-[0-9]{2}-[0-9]{2}`;
const TIME_SHAPE = '[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?';
/** Hours 00-23, minutes and seconds 00-59: DuckDB would read 24:00:00 as the next day. */
const TIME_RANGE = '([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?';
const ZONE_SHAPE = '(Z|z|[+-][0-9]{2}:[0-9]{2})';
const ZONE_RANGE = '(Z|z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)';

/**
 * The reasons of a date or timestamp that has the right shape but is not a moment that
 * exists, in the order they are tested. `zoned`: the value ends with Z or an offset.
 */
function momentReasons(v: string, name: string, zoned: boolean): string {
  const day = `substr(${v}, 1, 10)`;
  return [
    `WHEN starts_with(${v}, '0000') THEN ${text(`${name}: year 0000 is out of range (0001 to 9999), found `)} || ${shown(v)}`,
    `WHEN try_cast(${day} AS DATE) IS NULL THEN ${text(`${name}: `)} || ${day} || ' is not a date that exists'`,
    ...(zoned
      ? [
          `WHEN NOT regexp_full_match(${v}, ${text(`.*${ZONE_RANGE}`)}) THEN ${text(`${name}: the zone offset `)} || right(${v}, 6) || ' is outside -14:00 to +14:00'`,
        ]
      : []),
    `ELSE ${text(`${name}: `)} || ${shown(v)} || ' is not a time of day that exists (00:00:00 to 23:59:59)'`,
  ].join(' ');
}

/**
 * Columns read as text and checked by Sluice, where DuckDB's reader is too lenient: it
 * reads \`0x1F\`, \`1_000\` and \`12.5\` into an integer, \`NaN\` and \`inf\` into a double,
 * a timestamp without a zone as UTC, year 10000 and a +25:00 offset. What each type
 * accepts is documented in docs/values.md. The \`invalid\` tests are cheap (an anchored
 * regular expression and, where needed, one cast); the reasons, which may take
 * several tests, are computed only for the rows that fail. In JSON Lines every typed
 * value is checked this way.
 */
function checkOf(col: Column, format: Pipeline['input']['format']): Check | undefined {
  const name = col.name;
  const type = duckType(col);
  switch (col.type) {
    case 'integer':
    case 'bigint': {
      const range = INTEGER_RANGES[col.type];
      return {
        // Only signs and digits, and a cast that succeeds: no 0x1F, 1_000, 12.5, 1e3 or spaces.
        invalid: (v) => `(try_cast(${v} AS ${type}) IS NULL OR NOT regexp_full_match(${v}, ${INTEGER_SHAPE}))`,
        reason: (v) =>
          `CASE WHEN regexp_full_match(${v}, ${INTEGER_SHAPE}) THEN ${text(`${name}: `)} || ${shown(v)} || ${text(` is out of range for ${col.type} (${range})`)} ` +
          `ELSE ${text(`${name} must be an integer (an optional sign and digits), found `)} || ${shown(v)} END`,
      };
    }
    case 'double':
      return {
        // Decimal or exponent notation, finite: no NaN, inf, 1e309, 1_5.5 or 0x1F.
        invalid: (v) =>
          `(NOT regexp_full_match(${v}, ${DOUBLE_SHAPE}) OR coalesce(NOT isfinite(try_cast(${v} AS DOUBLE)), true))`,
        reason: (v) =>
          `CASE WHEN regexp_full_match(${v}, ${DOUBLE_SHAPE}) ` +
          `AND try_cast(${v} AS DOUBLE) IS NOT NULL THEN ${text(`${name}: `)} || ${shown(v)} || ' is out of range for double (finite values, up to about 1.8e308)' ` +
          `ELSE ${text(`${name} must be a finite number in decimal or exponent notation (such as -1.5 or 2e3), found `)} || ${shown(v)} END`,
      };
    case 'decimal': {
      const scale = col.scale ?? 0;
      const whole = (col.precision ?? 18) - scale;
      const pattern = text(`[+-]?[0-9]{0,${whole}}(\\.[0-9]{0,${scale}})?`);
      return {
        invalid: (v) => `(NOT regexp_full_match(${v}, ${pattern}) OR try_cast(${v} AS ${type}) IS NULL)`,
        reason: (v) =>
          `${text(`${name} must be a decimal with at most ${whole} digits before the point and ${scale} after, found `)} || ${shown(v)}`,
      };
    }
    case 'date': {
      const shape = text(DATE_SHAPE);
      return {
        invalid: (v) =>
          `(NOT regexp_full_match(${v}, ${shape}) OR starts_with(${v}, '0000') OR try_cast(${v} AS DATE) IS NULL)`,
        reason: (v) =>
          `CASE WHEN regexp_full_match(${v}, '[0-9]{5,}-.*') THEN ${text(`${name}: the year of `)} || ${shown(v)} || ' is out of range (0001 to 9999)' ` +
          `WHEN NOT regexp_full_match(${v}, ${shape}) THEN ${text(`${name} must be a date YYYY-MM-DD, found `)} || ${shown(v)} ` +
          `WHEN starts_with(${v}, '0000') THEN ${text(`${name}: year 0000 is out of range (0001 to 9999)`)} ` +
          `ELSE ${text(`${name}: `)} || ${shown(v)} || ' is not a date that exists' END`,
      };
    }
    case 'timestamp':
    case 'timestamptz': {
      const zoned = col.type === 'timestamptz';
      const strict = text(`${DATE_SHAPE}[T ]${TIME_RANGE}${zoned ? ZONE_RANGE : ''}`);
      const loose = text(`${DATE_SHAPE}[T ]${TIME_SHAPE}${zoned ? ZONE_SHAPE : ''}`);
      const expected = zoned
        ? 'an ISO 8601 timestamp with a zone or Z (such as 2024-03-01T10:00:00Z or 2024-03-01T19:00:00+09:00)'
        : 'an ISO 8601 timestamp without a zone (such as 2024-03-01T10:00:00)';
      return {
        invalid: (v) =>
          `(NOT regexp_full_match(${v}, ${strict}) OR starts_with(${v}, '0000') OR try_cast(${v} AS ${type}) IS NULL)`,
        reason: (v) =>
          `CASE WHEN regexp_full_match(${v}, '[0-9]{5,}-.*') THEN ${text(`${name}: the year of `)} || ${shown(v)} || ' is out of range (0001 to 9999)' ` +
          `WHEN NOT regexp_full_match(${v}, ${loose}) THEN ${text(`${name} must be ${expected}, found `)} || ${shown(v)} ` +
          `${momentReasons(v, name, zoned)} END`,
      };
    }
    case 'json':
      return {
        invalid: (v) => `NOT json_valid(${v})`,
        reason: (v) => `${text(`${name} must be JSON, found `)} || ${shown(v)}`,
      };
    default:
      return format === 'jsonl' && col.type !== 'string'
        ? {
            invalid: (v) => `try_cast(${v} AS ${type}) IS NULL`,
            reason: (v) => `${text(`${name} must be a ${col.type}, found `)} || ${shown(v)}`,
          }
        : undefined;
  }
}

/** A line rejected before DuckDB sees it (longer than \`maxLineBytes\`): kept out of the spool. */
interface EarlyReject {
  readonly part: number;
  readonly offset: number;
  readonly line: number;
  readonly reason: string;
  /** The line's first bytes, as the rejects' raw line. */
  readonly head: string;
}

interface Spool {
  readonly file: string;
  rowsRead: number;
  readonly parts: PartResult[];
  readonly early: EarlyReject[];
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

/** The reason of a record whose quote is still open at the end of its object. */
const unclosedReason = (line: number, lines: number) =>
  `QUOTE: the quote opened on line ${line} is never closed before the end of the file, so ${lines === 1 ? 'that line is' : `lines ${line} to ${line + lines - 1} are`} rejected as one record; ` +
  'close the quote (a quote inside a quoted field is written twice)';

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
  const spool: Spool = { file, rowsRead: 0, parts: [], early: [] };
  const { maxLineBytes } = pipeline.input;
  // Non-splittable CSV/TSV with quotes: a newline inside a quoted field stays in its record.
  const records = quotedRecords(pipeline);
  try {
    for (const [index, part] of chunk.parts.entries()) {
      const where = `s3://${config.inputBucket}/${part.key}`;
      // Physical lines so far: a record's line is the line it starts on, and it adds every line it spans.
      let lines = 0;
      // The first bytes of a rejected long line or unclosed record: enough for raw_line's characters.
      const keepBytes = Math.min(4 * pipeline.rejects.maxRawLineChars + 4, 64 * 1024);
      const splitter = new LineSplitter({
        readFrom: part.start > 0 ? part.start - 1 : 0,
        start: part.start,
        end: part.compression === 'none' ? part.end : Number.POSITIVE_INFINITY,
        maxLineBytes,
        where,
        keepBytes,
        ...(records ? { quote: pipeline.input.quote, escape: pipeline.input.escape } : {}),
        onLong: (offset, length, head, shape) => {
          const line = lines + 1;
          lines += shape.lines;
          if (offset === 0 && hasHeader) {
            throw new InputError(
              shape.unclosed
                ? `${where}: the header line opens a quote that is never closed before the end of the file`
                : `${where}: the header line is ${length} bytes long, more than input.maxLineBytes (${maxLineBytes})`,
            );
          }
          // The line counts as read and is rejected; the rest of the file is read.
          spool.rowsRead++;
          spool.early.push({
            part: index,
            offset,
            line,
            reason: shape.unclosed
              ? unclosedReason(line, shape.lines)
              : shape.lines > 1
                ? `LINE TOO LONG: the record on lines ${line} to ${line + shape.lines - 1} is ${length} bytes long, more than input.maxLineBytes (${maxLineBytes}); only its first bytes are kept here`
                : `LINE TOO LONG: the line is ${length} bytes long, more than input.maxLineBytes (${maxLineBytes}); only its first bytes are kept here`,
            head: (offset === 0 ? stripBom(head) : head).toString('utf8'),
          });
        },
        onLine: (offset, line, shape) => {
          const first = lines + 1;
          lines += shape.lines;
          if (offset === 0) {
            line = stripBom(line);
            if (hasHeader) {
              if (shape.unclosed) {
                throw new InputError(
                  `${where}: the header line opens a quote that is never closed before the end of the file`,
                );
              }
              checkHeader(pipeline, line, where);
              return;
            }
          }
          if (line.length === 0) return;
          spool.rowsRead++;
          if (shape.unclosed) {
            // DuckDB's reader would read past it: rejected here, with the line the quote opened on.
            const head = line.subarray(0, Math.min(line.length, keepBytes));
            spool.early.push({
              part: index,
              offset,
              line: first,
              reason: unclosedReason(first, shape.lines),
              head: head.toString('utf8'),
            });
            return;
          }
          out.record(index, offset, first, separator, line, jsonl);
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

/**
 * Non-splittable CSV/TSV with quotes: the spool then holds records, whose quoted fields
 * may hold \n or \r\n. The reader is told the spool's records end with \n, or a \r\n in
 * a quoted field stops it.
 */
const quotedRecords = (p: Pipeline) => p.input.format !== 'jsonl' && !p.input.splittable && p.input.quote !== '';

const readerOptions = (p: Pipeline) => `header = false, auto_detect = false, strict_mode = true, null_padding = false,
    max_line_size = ${p.input.maxLineBytes + 64}, store_rejects = true,
    rejects_table = 'sluice_rejects', rejects_scan = 'sluice_reject_scans'`;

/** DuckDB's reader over a CSV/TSV spool file: lineage, then the file's columns (checked ones as text). */
function csvSource(chunk: Chunk, p: Pipeline, file: string): string {
  const bySchema = new Map(p.schema.map((col) => [col.name, col]));
  const columns = fileColumns(chunk, p).map((name, i) => {
    const col = bySchema.get(name);
    if (!col) return `${literal(`__extra_${i}`)}: 'VARCHAR'`;
    return `${literal(name)}: ${literal(checkOf(col, p.input.format) ? 'VARCHAR' : duckType(col))}`;
  });
  const nulls = `[${p.input.nullStrings.map(literal).join(', ')}]`;
  return `read_csv(${literal(file)}, columns = {${[...SPOOL_LINEAGE, ...columns].join(', ')}},
      delim = ${literal(p.input.delimiter)}, quote = ${literal(p.input.quote)}, escape = ${literal(p.input.escape)},
      nullstr = ${nulls}, ${quotedRecords(p) ? "new_line = '\\n', " : ''}${readerOptions(p)})`;
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

/** What a chunk's parse leaves: rows staged (in staged.parquet) and rows rejected (in \`rejected\`). */
interface Books {
  rowsStaged: number;
  rowsRejected: number;
}

/** An error of DuckDB's CSV reader itself (a state it cannot leave), as opposed to one of our SQL. */
const isReaderError = (error: unknown) =>
  error instanceof Error &&
  /CSV Parser|reached an invalid state|Error when converting column|CSV Error/i.test(error.message);

/**
 * Parses, checks, transforms and stages one chunk. CSV/TSV take two scans of the spool
 * file and keep nothing in memory: the first finds the rows that fail Sluice's checks,
 * the second streams the other rows through the casts and the transform into Parquet
 * (DuckDB's reader leaves out, and records, the rows it cannot read). Only when the
 * counts do not add up does the rare path run (\`reconcile\`): it finds the lines DuckDB's
 * reader dropped, merged or split, and the rows the transform dropped.
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
    INSERT INTO parts VALUES ${partValues};`);
  await resetRejected(c, p, spool);
  const jsonl = p.input.format === 'jsonl';
  let books: Books | undefined;
  try {
    const source = jsonl ? await readJsonLines(c, p, spool) : csvSource(chunk, p, spool.file);
    const rowsStaged = await stage(c, chunk, p, source, dir);
    await addReaderRejects(c, chunk, p);
    books = { rowsStaged, rowsRejected: await countRejected(c) };
  } catch (error) {
    // DuckDB's reader can stop on a line it cannot read (a lone \r): find that line instead.
    if (jsonl || !isReaderError(error)) throw error;
  }
  if (!books || books.rowsStaged + books.rowsRejected !== spool.rowsRead) {
    books = await reconcile(c, chunk, p, spool, dir, books);
  }
  const { rowsStaged, rowsRejected } = books;
  if (rowsRejected > 0) await writeRejects(c, p, spool, dir);
  const day = q(p.table.partitionDay);
  const stagedFile = literal(join(dir, 'staged.parquet'));
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

const countRejected = (c: DuckDBConnection) => count(c, 'SELECT count(DISTINCT (part, line_offset)) FROM rejected');

/** Empties \`rejected\`, then adds the lines rejected before DuckDB saw them (too long). */
async function resetRejected(c: DuckDBConnection, p: Pipeline, spool: Spool): Promise<void> {
  await c.run(
    'CREATE OR REPLACE TEMP TABLE rejected (part INTEGER, line_offset BIGINT, local_line BIGINT, column_name VARCHAR, reason VARCHAR, raw VARCHAR)',
  );
  const d = spoolDelimiter(p);
  for (let i = 0; i < spool.early.length; i += 500) {
    const values = spool.early
      .slice(i, i + 500)
      .map(
        (r) =>
          `(${r.part}, ${r.offset}, ${r.line}, NULL, ${literal(r.reason)}, ${literal(`${r.part}${d}${r.offset}${d}${r.line}${d}${r.head}`)})`,
      );
    await c.run(`INSERT INTO rejected VALUES ${values.join(', ')}`);
  }
}

/** Sluice's checks (one scan), then the casts and the transform streamed into staged.parquet (a second scan). */
async function stage(c: DuckDBConnection, chunk: Chunk, p: Pipeline, source: string, dir: string): Promise<number> {
  const checks = p.schema.flatMap((col) => {
    const check = checkOf(col, p.input.format);
    return check ? [{ col, check, test: `(${q(col.name)} IS NOT NULL AND ${check.invalid(q(col.name))})` }] : [];
  });
  const jsonl = p.input.format === 'jsonl';
  if (checks.length > 0) {
    // One scan for every check; a row may fail several.
    await c.run(`INSERT INTO rejected
      SELECT __part, __offset, __line,
             CASE ${checks.map((k) => `WHEN ${k.test} THEN ${literal(k.col.name)}`).join(' ')} END,
             concat_ws('; ', ${checks
               .map((k) => `CASE WHEN ${k.test} THEN 'CAST: ' || ${k.check.reason(q(k.col.name))} END`)
               .join(', ')}),
             ${jsonl ? '__doc' : 'NULL'}
      FROM ${source} WHERE ${checks.map((k) => k.test).join(' OR ')}`);
  }
  // Lineage by CASE on the part number: no join per row. The anti join only when a line was rejected.
  const byPart = (field: 'key' | 'version') =>
    `CASE src.__part ${chunk.parts.map((part, i) => `WHEN ${i} THEN ${literal(part[field])}`).join(' ')} END`;
  const lineage = `${byPart('key')} AS source_key, ${byPart('version')} AS source_version, src.__offset AS source_offset`;
  // try_cast, though the checks passed: the optimizer may push a filter on a cast column (the
  // partition day's IS NOT NULL) below the anti join, onto the rejected rows too.
  const casts = new Map(
    checks.map(({ col }) => [col.name, `try_cast(src.${q(col.name)} AS ${duckType(col)}) AS ${q(col.name)}`]),
  );
  const columns = p.schema.map((col) => casts.get(col.name) ?? `src.${q(col.name)}`).join(', ');
  const failed = (await count(c, 'SELECT count(*) FROM rejected')) > 0;
  await c.run(`CREATE OR REPLACE TEMP VIEW input AS SELECT ${columns}, ${lineage} FROM ${source} src
      ${failed ? 'ANTI JOIN rejected ON rejected.part = src.__part AND rejected.line_offset = src.__offset' : ''}`);
  const day = q(p.table.partitionDay);
  const tableColumns = [...p.table.columns, ...LINEAGE_COLUMNS].map((col) => q(col.name)).join(', ');
  return count(
    c,
    `COPY (SELECT ${tableColumns} FROM (${p.transform}) WHERE ${day} IS NOT NULL)
     TO ${literal(join(dir, 'staged.parquet'))} (FORMAT parquet, COMPRESSION zstd)`,
  );
}

/**
 * The reader's rejects (every scan records them: grouped to one row per line). A row
 * without lineage is the tail of a line the reader split: that line is found by
 * \`reconcile\`, not here.
 */
async function addReaderRejects(c: DuckDBConnection, chunk: Chunk, p: Pipeline, skipKnown = false): Promise<void> {
  const d = literal(spoolDelimiter(p));
  const expected = p.input.format === 'jsonl' ? 1 : fileColumns(chunk, p).length;
  await c.run(`INSERT INTO rejected
    SELECT * FROM (
      SELECT try_cast(split_part(csv_line, ${d}, 1) AS INTEGER) AS part, try_cast(split_part(csv_line, ${d}, 2) AS BIGINT) AS line_offset,
             try_cast(split_part(csv_line, ${d}, 3) AS BIGINT), first(column_name ORDER BY column_idx),
             string_agg(DISTINCT CASE WHEN error_type IN ('MISSING COLUMNS', 'TOO MANY COLUMNS')
                        THEN error_type || ': expected ${expected} columns'
                        ELSE error_type || ': ' || error_message END, '; '),
             first(csv_line)
      FROM sluice_rejects GROUP BY 1, 2, 3) r
    ${skipKnown ? 'ANTI JOIN rejected k ON k.part = r.part AND k.line_offset = r.line_offset' : ''}
    WHERE r.part IS NOT NULL AND r.line_offset IS NOT NULL`);
}

/** One record of the spool file: its lineage, its bytes in the spool, and what is wrong with it for DuckDB's reader. */
interface SpooledLine {
  readonly part: number;
  readonly offset: number;
  readonly line: number;
  readonly start: number;
  readonly end: number;
  readonly problem: string | undefined;
}

const UNCLOSED_QUOTE =
  'QUOTE: a quoted field is not closed on this line; in a splittable file a field may not contain a newline (set input.splittable: false)';
const UNCLOSED_QUOTE_RECORD =
  'QUOTE: a quoted field is not closed before the end of the file; close the quote (a quote inside a quoted field is written twice)';
const LONE_CR =
  'LINE BREAK: the line holds a carriage return (\\r) that does not end it; lines end with \\n or \\r\\n and fields may not contain a lone \\r';

/**
 * Reads the spool back, line by line, and tells the lines DuckDB's reader cannot read
 * on their own: a quote left open (the reader would merge the next lines into it) or a
 * lone carriage return (the reader would split the line, or stop).
 */
function scanSpool(
  bytes: Buffer,
  delimiter: string,
  quote: string,
  escapeChar: string,
  records = false,
): SpooledLine[] {
  const sep = delimiter.charCodeAt(0);
  const qc = quote.length > 0 ? quote.charCodeAt(0) : -1;
  const ec = escapeChar.length > 0 ? escapeChar.charCodeAt(0) : qc;
  const out: SpooledLine[] = [];
  for (let start = 0; start < bytes.length; ) {
    const first = bytes.indexOf(sep, start);
    const second = bytes.indexOf(sep, first + 1);
    const third = bytes.indexOf(sep, second + 1);
    const record = records && qc >= 0 ? recordAt(bytes, third + 1, qc, ec) : undefined;
    let end = record ? record.end : bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    let problem: string | undefined;
    if (record) problem = record.loneCr ? LONE_CR : record.open ? UNCLOSED_QUOTE_RECORD : undefined;
    else if (bytes.subarray(third + 1, end).includes(0x0d)) problem = LONE_CR;
    else if (qc >= 0) {
      let open = false;
      for (let i = third + 1; i < end; i++) {
        const b = bytes[i];
        if (open && b === ec && ec !== qc && i + 1 < end) i++;
        else if (b === qc) open = !open;
      }
      if (open) problem = UNCLOSED_QUOTE;
    }
    out.push({
      part: Number(bytes.toString('latin1', start, first)),
      offset: Number(bytes.toString('latin1', first + 1, second)),
      line: Number(bytes.toString('latin1', second + 1, third)),
      start,
      end,
      problem,
    });
    start = end + 1;
  }
  return out;
}

/**
 * A record of a spool of quoted records (see \`quotedRecords\`), its body from \`from\`:
 * the \n that ends it outside quotes (or the end of the bytes), whether a quote is left
 * open, and whether it holds a \r outside quotes (a \r\n inside quotes is part of a field).
 */
function recordAt(
  bytes: Buffer,
  from: number,
  qc: number,
  ec: number,
): { end: number; open: boolean; loneCr: boolean } {
  let open = false;
  let loneCr = false;
  let i = from;
  for (; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0x0a) {
      if (!open) break;
    } else if (open && b === ec && ec !== qc && (bytes[i + 1] === qc || bytes[i + 1] === ec)) i++;
    else if (b === qc) open = !open;
    else if (b === 0x0d && !open) loneCr = true;
  }
  return { end: i, open, loneCr };
}

/** Writes the given spool lines to a new spool file. */
function writeLines(bytes: Buffer, lines: readonly SpooledLine[], file: string): void {
  const out = new SpoolWriter(file);
  try {
    for (const l of lines) out.raw(bytes.subarray(l.start, l.end));
  } finally {
    out.close();
  }
}

/**
 * The rare path, when the books do not balance. DuckDB's reader merges a line whose
 * quote is left open with the lines after it, stops at a lone \r, and can drop lines at
 * the boundary of its buffers. So: the spool is read back in JavaScript, lines the reader
 * cannot read alone are rejected with their reason, the others are parsed into \`parsed\`
 * (lines still missing are read again on their own), and the chunk is checked and
 * staged again from \`parsed\`. Rows the transform dropped are rejected after that. If a
 * line is still unaccounted for, that is a bug in the worker: the chunk fails naming it.
 */
async function reconcile(
  c: DuckDBConnection,
  chunk: Chunk,
  p: Pipeline,
  spool: Spool,
  dir: string,
  books: Books | undefined,
): Promise<Books> {
  const jsonl = p.input.format === 'jsonl';
  const bytes = readFileSync(spool.file);
  const lines = scanSpool(
    bytes,
    spoolDelimiter(p),
    jsonl ? '"' : p.input.quote,
    jsonl ? '"' : p.input.escape,
    quotedRecords(p),
  );
  const indexFile = join(dir, 'spooled.csv');
  writeFileSync(indexFile, lines.map((l) => `${l.part},${l.offset},${l.line}\n`).join(''));
  await c.run(`CREATE OR REPLACE TEMP TABLE spooled AS SELECT * FROM read_csv(${literal(indexFile)},
      columns = {'part': 'INTEGER', 'line_offset': 'BIGINT', 'local_line': 'BIGINT'}, header = false, auto_detect = false)`);
  if (!jsonl) {
    await c.run('DROP TABLE IF EXISTS sluice_rejects; DROP TABLE IF EXISTS sluice_reject_scans');
    await resetRejected(c, p, spool);
    const bad = lines.filter((l) => l.problem !== undefined);
    for (let i = 0; i < bad.length; i += 500) {
      const values = bad
        .slice(i, i + 500)
        .map((l) => `(${l.part}, ${l.offset}, ${l.line}, NULL, ${literal(l.problem ?? '')}, NULL)`);
      await c.run(`INSERT INTO rejected VALUES ${values.join(', ')}`);
    }
    let todo = lines.filter((l) => l.problem === undefined);
    for (let pass = 0; pass < 3 && todo.length > 0; pass++) {
      const file = join(dir, `spool-${pass}.csv`);
      writeLines(bytes, todo, file);
      const read = `SELECT * FROM ${csvSource(chunk, p, file)}`;
      await c.run(pass === 0 ? `CREATE OR REPLACE TEMP TABLE parsed AS ${read}` : `INSERT INTO parsed ${read}`);
      await c.run(`CREATE OR REPLACE TEMP TABLE read_back AS SELECT __part AS part, __offset AS line_offset FROM parsed
        UNION SELECT try_cast(split_part(csv_line, ${literal(spoolDelimiter(p))}, 1) AS INTEGER),
                     try_cast(split_part(csv_line, ${literal(spoolDelimiter(p))}, 2) AS BIGINT) FROM sluice_rejects`);
      const seen = new Set(
        (await c.runAndReadAll('SELECT part, line_offset FROM read_back')).getRows().map(([a, b]) => `${a}:${b}`),
      );
      todo = todo.filter((l) => !seen.has(`${l.part}:${l.offset}`));
    }
    // A line read twice (the reader's buffers overlapping) counts once.
    await c.run(`CREATE OR REPLACE TEMP TABLE parsed AS
      SELECT * FROM parsed QUALIFY row_number() OVER (PARTITION BY __part, __offset) = 1`);
    await addReaderRejects(c, chunk, p, true);
  }
  // JSON Lines: the spool is written quoted by Sluice, the reader reads it whole; only the transform is left.
  let rowsStaged = jsonl ? (books?.rowsStaged ?? 0) : await stage(c, chunk, p, 'parsed', dir);
  let rowsRejected = await countRejected(c);
  if (rowsStaged + rowsRejected !== spool.rowsRead) {
    rowsRejected = await rejectUnplaced(c, p);
    rowsStaged = await count(c, `SELECT count(*) FROM read_parquet(${literal(join(dir, 'staged.parquet'))})`);
  }
  if (rowsStaged + rowsRejected !== spool.rowsRead) {
    const [lost] = (
      await c.runAndReadAll(`SELECT s.part, s.line_offset FROM spooled s
        ANTI JOIN rejected r ON r.part = s.part AND r.line_offset = s.line_offset
        ANTI JOIN (SELECT parts.part, st.source_offset FROM read_parquet(${literal(join(dir, 'staged.parquet'))}) st
                   JOIN parts USING (source_key, source_version)) st ON st.part = s.part AND st.source_offset = s.line_offset
        ORDER BY 1, 2 LIMIT 1`)
    ).getRows();
    const where = lost ? `the line at byte ${lost[1]} of ${chunk.parts[Number(lost[0])]?.key}` : 'a line';
    throw new VerifyError(
      `chunk ${chunk.index} of run ${chunk.runId}: read ${spool.rowsRead} rows but staged ${rowsStaged} and rejected ${rowsRejected}; ` +
        `${where} was neither loaded nor rejected. This is a fault in Sluice's worker, not in the file: please report it with this message`,
    );
  }
  return { rowsStaged, rowsRejected };
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

/** The number written in ASCII digits at bytes[from, to): the part and offset of the spool prefix. */
function digitsAt(bytes: Buffer, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n = n * 10 + ((bytes[i] as number) - 0x30);
  return n;
}

/**
 * Finds spooled lines by (part, offset) and returns them as JSON Lines for DuckDB. It runs
 * whenever a chunk has a rejected row, so it reads the prefix digits in place rather than
 * making two strings per line of the chunk.
 */
function spooledLines(p: Pipeline, file: string, wanted: ReadonlyMap<number, ReadonlySet<number>>): string {
  const bytes = readFileSync(file);
  const sep = spoolDelimiter(p).charCodeAt(0);
  const qc = quotedRecords(p) ? p.input.quote.charCodeAt(0) : -1;
  const ec = qc >= 0 ? p.input.escape.charCodeAt(0) : -1;
  const out: string[] = [];
  let size = 0;
  for (const offsets of wanted.values()) size += offsets.size;
  for (let start = 0; start < bytes.length && out.length < size; ) {
    const first = bytes.indexOf(sep, start);
    const second = bytes.indexOf(sep, first + 1);
    // Quoted records may hold newlines: their end is found past the prefix (part, offset, line).
    let end = qc >= 0 ? recordAt(bytes, bytes.indexOf(sep, second + 1) + 1, qc, ec).end : bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    const part = digitsAt(bytes, start, first);
    const offset = digitsAt(bytes, first + 1, second);
    if (wanted.get(part)?.has(offset)) {
      out.push(JSON.stringify({ part, line_offset: offset, line: bytes.toString('utf8', start, end) }));
    }
    start = end + 1;
  }
  return `${out.join('\n')}\n`;
}

/** The (part, offset) rows of a query as offsets by part. */
function offsetsByPart(rows: readonly (readonly unknown[])[]): Map<number, Set<number>> {
  const byPart = new Map<number, Set<number>>();
  for (const [part, offset] of rows) {
    const offsets = byPart.get(Number(part)) ?? new Set<number>();
    offsets.add(Number(offset));
    byPart.set(Number(part), offsets);
  }
  return byPart;
}

/** Rejects with local line numbers; Verify turns them into line numbers in the file. */
async function writeRejects(c: DuckDBConnection, p: Pipeline, spool: Spool, dir: string): Promise<void> {
  const d = literal(spoolDelimiter(p));
  // Lines DuckDB parsed but Sluice rejected afterwards have no raw text yet: take it from the spool file.
  const missing = (await c.runAndReadAll('SELECT part, line_offset FROM rejected WHERE raw IS NULL')).getRows();
  if (missing.length > 0) {
    const file = join(dir, 'raw-lines.jsonl');
    writeFileSync(file, spooledLines(p, spool.file, offsetsByPart(missing)));
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
