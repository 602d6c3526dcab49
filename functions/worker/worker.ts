/**
 * The partition worker: reads one chunk (byte ranges of input objects), lets DuckDB
 * parse, type and transform its rows, writes the good rows as Parquet to staging and
 * every rejected row, with its reason, to the run's rejects. Nothing is dropped:
 * rows read = rows staged + rows rejected, or the chunk fails.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Config } from '../config.ts';
import type { Chunk, ChunkPart, ChunkResult, PartResult } from '../contracts.ts';
import { InputError, VerifyError } from '../errors.ts';
import { type InputType, LINEAGE_COLUMNS, type Pipeline } from '../pipeline/definition.ts';
import { literal } from '../pipeline/sql.ts';
import { layout } from '../storage/layout.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { withConnection } from './duckdb.ts';
import { checkHeader } from './header.ts';
import { LineSplitter, stripBom } from './lines.ts';

/** Longest line accepted; longer ones stop the chunk with an InputError. */
export const MAX_LINE_BYTES = 1024 * 1024;
/** Rejected raw lines are kept up to this many characters. */
export const MAX_RAW_LINE_CHARS = 4096;
/** How far past a range's end the first GET reads, to finish the last line without a second request. */
const OVERHANG = 64 * 1024;

export interface WorkerDeps {
  readonly store: ObjectStore;
  readonly config: Config;
  readonly pipeline: Pipeline;
}

const DUCK_TYPES: Record<InputType, string> = {
  string: 'VARCHAR',
  integer: 'INTEGER',
  bigint: 'BIGINT',
  double: 'DOUBLE',
  boolean: 'BOOLEAN',
  date: 'DATE',
  timestamp: 'TIMESTAMP',
  timestamptz: 'TIMESTAMPTZ',
};

/**
 * Types DuckDB's CSV reader accepts too loosely: read as text, then checked. It would
 * round `12.5` into an integer, and read a timestamp without a zone as UTC.
 */
