import { RefusedInputError } from '../errors.ts';
import type { Pipeline } from '../pipeline/definition.ts';
import { MAX_EXCERPT_CHARS, plainText } from '../run/failure-message.ts';
import { splitCsvRecord, stripBom } from './lines.ts';

/** The header line the pipeline expects, as it would appear in a file. */
export function expectedHeader(p: Pipeline): string {
  return p.schema.map((c) => c.name).join(p.input.delimiter === '\t' ? '\\t' : p.input.delimiter);
}

/** A column name as shown in a message: escaped and short (see run/failure-message.ts). */
const columnShown = (name: string) => plainText(name, MAX_EXCERPT_CHARS);

/**
 * Checks a file's first line against the pipeline's schema and returns its column
 * names. Columns may come in any order; a missing column is an error, and so is an
 * extra one unless `input.extraColumns` is `ignore`. The error names the file and
 * the columns.
 */
export function checkHeader(p: Pipeline, firstLine: Buffer, where: string): string[] {
  const text = stripBom(firstLine).toString('utf8');
  const found = splitCsvRecord(text, p.input.delimiter, p.input.quote).map((f) => f.trim());
  const expected = p.schema.map((c) => c.name);
  const missing = expected.filter((c) => !found.includes(c));
  const extra = found.filter((c) => !expected.includes(c));
  const duplicated = found.filter((c, i) => found.indexOf(c) !== i);
  const extraIsError = extra.length > 0 && p.input.extraColumns === 'error';
  if (missing.length === 0 && !extraIsError && duplicated.length === 0) return found;
  const details = [
    missing.length > 0 ? `missing ${missing.map(columnShown).join(', ')}` : '',
    extra.length > 0 ? `unexpected ${extra.slice(0, 10).map(columnShown).join(', ')}` : '',
    duplicated.length > 0 ? `repeated ${duplicated.slice(0, 10).map(columnShown).join(', ')}` : '',
  ].filter(Boolean);
  const shown = text.length > 200 ? `${text.slice(0, 200)}...` : text;
  // JSON.stringify below escapes control characters in the excerpt.
  const hint = extraIsError ? ' (set input.extraColumns: ignore to skip unknown columns)' : '';
  throw new RefusedInputError(
    `${where} is not a ${p.input.format.toUpperCase()} file of pipeline ${p.name}: ` +
      `line 1 should be the header "${expectedHeader(p)}" but is ${JSON.stringify(shown)} (${details.join('; ')})${hint}`,
  );
}
