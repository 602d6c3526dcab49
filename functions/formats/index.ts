import type { Pipeline } from '../pipeline/definition.ts';
import { csvFormat } from './csv.ts';
import type { InputFormat } from './format.ts';
import { jsonlFormat } from './jsonl.ts';

export type { InputFormat, Rows } from './format.ts';

/** The module of a pipeline's input format (input.format). */
export function formatOf(p: Pipeline): InputFormat {
  switch (p.input.format) {
    case 'jsonl':
      return jsonlFormat(p);
    case 'csv':
    case 'tsv':
      return csvFormat(p);
  }
}
