import { InputError } from '../errors.ts';
import type { Pipeline } from '../pipeline/definition.ts';
import { splitCsvRecord, stripBom } from './lines.ts';

/** The header line the pipeline expects, as it would appear in a file. */
export function expectedHeader(p: Pipeline): string {
  return p.schema.map((c) => c.name).join(p.input.delimiter);
}

/**
 * Checks a file's first line against the pipeline's schema. The error names the
 * file, what was expected, and the columns that are missing or unexpected.
 */
export function checkHeader(p: Pipeline, firstLine: Buffer, where: string): void {
  const text = stripBom(firstLine).toString('utf8');
  const found = splitCsvRecord(text, p.input.delimiter, p.input.quote).map((f) => f.trim());
  const expected = p.schema.map((c) => c.name);
  if (found.length === expected.length && found.every((f, i) => f === expected[i])) return;
  const missing = expected.filter((c) => !found.includes(c));
  const extra = found.filter((c) => !expected.includes(c));
  const details = [
    missing.length > 0 ? `missing ${missing.join(', ')}` : '',
    extra.length > 0 ? `unexpected ${extra.slice(0, 10).join(', ')}` : '',
    missing.length === 0 && extra.length === 0 ? 'columns out of order' : '',
  ].filter(Boolean);
  const shown = text.length > 200 ? `${text.slice(0, 200)}...` : text;
  throw new InputError(
    `${where} is not a ${p.input.format.toUpperCase()} file of pipeline ${p.name}: ` +
      `line 1 should be the header "${expectedHeader(p)}" but is ${JSON.stringify(shown)} (${details.join('; ')})`,
  );
}
