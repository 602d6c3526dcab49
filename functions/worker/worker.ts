/**
 * The partition worker: reads one chunk (byte ranges of input objects), lets DuckDB
 * parse, type and transform its rows, writes the good rows as Parquet to staging and
 * every rejected row, with its reason, to the run's rejects. Nothing is dropped:
 * rows read = rows staged + rows rejected, or the chunk fails.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Config } from '../config.ts';
import type { Chunk, ChunkPart, ChunkResult, ChunkSummary, PartResult } from '../contracts.ts';
import { RefusedInputError, VerifyError } from '../errors.ts';
import { formatOf, type Rows } from '../formats/index.ts';
import { refuseObjects } from '../ledger/ledger.ts';
import { type Column, LINEAGE_COLUMNS, type Pipeline } from '../pipeline/definition.ts';
import { duckType } from '../pipeline/duck-types.ts';
import { literal } from '../pipeline/sql.ts';
import { layout } from '../storage/layout.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { decompress } from './compression.ts';
import { withConnection } from './duckdb.ts';
import { LineSplitter, stripBom } from './lines.ts';
import { SpoolIndex } from './spool-index.ts';
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

interface Check {
  /**
   * The regular expression (unquoted) the whole text must match, if any. The one scan tests
   * the shapes of all checked columns of a row with ONE match (see \`shapesOf\`).
   */
  readonly shape?: string;
  /**
   * SQL that is true when the (non-null) text `value` is not acceptable besides its shape,
   * given `typed`, the value cast once with try_cast (the same cast the staged value comes
   * from: each value is parsed once). Cheap: it runs on every value.
   */
  readonly other: (value: string, typed: string) => string;
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
const INTEGER_RE = '[+-]?[0-9]+';
const DOUBLE_RE = '[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?';
const INTEGER_SHAPE = text(INTEGER_RE);
const DOUBLE_SHAPE = text(DOUBLE_RE);
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
function checkOf(col: Column, allText: boolean): Check | undefined {
  const name = col.name;
  switch (col.type) {
    case 'integer':
    case 'bigint': {
      const range = INTEGER_RANGES[col.type];
      return {
        // Only signs and digits, and a cast that succeeds: no 0x1F, 1_000, 12.5, 1e3 or spaces.
        shape: INTEGER_RE,
        other: (_v, t) => `${t} IS NULL`,
        reason: (v) =>
          `CASE WHEN regexp_full_match(${v}, ${INTEGER_SHAPE}) THEN ${text(`${name}: `)} || ${shown(v)} || ${text(` is out of range for ${col.type} (${range})`)} ` +
          `ELSE ${text(`${name} must be an integer (an optional sign and digits), found `)} || ${shown(v)} END`,
      };
    }
    case 'double':
      return {
        // Decimal or exponent notation, finite: no NaN, inf, 1e309, 1_5.5 or 0x1F.
        shape: DOUBLE_RE,
        other: (_v, t) => `(${t} IS NULL OR NOT isfinite(${t}))`,
        reason: (v) =>
          `CASE WHEN regexp_full_match(${v}, ${DOUBLE_SHAPE}) ` +
          `AND try_cast(${v} AS DOUBLE) IS NOT NULL THEN ${text(`${name}: `)} || ${shown(v)} || ' is out of range for double (finite values, up to about 1.8e308)' ` +
          `ELSE ${text(`${name} must be a finite number in decimal or exponent notation (such as -1.5 or 2e3), found `)} || ${shown(v)} END`,
      };
    case 'decimal': {
      const scale = col.scale ?? 0;
      const whole = (col.precision ?? 18) - scale;
      return {
        shape: `[+-]?[0-9]{0,${whole}}(\\.[0-9]{0,${scale}})?`,
        other: (_v, t) => `${t} IS NULL`,
        reason: (v) =>
          `${text(`${name} must be a decimal with at most ${whole} digits before the point and ${scale} after, found `)} || ${shown(v)}`,
      };
    }
    case 'date': {
      const shape = text(DATE_SHAPE);
      return {
        shape: DATE_SHAPE,
        other: (v, t) => `(${t} IS NULL OR starts_with(${v}, '0000'))`,
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
      const strict = `${DATE_SHAPE}[T ]${TIME_RANGE}${zoned ? ZONE_RANGE : ''}`;
      const loose = text(`${DATE_SHAPE}[T ]${TIME_SHAPE}${zoned ? ZONE_SHAPE : ''}`);
      const expected = zoned
        ? 'an ISO 8601 timestamp with a zone or Z (such as 2024-03-01T10:00:00Z or 2024-03-01T19:00:00+09:00)'
        : 'an ISO 8601 timestamp without a zone (such as 2024-03-01T10:00:00)';
      return {
        shape: strict,
        other: (v, t) => `(${t} IS NULL OR starts_with(${v}, '0000'))`,
        reason: (v) =>
          `CASE WHEN regexp_full_match(${v}, '[0-9]{5,}-.*') THEN ${text(`${name}: the year of `)} || ${shown(v)} || ' is out of range (0001 to 9999)' ` +
          `WHEN NOT regexp_full_match(${v}, ${loose}) THEN ${text(`${name} must be ${expected}, found `)} || ${shown(v)} ` +
          `${momentReasons(v, name, zoned)} END`,
      };
    }
    case 'json':
      return {
        other: (v) => `NOT json_valid(${v})`,
        reason: (v) => `${text(`${name} must be JSON, found `)} || ${shown(v)}`,
      };
    default:
      return allText && col.type !== 'string'
        ? {
            other: (_v, t) => `${t} IS NULL`,
            reason: (v) => `${text(`${name} must be a ${col.type}, found `)} || ${shown(v)}`,
          }
        : undefined;
  }
}

/** SQL that is true when the (non-null) text `v` of a check's column is not acceptable; `t`: its try_cast. */
const invalid = (check: Check, v: string, t: string) =>
  check.shape === undefined
    ? check.other(v, t)
    : `(${check.other(v, t)} OR NOT regexp_full_match(${v}, ${text(check.shape)}))`;

/**
 * SQL that is true when one of the texts fails its shape, in ONE regular expression match:
 * the texts joined by \`|\` (NULL as empty), against the shapes joined the same way, each
 * optional. No shape matches \`|\`, so each text meets its own shape; an empty text that
 * is not NULL fails its cast, which \`other\` tests. One match per row instead of one per
 * column: 0.2 s less per 580,000 rows of four checked columns.
 */
function shapesFail(shaped: readonly { readonly shape: string; readonly value: string }[]): string {
  if (shaped.length === 0) return 'false';
  if (shaped.length === 1) {
    const [one] = shaped as [{ shape: string; value: string }];
    return `(${one.value} IS NOT NULL AND NOT regexp_full_match(${one.value}, ${text(one.shape)}))`;
  }
  const joined = shaped.map((k) => `coalesce(${k.value}, '')`).join(" || '|' || ");
  const pattern = shaped.map((k) => `(${k.shape})?`).join('\\|');
  return `NOT regexp_full_match(${joined}, ${text(pattern)})`;
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

/** The lines of a chunk with the same columns in the same order (one header's), spooled to one file. */
interface Spool {
  readonly file: string;
  /** The columns of its lines, in file order. */
  readonly columns: readonly string[];
  rowsRead: number;
  readonly early: EarlyReject[];
  /** Where each spooled line is in the file, for the second look at the few that need one. */
  readonly index: SpoolIndex;
}

/** A chunk spooled: one spool per column order (one, unless whole objects packed together have different headers). */
interface Spooled {
  readonly spools: readonly Spool[];
  readonly parts: readonly PartResult[];
}

/** What parseAndStage leaves of one spool: its counts and days, its staged and rejected rows in its folder. */
interface Staged {
  readonly rowsStaged: number;
  readonly rowsRejected: number;
  readonly days: readonly string[];
  readonly dir: string;
}

export async function processChunk(chunk: Chunk, deps: WorkerDeps): Promise<ChunkResult> {
  const { store, config, pipeline } = deps;
  const dir = await mkdtemp(join(config.tmpDir, `chunk-${chunk.index}-`));
  try {
    const spooled = await spoolChunk(chunk, deps, dir);
    const staged: Staged[] = [];
    for (const [i, spool] of spooled.spools.entries()) {
      const own = spooled.spools.length === 1 ? dir : join(dir, `columns-${i}`);
      mkdirSync(own, { recursive: true });
      // The spool's own column order: the lines of a header in another order are read by it.
      const ofSpool: Chunk = { ...chunk, columns: spool.columns };
      const books = await withConnection(config.tmpDir, (c) => parseAndStage(c, ofSpool, pipeline, spool, own));
      staged.push({ ...books, dir: own });
    }
    const result = await combineStaged(staged, dir, config.tmpDir);
    const stagingKey = result.rowsStaged > 0 ? layout.staging(pipeline.name, chunk.runId, chunk.index) : null;
    const rejectsKey = result.rowsRejected > 0 ? layout.chunkRejects(pipeline.name, chunk.runId, chunk.index) : null;
    await Promise.all([
      stagingKey ? store.putFile(config.workingBucket, stagingKey, join(dir, 'staged.parquet')) : undefined,
      rejectsKey ? store.putFile(config.workingBucket, rejectsKey, join(dir, 'rejects.parquet')) : undefined,
    ]);
    const chunkResult: ChunkResult = {
      index: chunk.index,
      rowsRead: spooled.spools.reduce((sum, s) => sum + s.rowsRead, 0),
      rowsStaged: result.rowsStaged,
      rowsRejected: result.rowsRejected,
      days: result.days,
      parts: spooled.parts,
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
 * The chunk's counts, days and files from those of its spools: with one spool (nearly always)
 * its files are the chunk's; with several, their rows are copied into one staged and one
 * rejects file, so that a chunk has one of each whatever headers its objects had.
 */
async function combineStaged(
  staged: readonly Staged[],
  dir: string,
  tmpDir: string,
): Promise<{ rowsStaged: number; rowsRejected: number; days: string[] }> {
  const rowsStaged = staged.reduce((sum, s) => sum + s.rowsStaged, 0);
  const rowsRejected = staged.reduce((sum, s) => sum + s.rowsRejected, 0);
  const days = [...new Set(staged.flatMap((s) => s.days))].sort();
  if (staged.length > 1) {
    const files = (name: string, has: (s: Staged) => boolean) =>
      `[${staged
        .filter(has)
        .map((s) => literal(join(s.dir, name)))
        .join(', ')}]`;
    await withConnection(tmpDir, async (c) => {
      if (rowsStaged > 0) {
        await c.run(`COPY (SELECT * FROM read_parquet(${files('staged.parquet', (s) => s.rowsStaged > 0)}))
          TO ${literal(join(dir, 'staged.parquet'))} (FORMAT parquet, COMPRESSION zstd)`);
      }
      if (rowsRejected > 0) {
        await c.run(`COPY (SELECT * FROM read_parquet(${files('rejects.parquet', (s) => s.rowsRejected > 0)}))
          TO ${literal(join(dir, 'rejects.parquet'))} (FORMAT parquet)`);
      }
    });
  }
  return { rowsStaged, rowsRejected, days };
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
const spoolDelimiter = (p: Pipeline) => formatOf(p).spool.separator;

/** The reason of a record whose quote is still open at the end of its object. */
const unclosedReason = (line: number, lines: number) =>
  `QUOTE: the quote opened on line ${line} is never closed before the end of the file, so ${lines === 1 ? 'that line is' : `lines ${line} to ${line + lines - 1} are`} rejected as one record; ` +
  'close the quote (a quote inside a quoted field is written twice)';

/**
 * Writes `part<d>offset<d>line number<d><line>` for every data line of the chunk to a
 * local file for DuckDB to parse; the prefix carries each row's lineage through
 * DuckDB's reader and its rejects. Each whole object's header is checked here, as the
 * object is read: lines go to the spool of their header's column order (there is one
 * unless objects packed into the chunk order their columns differently). An object that
 * is not the pipeline's format as a whole (header, compression) is refused: every such
 * object of the chunk gets a refused marker, then the chunk fails naming them.
 */
async function spoolChunk(chunk: Chunk, deps: WorkerDeps, dir: string): Promise<Spooled> {
  const { pipeline, config, store } = deps;
  const format = formatOf(pipeline);
  const separator = format.spool.separator.charCodeAt(0);
  const { hasHeader } = format;
  const { quoted } = format.spool;
  const writers = new Map<string, { readonly spool: Spool; readonly out: SpoolWriter }>();
  const writerOf = (columns: readonly string[]) => {
    const signature = columns.join('\n');
    let writer = writers.get(signature);
    if (!writer) {
      const file = join(dir, `rows-${writers.size}.csv`);
      writer = {
        spool: { file, columns, rowsRead: 0, early: [], index: new SpoolIndex() },
        out: new SpoolWriter(file),
      };
      writers.set(signature, writer);
    }
    return writer;
  };
  const parts: PartResult[] = [];
  const refused: { readonly key: string; readonly version: string; readonly error: RefusedInputError }[] = [];
  const { maxLineBytes } = pipeline.input;
  // Non-splittable CSV/TSV with quotes: a newline inside a quoted field stays in its record.
  const { records } = format;
  try {
    for (const [index, part] of chunk.parts.entries()) {
      const where = `s3://${config.inputBucket}/${part.key}`;
      // A part from an object's start with a header: its spool is known once its header is read.
      let current = hasHeader && part.start === 0 ? undefined : writerOf(fileColumns(chunk, pipeline));
      const spoolOf = () => {
        if (!current) throw new Error(`${where}: a line before the header`); // unreachable: the header is line 1
        return current;
      };
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
        ...(records ? { quote: records.quote, escape: records.escape } : {}),
        onLong: (offset, length, head, shape) => {
          const line = lines + 1;
          lines += shape.lines;
          if (offset === 0 && hasHeader) {
            throw new RefusedInputError(
              shape.unclosed
                ? `${where}: the header line opens a quote that is never closed before the end of the file`
                : `${where}: the header line is ${length} bytes long, more than input.maxLineBytes (${maxLineBytes})`,
            );
          }
          // The line counts as read and is rejected; the rest of the file is read.
          const { spool } = spoolOf();
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
        // Spans, not Buffers: this runs once per line of the chunk.
        onSpan: (offset, bytes, start, end, shape) => {
          const first = lines + 1;
          lines += shape.lines;
          let from = start;
          if (offset === 0) {
            from = end - stripBom(bytes.subarray(start, end)).length;
            if (hasHeader) {
              if (shape.unclosed) {
                throw new RefusedInputError(
                  `${where}: the header line opens a quote that is never closed before the end of the file`,
                );
              }
              current = writerOf(format.columns(bytes.subarray(from, end), where));
              return;
            }
          }
          if (end === from) return;
          const { spool, out } = spoolOf();
          spool.rowsRead++;
          if (shape.unclosed) {
            // DuckDB's reader would read past it: rejected here, with the line the quote opened on.
            const head = bytes.subarray(from, Math.min(end, from + keepBytes));
            spool.early.push({
              part: index,
              offset,
              line: first,
              reason: unclosedReason(first, shape.lines),
              head: head.toString('utf8'),
            });
            return;
          }
          spool.index.add(index, offset, out.position);
          out.recordSpan(index, offset, first, separator, bytes, from, end, quoted);
        },
      });
      try {
        for await (const bytes of partBytes(store, pipeline, config.inputBucket, part)) {
          if (!splitter.push(bytes)) break;
        }
        splitter.finish();
      } catch (error) {
        // The object is bad as a whole (header, compression): refused; the chunk's other objects are still checked.
        if (!(error instanceof RefusedInputError)) throw error;
        refused.push({ key: part.key, version: part.version, error });
      }
      parts.push({ key: part.key, start: part.start, lines });
    }
    // A chunk of header-only objects still has its (empty) spool.
    if (writers.size === 0) writerOf(fileColumns(chunk, pipeline));
  } finally {
    for (const { spool, out } of writers.values()) {
      out.close();
      spool.index.close(out.position);
    }
  }
  // Every refused object of the chunk is marked (scheduled runs skip it), then the chunk fails naming them.
  if (refused.length > 0) {
    await refuseObjects(deps.store, config.workingBucket, pipeline.name, chunk.runId, refused);
  }
  return { spools: [...writers.values()].map((w) => w.spool), parts };
}

async function count(c: DuckDBConnection, sql: string): Promise<number> {
  const reader = await c.runAndReadAll(sql);
  return Number(reader.getRows()[0]?.[0] ?? 0);
}

/**
 * The columns of the chunk's lines, in file order: those of its spool (the header read by the
 * worker), of an object cut into ranges (the planner read its header; in the first part in
 * manifests planned before chunks held it), or the schema's.
 */
function fileColumns(chunk: Chunk, p: Pipeline): readonly string[] {
  return chunk.columns ?? chunk.parts[0]?.columns ?? p.schema.map((col) => col.name);
}

/** The rows of a spool file, read by the pipeline's format (checked columns as text). */
function readSpool(c: DuckDBConnection, chunk: Chunk, p: Pipeline, file: string): Promise<Rows> {
  const format = formatOf(p);
  return format.read(c, file, fileColumns(chunk, p), (col) => checkOf(col, format.allText) !== undefined);
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
 * Parses, checks, transforms and stages one chunk. CSV/TSV take ONE scan of the spool
 * file and keep nothing in memory (\`stage\`): good rows to staged.parquet, the few others
 * to a file beside it for a second look (DuckDB's reader leaves out, and records, the rows
 * it cannot read). Only when the counts do not add up does the rare path run
 * (\`reconcile\`): it finds the lines DuckDB's reader dropped, merged or split, and the rows
 * the transform dropped.
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
  const format = formatOf(p);
  let books: Books | undefined;
  try {
    const rows = await readSpool(c, chunk, p, spool.file);
    const source = rows.table ? tableSource(rows.sql) : spoolSource(chunk, p, spool, dir, rows.sql);
    const rowsStaged = await stage(c, chunk, p, source, dir);
    await addReaderRejects(c, chunk, p);
    books = { rowsStaged, rowsRejected: await countRejected(c) };
  } catch (error) {
    // DuckDB's reader can stop on a line it cannot read (a lone \r): find that line instead.
    if (!format.lossyReader || !isReaderError(error)) throw error;
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
      // Days formatted after DISTINCT: strftime on every row took half of this query.
      `SELECT count(*) - count(DISTINCT ${identity}),
              list_transform(list_sort(list(DISTINCT CAST(${day} AS DATE))), d -> strftime(d, '%Y-%m-%d'))
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

/**
 * Where a stage reads its rows: the SQL of the rows, and how to get a source of only
 * the lines of temp table \`bad\` (part, line_offset), for the second look at them.
 */
interface Source {
  readonly sql: string;
  readonly only: (c: DuckDBConnection) => Promise<string>;
}

/** A temp table (\`parsed\`) as a source: its bad lines by a semi join. */
const tableSource = (table: string): Source => ({
  sql: table,
  only: async () => `(SELECT * FROM ${table} t SEMI JOIN bad ON bad.part = t.__part AND bad.line_offset = t.__offset)`,
});

/** The spool file as a source: its bad lines read back by position (SpoolIndex) into a small spool of their own. */
function spoolSource(chunk: Chunk, p: Pipeline, spool: Spool, dir: string, sql: string): Source {
  return {
    sql,
    only: async (c) => {
      const rows = (await c.runAndReadAll('SELECT part, line_offset FROM bad')).getRows();
      const file = join(dir, 'second-look.csv');
      const out = new SpoolWriter(file);
      try {
        for (const r of spool.index.read(
          spool.file,
          rows.map(([part, offset]) => [Number(part), Number(offset)] as const),
        ))
          out.raw(r.record);
      } finally {
        out.close();
      }
      return (await readSpool(c, chunk, p, file)).sql;
    },
  };
}

/** The checked columns of a pipeline, each with the SQL that is true when its value fails. */
function checksOf(p: Pipeline, typed: (col: Column) => string, value: (col: Column) => string = (col) => q(col.name)) {
  return p.schema.flatMap((col) => {
    const check = checkOf(col, formatOf(p).allText);
    if (!check) return [];
    const v = value(col);
    return [{ col, check, value: v, test: `(${v} IS NOT NULL AND ${invalid(check, v, typed(col))})` }];
  });
}

/**
 * The one scan: every value is parsed once (the checked ones by one try_cast, their text
 * kept beside it for the shape tests), every row goes through the transform, and one
 * partitioned COPY writes the good rows to staged.parquet and the others (a value that
 * fails Sluice's checks, or an empty partition column) to a small file beside it. A
 * failing row travels through the transform with its source_offset encoded as
 * -1 - offset: the transform passes lineage through unchanged, so the mark survives it
 * whatever its SQL (and the transform sees NULL where a value failed).
 *
 * Then the second look, at those rows only: their lines are read again on their own and
 * the reasons computed (several tests per value, done only for failing rows).
 */
async function stage(c: DuckDBConnection, chunk: Chunk, p: Pipeline, source: Source, dir: string): Promise<number> {
  const raw = new Map(p.schema.map((col, i) => [col.name, q(`__sluice_text_${i}`)]));
  const checks = checksOf(
    p,
    (col) => q(col.name),
    (col) => raw.get(col.name) as string,
  );
  // Checked columns: the typed value under the column's name, the text beside it.
  const typedColumns = checks.map(({ col }) => `try_cast(${q(col.name)} AS ${duckType(col)}) AS ${q(col.name)}`);
  const texts = checks.map(({ col }) => `${q(col.name)} AS ${raw.get(col.name)}`);
  const inner =
    checks.length > 0 ? `SELECT * REPLACE (${typedColumns.join(', ')}), ${texts.join(', ')} FROM ${source.sql}` : null;
  // Lineage by CASE on the part number: no join per row.
  const byPart = (field: 'key' | 'version') =>
    `CASE src.__part ${chunk.parts.map((part, i) => `WHEN ${i} THEN ${literal(part[field])}`).join(' ')} END`;
  // A row fails when a value fails its cast or other test, or the texts their shapes (one match).
  const fails = [
    ...checks.map((k) => `(${k.value} IS NOT NULL AND ${k.check.other(k.value, q(k.col.name))})`),
    shapesFail(checks.flatMap((k) => (k.check.shape === undefined ? [] : [{ shape: k.check.shape, value: k.value }]))),
  ];
  const offset =
    checks.length > 0 ? `CASE WHEN ${fails.join(' OR ')} THEN -1 - src.__offset ELSE src.__offset END` : 'src.__offset';
  const lineage = `${byPart('key')} AS source_key, ${byPart('version')} AS source_version, ${offset} AS source_offset`;
  const columns = p.schema.map((col) => `src.${q(col.name)}`).join(', ');
  await c.run(
    `CREATE OR REPLACE TEMP VIEW input AS SELECT ${columns}, ${lineage} FROM ${inner ? `(${inner})` : source.sql} src`,
  );
  const day = q(p.table.partitionDay);
  const tableColumns = [...p.table.columns, ...LINEAGE_COLUMNS].map((col) => q(col.name)).join(', ');
  const out = join(dir, 'out');
  const staged = join(dir, 'staged.parquet');
  rmSync(out, { recursive: true, force: true });
  rmSync(staged, { force: true });
  await c.run(
    `COPY (SELECT ${tableColumns}, (source_offset < 0 OR ${day} IS NULL) AS __sluice_bad FROM (${p.transform}))
     TO ${literal(out)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (__sluice_bad))`,
  );
  const files = (flag: boolean) => {
    const folder = join(out, `__sluice_bad=${flag}`);
    return existsSync(folder) ? readdirSync(folder).map((f) => join(folder, f)) : [];
  };
  const [good, bad] = [files(false), files(true)];
  if (good.length === 1) renameSync(good[0] as string, staged);
  else {
    // More than one file (several threads), or none: one staged.parquet all the same.
    const from = good.length > 0 ? `read_parquet([${good.map(literal).join(', ')}])` : `(${p.transform}) LIMIT 0`;
    await c.run(`COPY (SELECT ${tableColumns} FROM ${from}) TO ${literal(staged)} (FORMAT parquet, COMPRESSION zstd)`);
  }
  if (bad.length > 0) await secondLook(c, p, source, bad);
  return count(c, `SELECT count(*) FROM read_parquet(${literal(staged)})`);
}

/**
 * The rows of the one scan that were not staged, looked at again on their own: the
 * reasons of the values that fail the checks (a row may fail several), and an empty
 * partition column.
 */
async function secondLook(c: DuckDBConnection, p: Pipeline, source: Source, files: readonly string[]): Promise<void> {
  await c.run(`CREATE OR REPLACE TEMP TABLE bad AS
    SELECT parts.part, CASE WHEN b.source_offset < 0 THEN -1 - b.source_offset ELSE b.source_offset END AS line_offset,
           b.source_offset < 0 AS failed
    FROM read_parquet([${files.map(literal).join(', ')}]) b JOIN parts USING (source_key, source_version)`);
  const only = await source.only(c);
  const { documents } = formatOf(p);
  const checks = checksOf(p, (col) => `try_cast(${q(col.name)} AS ${duckType(col)})`);
  if (checks.length > 0) {
    await c.run(`INSERT INTO rejected
      SELECT __part, __offset, __line,
             CASE ${checks.map((k) => `WHEN ${k.test} THEN ${literal(k.col.name)}`).join(' ')} END,
             concat_ws('; ', ${checks
               .map((k) => `CASE WHEN ${k.test} THEN 'CAST: ' || ${k.check.reason(q(k.col.name))} END`)
               .join(', ')}),
             ${documents ? '__doc' : 'NULL'}
      FROM ${only} WHERE ${checks.map((k) => k.test).join(' OR ')}`);
  }
  await c.run(`INSERT INTO rejected
    SELECT s.__part, s.__offset, s.__line, ${literal(p.table.partitionDay)},
           ${literal(`MISSING: ${p.table.partitionDay} is empty; it is the partition column`)}, ${documents ? 's.__doc' : 'NULL'}
    FROM ${only} s SEMI JOIN bad ON bad.part = s.__part AND bad.line_offset = s.__offset AND NOT bad.failed`);
}

/**
 * The reader's rejects (every scan records them: grouped to one row per line). A row
 * without lineage is the tail of a line the reader split: that line is found by
 * \`reconcile\`, not here.
 */
async function addReaderRejects(c: DuckDBConnection, chunk: Chunk, p: Pipeline, skipKnown = false): Promise<void> {
  const d = literal(spoolDelimiter(p));
  const expected = formatOf(p).spool.quoted ? 1 : fileColumns(chunk, p).length;
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
 * A record of a spool of quoted records (non-splittable CSV/TSV with quotes), its body from \`from\`:
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
  const format = formatOf(p);
  const bytes = readFileSync(spool.file);
  const lines = scanSpool(
    bytes,
    format.spool.separator,
    format.quoting.quote,
    format.quoting.escape,
    format.records !== undefined,
  );
  const indexFile = join(dir, 'spooled.csv');
  writeFileSync(indexFile, lines.map((l) => `${l.part},${l.offset},${l.line}\n`).join(''));
  await c.run(`CREATE OR REPLACE TEMP TABLE spooled AS SELECT * FROM read_csv(${literal(indexFile)},
      columns = {'part': 'INTEGER', 'line_offset': 'BIGINT', 'local_line': 'BIGINT'}, header = false, auto_detect = false)`);
  if (format.lossyReader) {
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
      const read = `SELECT * FROM ${(await readSpool(c, chunk, p, file)).sql}`;
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
  let rowsStaged = !format.lossyReader
    ? (books?.rowsStaged ?? 0)
    : await stage(c, chunk, p, tableSource('parsed'), dir);
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
 * The rare path, when the counts do not add up: rows the transform dropped are rejected
 * with that reason rather than lost (an empty partition column is found by \`stage\`).
 * Returns the new number of rejected rows.
 */
async function rejectUnplaced(c: DuckDBConnection, p: Pipeline): Promise<number> {
  // The transform's rows, with the offsets of rows that failed a check decoded (see \`stage\`).
  await c.run(`CREATE OR REPLACE TEMP TABLE transformed AS
    SELECT source_key, CASE WHEN source_offset < 0 THEN -1 - source_offset ELSE source_offset END AS source_offset
    FROM (${p.transform})`);
  await c.run(`INSERT INTO rejected
    SELECT parsed.__part, parsed.__offset, parsed.__line, NULL, 'TRANSFORM: the transform returned no row for this line', NULL
    FROM parsed JOIN parts ON parts.part = parsed.__part
    ANTI JOIN transformed t ON t.source_key = parts.source_key AND t.source_offset = parsed.__offset
    ANTI JOIN rejected r ON r.part = parsed.__part AND r.line_offset = parsed.__offset`);
  return countRejected(c);
}

/** Spooled lines by (part, offset), as JSON Lines for DuckDB: read back by position, not by scanning the spool. */
function spooledLines(spool: Spool, wanted: readonly (readonly unknown[])[]): string {
  const records = spool.index.read(
    spool.file,
    wanted.map(([part, offset]) => [Number(part), Number(offset)] as const),
  );
  const out = records.map((r) =>
    JSON.stringify({ part: r.part, line_offset: r.offset, line: r.record.toString('utf8') }),
  );
  return `${out.join('\n')}\n`;
}

/** Rejects with local line numbers; Verify turns them into line numbers in the file. */
async function writeRejects(c: DuckDBConnection, p: Pipeline, spool: Spool, dir: string): Promise<void> {
  const d = literal(spoolDelimiter(p));
  // Lines DuckDB parsed but Sluice rejected afterwards have no raw text yet: take it from the spool file.
  const missing = (await c.runAndReadAll('SELECT part, line_offset FROM rejected WHERE raw IS NULL')).getRows();
  if (missing.length > 0) {
    const file = join(dir, 'raw-lines.jsonl');
    writeFileSync(file, spooledLines(spool, missing));
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
