/**
 * Input formats: each one is a module that says how Sluice inspects, splits, spools and
 * reads its objects, so that a new format (Parquet input, say) is one new module rather
 * than branches across the planner and the worker. The planner asks a format whether an
 * object has a header to check and whether it may be cut into byte ranges; the worker
 * asks it how a line travels in the spool (with its lineage prefix: part, byte offset,
 * line number) and for the DuckDB SQL that reads a spool back as rows.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Compression } from '../contracts.ts';
import type { Column, Pipeline } from '../pipeline/definition.ts';

/** The rows a format reads: streaming SQL (read each time it is scanned), or a temp table it filled. */
export interface Rows {
  readonly sql: string;
  readonly table: boolean;
}

export interface InputFormat {
  /** Inspection: the first line of an object is a header, checked by \`columns\` before any worker starts. */
  readonly hasHeader: boolean;
  /** Inspection: the columns of a header line, in file order; throws an InputError naming the object when they do not fit. */
  columns(firstLine: Buffer, where: string): string[];
  /** Splitting: an object with this compression may be cut into line-aligned byte ranges. */
  splittable(compression: Compression): boolean;
  /** Spooling: the separator of the lineage prefix, and whether the line travels as one quoted field. */
  readonly spool: { readonly separator: string; readonly quoted: boolean };
  /**
   * Spooling: the quote and escape with which a record may span several physical lines
   * (a newline inside a quoted field), or undefined when a record is one line.
   */
  readonly records: { readonly quote: string; readonly escape: string } | undefined;
  /** The quote and escape of a spooled line, for finding the lines DuckDB's reader cannot read alone. */
  readonly quoting: { readonly quote: string; readonly escape: string };
  /**
   * Reading: the rows of a spool file: \`__part\`, \`__offset\`, \`__line\`, then the
   * schema's columns (\`text(col)\`: read as text, for Sluice to check), and \`__doc\` when
   * a row has a source document. \`fileColumns\`: the columns of the file, in its order.
   * A format that fills a table may reject lines itself (into \`rejected\`).
   */
  read(
    c: DuckDBConnection,
    file: string,
    fileColumns: readonly string[],
    text: (col: Column) => boolean,
  ): Promise<Rows>;
  /** Whether DuckDB's reader may drop, merge or split spooled lines (so the rare path re-reads them). */
  readonly lossyReader: boolean;
  /** Every typed value arrives as text (so Sluice checks every one, not only those DuckDB reads leniently). */
  readonly allText: boolean;
  /** Rows carry \`__doc\`, the line as read: the raw line of their rejects. */
  readonly documents: boolean;
}

/** The lineage columns every spool starts with. */
export const SPOOL_LINEAGE = [`'__part': 'INTEGER'`, `'__offset': 'BIGINT'`, `'__line': 'BIGINT'`];

/** Options of DuckDB's CSV reader over a spool: strict, and every line it cannot read recorded. */
export const readerOptions = (
  p: Pipeline,
) => `header = false, auto_detect = false, strict_mode = true, null_padding = false,
    max_line_size = ${p.input.maxLineBytes + 64}, store_rejects = true,
    rejects_table = 'sluice_rejects', rejects_scan = 'sluice_reject_scans'`;
