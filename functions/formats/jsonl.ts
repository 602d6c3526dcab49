/**
 * JSON Lines input: no header, byte ranges cut at line starts (a JSON line holds no raw
 * newline), each line spooled as one quoted CSV field, and its fields taken out by name
 * (as text, for Sluice to check every typed value). A line that is not a JSON object is
 * rejected while reading.
 */
import type { Pipeline } from '../pipeline/definition.ts';
import { literal } from '../pipeline/sql.ts';
import { type InputFormat, readerOptions, SPOOL_LINEAGE } from './format.ts';

/** Guards json_type: DuckDB evaluates it even where json_valid is false, and it throws on invalid JSON. */
const IS_OBJECT = "CASE WHEN json_valid(__doc) THEN json_type(__doc) = 'OBJECT' ELSE false END";

const q = (name: string) => `"${name}"`;

export function jsonlFormat(p: Pipeline): InputFormat {
  return {
    hasHeader: false,
    columns: () => p.schema.map((col) => col.name),
    splittable: (compression) => compression === 'none' && p.input.splittable,
    spool: { separator: ',', quoted: true },
    records: undefined,
    quoting: { quote: '"', escape: '"' },
    // The spool is written quoted by Sluice: the reader reads it whole.
    lossyReader: false,
    allText: true,
    documents: true,
    read: async (c, file) => {
      await c.run(`CREATE OR REPLACE TEMP TABLE raw_docs AS SELECT * FROM read_csv(${literal(file)},
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
      return { sql: 'parsed', table: true };
    },
  };
}