const CHECKED: Partial<Record<InputType, { pattern: string; expected: string }>> = {
  integer: { pattern: '^[+-]?[0-9]+$', expected: 'an integer' },
  bigint: { pattern: '^[+-]?[0-9]+$', expected: 'an integer' },
  timestamptz: {
    pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.]+([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$',
    expected: 'an ISO-8601 timestamp with a zone or Z',
  },
};
const readAs = (type: InputType) => (CHECKED[type] ? 'VARCHAR' : DUCK_TYPES[type]);

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

/** Streams the bytes of one part: the whole object (decompressed), or its range plus the overhang. */
async function* partBytes(
  store: ObjectStore,
  bucket: string,
  part: ChunkPart,
  readFrom: number,
): AsyncGenerator<Buffer> {
  if (part.compression === 'gzip') {
    const gunzip = (await store.getStream(bucket, part.key)).pipe(createGunzip());
    try {
      for await (const b of gunzip as AsyncIterable<Buffer>) yield b;
    } catch (error) {
      throw new InputError(`s3://${bucket}/${part.key} is not a valid gzip file: ${(error as Error).message}`);
    }
    return;
  }
  let from = readFrom;
  let to = Math.min(part.size, part.end + OVERHANG);
  while (from < part.size) {
    const stream: Readable = await store.getStream(bucket, part.key, from, to);
    for await (const b of stream as AsyncIterable<Buffer>) yield b;
    from = to;
    to = Math.min(part.size, to + 4 * OVERHANG);
  }
}

/** Writes `part,offset,line number,<line>` for every data line of the chunk to a local file, for DuckDB to parse. */
async function spoolChunk(chunk: Chunk, deps: WorkerDeps, file: string): Promise<Spool> {
  const { pipeline, config, store } = deps;
  const fd = openSync(file, 'w');
  const out = Buffer.allocUnsafe(8 * 1024 * 1024);
  let used = 0;
  const write = (text: string, bytes: Buffer) => {
    const need = text.length + bytes.length + 1;
    if (used + need > out.length) {
      writeSync(fd, out, 0, used);
      used = 0;
      if (need > out.length) {
        writeSync(fd, Buffer.concat([Buffer.from(text, 'latin1'), bytes, Buffer.from('\n')]));
        return;
      }
    }
    used += out.write(text, used, 'latin1');
    used += bytes.copy(out, used);
    out[used++] = 0x0a;
  };
  const spool: Spool = { file, rowsRead: 0, parts: [] };
  try {
    for (const [index, part] of chunk.parts.entries()) {
      const where = `s3://${config.inputBucket}/${part.key}`;
      let lines = 0;
      const prefix = `${index},`;
      const splitter = new LineSplitter({
        readFrom: part.start > 0 ? part.start - 1 : 0,
        start: part.start,
        end: part.compression === 'gzip' ? Number.POSITIVE_INFINITY : part.end,
        maxLineBytes: MAX_LINE_BYTES,
        where,
        onLine: (offset, line) => {
          lines++;
          if (offset === 0) {
            line = stripBom(line);
            if (pipeline.input.header) {
              checkHeader(pipeline, line, where);
              return;
            }
          }
          if (line.length === 0) return;
          spool.rowsRead++;
          write(`${prefix}${offset},${lines},`, line);
        },
      });
      for await (const bytes of partBytes(store, config.inputBucket, part, part.start > 0 ? part.start - 1 : 0)) {
        if (!splitter.push(bytes)) break;
      }
      splitter.finish();
      spool.parts.push({ key: part.key, start: part.start, lines });
    }
    if (used > 0) writeSync(fd, out, 0, used);
  } finally {
    closeSync(fd);
  }
  return spool;
}

async function count(c: DuckDBConnection, sql: string): Promise<number> {
  const reader = await c.runAndReadAll(sql);
  return Number(reader.getRows()[0]?.[0] ?? 0);
}

async function parseAndStage(
  c: DuckDBConnection,
  chunk: Chunk,
  p: Pipeline,
  spool: Spool,
  dir: string,
): Promise<{ rowsStaged: number; rowsRejected: number; days: string[] }> {
  const columns = [
    `'__part': 'INTEGER'`,
    `'__offset': 'BIGINT'`,
    `'__line': 'BIGINT'`,
    ...p.schema.map((col) => `${literal(col.name)}: ${literal(readAs(col.type))}`),
  ].join(', ');
  const partValues = chunk.parts
    .map((part, i) => `(${i}, ${literal(part.key)}, ${literal(part.version)}, ${part.start})`)
    .join(', ');
  await c.run(`CREATE OR REPLACE TEMP TABLE parts (part INTEGER, source_key VARCHAR, source_version VARCHAR, part_start BIGINT);
    INSERT INTO parts VALUES ${partValues};`);
  // DuckDB parses and types every line; the ones it cannot read land in reject_errors with the reason.
  await c.run(`CREATE OR REPLACE TEMP TABLE parsed AS SELECT * FROM read_csv(${literal(spool.file)},
    columns = {${columns}}, header = false, auto_detect = false,
    delim = ${literal(p.input.delimiter)}, quote = ${literal(p.input.quote)}, escape = ${literal(p.input.quote)},
    strict_mode = true, null_padding = false, max_line_size = ${MAX_LINE_BYTES + 64},
    store_rejects = true, rejects_table = 'sluice_rejects', rejects_scan = 'sluice_reject_scans')`);
  // Rejected lines: [part, line_offset, column, reason, raw line]. DuckDB's raw line still has our prefix.
  await c.run(`CREATE OR REPLACE TEMP TABLE rejected AS
    SELECT CAST(split_part(csv_line, ',', 1) AS INTEGER) AS part,
           CAST(split_part(csv_line, ',', 2) AS BIGINT) AS line_offset,
           CAST(split_part(csv_line, ',', 3) AS BIGINT) AS local_line,
           first(column_name ORDER BY column_idx) AS column_name,
           string_agg(DISTINCT CASE WHEN error_type IN ('MISSING COLUMNS', 'TOO MANY COLUMNS')
                      THEN error_type || ': expected ${p.schema.length} columns'
                      ELSE error_type || ': ' || error_message END, '; ') AS reason,
           first(csv_line) AS raw
    FROM sluice_rejects GROUP BY ALL`);
  const checked = p.schema.filter((col) => CHECKED[col.type]);
  for (const col of checked) {
    const check = CHECKED[col.type] as { pattern: string; expected: string };
    await c.run(`INSERT INTO rejected
      SELECT __part, __offset, __line, ${literal(col.name)},
             'CAST: ' || ${literal(`${col.name} must be ${check.expected}, found `)} || ${col.name}, NULL
      FROM parsed
      WHERE ${col.name} IS NOT NULL
        AND (NOT regexp_matches(trim(${col.name}), ${literal(check.pattern)})
             OR try_cast(trim(${col.name}) AS ${DUCK_TYPES[col.type]}) IS NULL)
        AND (__part, __offset) NOT IN (SELECT (part, line_offset) FROM rejected)`);
  }
  const lineage = `parts.source_key, parts.source_version, parsed.__offset AS source_offset`;
  const casts = checked.map((col) => `CAST(trim(${col.name}) AS ${DUCK_TYPES[col.type]}) AS ${col.name}`).join(', ');
  await c.run(`CREATE OR REPLACE TEMP VIEW input AS
    SELECT parsed.* EXCLUDE (__part, __offset, __line) ${casts ? `REPLACE (${casts})` : ''}, ${lineage}
    FROM parsed JOIN parts ON parsed.__part = parts.part
    ANTI JOIN rejected ON rejected.part = parsed.__part AND rejected.line_offset = parsed.__offset`);
  await c.run(`CREATE OR REPLACE TEMP TABLE transformed AS ${p.transform}`);
  // Rows the transform dropped, or that have no day to be partitioned by, are rejected, not lost.
  await c.run(`INSERT INTO rejected
    SELECT parts.part, i.source_offset, NULL, NULL, 'TRANSFORM: the transform returned no row for this line', NULL
    FROM input i JOIN parts USING (source_key, source_version)
    ANTI JOIN transformed t ON t.source_key = i.source_key AND t.source_offset = i.source_offset`);
  const day = p.table.partitionDay;
  await c.run(`INSERT INTO rejected
    SELECT parts.part, t.source_offset, NULL, ${literal(day)}, 'MISSING: ${day} is empty; it is the partition column', NULL
    FROM transformed t JOIN parts USING (source_key, source_version) WHERE t.${day} IS NULL`);
  const tableColumns = [...p.table.columns, ...LINEAGE_COLUMNS].map((col) => col.name).join(', ');
  const staged = `SELECT ${tableColumns} FROM transformed WHERE ${day} IS NOT NULL`;
  const rowsStaged = await count(c, `SELECT count(*) FROM (${staged})`);
  const rowsRejected = await count(c, 'SELECT count(DISTINCT (part, line_offset)) FROM rejected');
  if (rowsStaged + rowsRejected !== spool.rowsRead) {
    throw new VerifyError(
      `chunk ${chunk.index} of run ${chunk.runId}: read ${spool.rowsRead} rows but staged ${rowsStaged} and rejected ${rowsRejected}; ` +
        'the transform must return one row per input row',
    );
  }
  if (rowsStaged > 0) {
    await c.run(`COPY (${staged}) TO ${literal(join(dir, 'staged.parquet'))} (FORMAT parquet, COMPRESSION zstd)`);
  }
  if (rowsRejected > 0) await writeRejects(c, spool, dir);
  const days = await c.runAndReadAll(
    `SELECT DISTINCT strftime(CAST(${day} AS DATE), '%Y-%m-%d') FROM transformed WHERE ${day} IS NOT NULL ORDER BY 1`,
  );
  return { rowsStaged, rowsRejected, days: days.getRows().map((r) => String(r[0])) };
}

/** Rejects with local line numbers; Verify turns them into line numbers in the file. */
async function writeRejects(c: DuckDBConnection, spool: Spool, dir: string): Promise<void> {
  // Lines DuckDB parsed but Sluice rejected afterwards have no raw text yet: take it from the spool file.
  if ((await count(c, 'SELECT count(*) FROM rejected WHERE raw IS NULL')) > 0) {
    await c.run(`UPDATE rejected SET raw = src.line, local_line = src.local_line FROM (
      SELECT CAST(split_part(line, ',', 1) AS INTEGER) AS part, CAST(split_part(line, ',', 2) AS BIGINT) AS line_offset,
             CAST(split_part(line, ',', 3) AS BIGINT) AS local_line, line
      FROM (SELECT unnest(string_split(content, chr(10))) AS line FROM read_text(${literal(spool.file)})) WHERE line <> ''
    ) src WHERE rejected.raw IS NULL AND rejected.part = src.part AND rejected.line_offset = src.line_offset`);
  }
  await c.run(`COPY (
    SELECT parts.source_key, parts.source_version, r.line_offset AS source_offset, parts.part_start,
           r.local_line, r.column_name, r.reason,
           substr(regexp_replace(r.raw, '^[0-9]+,[0-9]+,[0-9]+,', ''), 1, ${MAX_RAW_LINE_CHARS}) AS raw_line
    FROM (SELECT part, line_offset, max(local_line) AS local_line, first(column_name) AS column_name,
                 string_agg(reason, '; ') AS reason, first(raw) AS raw
          FROM rejected GROUP BY part, line_offset) r
    JOIN parts ON parts.part = r.part
    ORDER BY parts.part, r.line_offset
  ) TO ${literal(join(dir, 'rejects.parquet'))} (FORMAT parquet)`);
}
