/**
 * CSV and TSV input: an optional header line (checked against the schema, columns in any
 * order), byte ranges cut at line starts when the pipeline says quoted fields never hold
 * a newline (input.splittable), and DuckDB's CSV reader over the spool.
 */
import type { Pipeline } from '../pipeline/definition.ts';
import { duckType } from '../pipeline/duck-types.ts';
import { literal } from '../pipeline/sql.ts';
import { checkHeader } from '../worker/header.ts';
import { type InputFormat, readerOptions, SPOOL_LINEAGE } from './format.ts';

export function csvFormat(p: Pipeline): InputFormat {
  const { quote, escape: escapeChar, delimiter } = p.input;
  // Non-splittable with quotes: the spool holds records, whose quoted fields may hold \n or \r\n.
  const records = !p.input.splittable && quote !== '' ? { quote, escape: escapeChar } : undefined;
  return {
    hasHeader: p.input.header,
    columns: (firstLine, where) => checkHeader(p, firstLine, where),
    splittable: (compression) => compression === 'none' && p.input.splittable,
    spool: { separator: delimiter, quoted: false },
    records,
    quoting: { quote, escape: escapeChar },
    lossyReader: true,
    allText: false,
    documents: false,
    read: async (_c, file, fileColumns, text) => {
      const bySchema = new Map(p.schema.map((col) => [col.name, col]));
      const columns = fileColumns.map((name, i) => {
        const col = bySchema.get(name);
        if (!col) return `${literal(`__extra_${i}`)}: 'VARCHAR'`;
        return `${literal(name)}: ${literal(text(col) ? 'VARCHAR' : duckType(col))}`;
      });
      const nulls = `[${p.input.nullStrings.map(literal).join(', ')}]`;
      // The reader is told the spool's records end with \n, or a \r\n in a quoted field stops it.
      const sql = `read_csv(${literal(file)}, columns = {${[...SPOOL_LINEAGE, ...columns].join(', ')}},
      delim = ${literal(delimiter)}, quote = ${literal(quote)}, escape = ${literal(escapeChar)},
      nullstr = ${nulls}, ${records ? "new_line = '\\n', " : ''}${readerOptions(p)})`;
      return { sql, table: false };
    },
  };
}
