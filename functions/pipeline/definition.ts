import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isNode, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { DefinitionError } from '../errors.ts';
import { parseByteSize } from './size.ts';

/** Warehouse column types (Athena/Iceberg names; DuckDB accepts the same names). */
export const TABLE_TYPES = [
  'string',
  'integer',
  'bigint',
  'double',
  'decimal',
  'boolean',
  'date',
  'timestamp',
] as const;
/**
 * Input column types, as the worker parses them: the table's, plus `timestamptz` (needs a
 * zone or `Z`, normalised to UTC) and `json` (a JSON value kept as text). `decimal` needs
 * `precision` and `scale`.
 */
export const INPUT_TYPES = [...TABLE_TYPES, 'timestamptz', 'json'] as const;

const identifier = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier (a-z, 0-9, _)');
const column = <T extends readonly [string, ...string[]]>(types: T) =>
  z
    .strictObject({
      name: identifier,
      type: z.enum(types),
      precision: z.number().int().min(1).max(38).optional(),
      scale: z.number().int().min(0).max(38).optional(),
    })
    .refine((c) => (c.type === 'decimal') === (c.precision !== undefined && c.scale !== undefined), {
      message: 'precision and scale are required for decimal columns, and only for them',
    })
    .refine((c) => c.scale === undefined || c.precision === undefined || c.scale <= c.precision, {
      message: 'scale must not exceed precision',
    });
const uniqueNames = (columns: { name: string }[]) => new Set(columns.map((c) => c.name)).size === columns.length;

const byteSize = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const bytes = parseByteSize(value);
  if (Number.isNaN(bytes)) ctx.addIssue({ code: 'custom', message: `"${value}" is not a size such as 64MB` });
  return bytes;
});

const timezone = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}, 'must be an IANA time zone such as Asia/Seoul');

const schema = z.strictObject({
  name: z.string().regex(/^[a-z][a-z0-9-]{1,38}[a-z0-9]$/, 'must be 3-40 characters of a-z, 0-9 and -'),
  description: z.string().optional(),
  input: z
    .strictObject({
      prefix: z.string().regex(/^[A-Za-z0-9!_.*'()-]+(\/[A-Za-z0-9!_.*'()-]+)*\/$/, 'must be a key prefix ending in /'),
      suffixes: z.array(z.string().regex(/^\.[A-Za-z0-9.]+$/, 'must start with a dot')).min(1),
      /** csv (RFC 4180), tsv (no quoting unless `quote` is set) or jsonl (one JSON object per line). */
      format: z.enum(['csv', 'tsv', 'jsonl']).default('csv'),
      /** csv/tsv: the first line names the columns. */
      header: z.boolean().default(true),
      delimiter: z.string().length(1).optional(),
      quote: z.string().max(1).optional(),
      escape: z.string().max(1).optional(),
      /** Field values read as NULL. */
      nullStrings: z.array(z.string()).default(['']),
      /** false when quoted fields may contain newlines: each object is then one chunk. */
      splittable: z.boolean().default(true),
      /** A header with columns the schema does not have: an error, or ignored. */
      extraColumns: z.enum(['error', 'ignore']).default('error'),
      /** Longest line accepted; a longer one fails the run with an error naming the file and byte. */
      maxLineBytes: byteSize.default(1024 * 1024),
      /** Decompressed bytes per compressed byte above which a file is refused (a gzip bomb). */
      maxDecompressionRatio: z.number().positive().default(100),
    })
    .transform((input) => {
      const tsv = input.format === 'tsv';
      const quote = input.quote ?? (tsv ? '' : '"');
      return { ...input, delimiter: input.delimiter ?? (tsv ? '\t' : ','), quote, escape: input.escape ?? quote };
    }),
  schema: z.array(column(INPUT_TYPES)).min(1).refine(uniqueNames, 'column names must be unique'),
  transform: z.string().min(1).default('SELECT * FROM input'),
  table: z.strictObject({
    name: identifier,
    columns: z.array(column(TABLE_TYPES)).min(1).refine(uniqueNames, 'column names must be unique'),
    partitionDay: identifier,
  }),
  derived: z
    .array(
      z.strictObject({
        name: identifier,
        key: z.array(identifier).min(1),
        columns: z.array(column(TABLE_TYPES)).min(1).refine(uniqueNames, 'column names must be unique'),
        sql: z.string().includes('{{days}}', { message: 'must filter on {{days}}' }),
      }),
    )
    .default([]),
  /**
   * What deleting an input object does to its rows: `keep` them (the default), or `remove` them
   * in one commit and re-derive the days they touched (see docs/loads.md).
   */
  onDelete: z.enum(['keep', 'remove']).default('keep'),
  schedule: z
    .strictObject({
      cron: z.string().regex(/^\S+( \S+){4}$/, 'must be a 5-field cron expression (minute hour day month weekday)'),
      timezone: timezone.default('UTC'),
    })
    .optional(),
  processing: z
    .strictObject({
      chunkSize: byteSize.default(64 * 1024 * 1024),
      maxConcurrency: z.number().int().min(1).max(10000).default(50),
      toleratedFailurePercentage: z.number().min(0).max(100).default(0),
    })
    .prefault({}),
  rejects: z
    .strictObject({
      /** Share of a run's rows that may be rejected; above it the run fails before loading anything. */
      maxShare: z.number().min(0).max(1).default(0.5),
      /** Rejected raw lines are kept up to this many characters. */
      maxRawLineChars: z.number().int().min(0).default(4096),
    })
    .prefault({}),
});

export type Pipeline = z.output<typeof schema> & { readonly file: string };
export type InputType = (typeof INPUT_TYPES)[number];
export type TableType = (typeof TABLE_TYPES)[number];
export interface Column<T extends string = string> {
  readonly name: string;
  readonly type: T;
  readonly precision?: number;
  readonly scale?: number;
}

/** Lineage columns Sluice adds to every loaded row: a stable identity for the MERGE. */
export const LINEAGE_COLUMNS = [
  { name: 'source_key', type: 'string' },
  { name: 'source_version', type: 'string' },
  { name: 'source_offset', type: 'bigint' },
] as const satisfies readonly Column<TableType>[];

/** Parses and validates one pipeline file. Errors name the file, line and column. */
export function parsePipeline(text: string, file: string): Pipeline {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const where = (offset: number | undefined) => {
    if (offset === undefined) return file;
    const { line, col } = lineCounter.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  if (doc.errors.length > 0) {
    const [first] = doc.errors;
    throw new DefinitionError(`${where(first?.pos[0])}: invalid YAML: ${first?.message}`);
  }
  const result = schema.safeParse(doc.toJS());
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      let node: unknown = doc.getIn(issue.path as (string | number)[], true);
      for (let depth = issue.path.length - 1; !isNode(node) && depth >= 0; depth--) {
        node = doc.getIn(issue.path.slice(0, depth) as (string | number)[], true);
      }
      const offset = isNode(node) ? node.range?.[0] : undefined;
      const path = issue.path.join('.') || '(top level)';
      return `${where(offset)}: ${path}: ${issue.message}`;
    });
    throw new DefinitionError(`invalid pipeline definition:\n  ${lines.join('\n  ')}`);
  }
  const pipeline = { ...result.data, file };
  checkConsistency(pipeline);
  return pipeline;
}

function checkConsistency(p: Pipeline): void {
  const problems: string[] = [];
  const tableColumns = new Set(p.table.columns.map((c) => c.name));
  const partitionColumn = p.table.columns.find((c) => c.name === p.table.partitionDay);
  if (!partitionColumn) {
    problems.push(`table.partitionDay "${p.table.partitionDay}" is not a column of table ${p.table.name}`);
  } else if (partitionColumn.type !== 'date' && partitionColumn.type !== 'timestamp') {
    // Iceberg's day() transform, and the loads' partition predicates, need a date or a timestamp.
    problems.push(
      `table.partitionDay "${p.table.partitionDay}" is a ${partitionColumn.type} column of table ${p.table.name}; it must be a date or a timestamp`,
    );
  }
  for (const lineage of LINEAGE_COLUMNS) {
    if (tableColumns.has(lineage.name)) problems.push(`table column "${lineage.name}" is reserved for lineage`);
  }
  const names = [p.table.name, `${p.table.name}_rejects`, ...p.derived.map((d) => d.name)];
  if (new Set(names).size !== names.length) problems.push(`table names must be unique: ${names.join(', ')}`);
  for (const d of p.derived) {
    const cols = new Set(d.columns.map((c) => c.name));
    for (const k of d.key) if (!cols.has(k)) problems.push(`derived ${d.name}: key "${k}" is not one of its columns`);
  }
  if (problems.length > 0) throw new DefinitionError(`${p.file}: ${problems.join('; ')}`);
}

/** Reads every `*.yaml` pipeline in a folder. Names must be unique. */
export function loadPipelines(dir: string): Map<string, Pipeline> {
  const pipelines = new Map<string, Pipeline>();
  for (const entry of readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort()) {
    const file = join(dir, entry);
    const pipeline = parsePipeline(readFileSync(file, 'utf8'), file);
    if (pipelines.has(pipeline.name))
      throw new DefinitionError(`${file}: pipeline "${pipeline.name}" is defined twice`);
    pipelines.set(pipeline.name, pipeline);
  }
  return pipelines;
}

/** Finds a pipeline by name, with an error that lists the known ones. */
export function getPipeline(pipelines: ReadonlyMap<string, Pipeline>, name: string): Pipeline {
  const pipeline = pipelines.get(name);
  if (!pipeline) {
    throw new DefinitionError(`unknown pipeline "${name}"; known: ${[...pipelines.keys()].join(', ') || '(none)'}`);
  }
  return pipeline;
}

/** True when an object key belongs to the pipeline's input (prefix and one of the suffixes). */
export function matchesInput(pipeline: Pipeline, key: string): boolean {
  return key.startsWith(pipeline.input.prefix) && pipeline.input.suffixes.some((s) => key.endsWith(s));
}
