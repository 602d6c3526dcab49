/**
 * Checks a pipeline's transform SQL against its schema, without data: DuckDB binds the
 * query over an empty `input` and reports the columns it would return. Run when the CDK
 * app synthesizes and when the embedded runtime starts, so a typo fails there, naming
 * the pipeline, rather than in the first worker.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { DefinitionError } from '../errors.ts';
import { LINEAGE_COLUMNS, type Pipeline } from './definition.ts';
import { duckType } from './duck-types.ts';
import { quoteIdentifier } from './sql.ts';

export async function checkTransforms(pipelines: Iterable<Pipeline>): Promise<void> {
  const instance = await DuckDBInstance.create(':memory:', { autoload_known_extensions: 'false' });
  const connection = await instance.connect();
  try {
    for (const p of pipelines) await checkTransform(connection, p);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

async function checkTransform(connection: Awaited<ReturnType<DuckDBInstance['connect']>>, p: Pipeline): Promise<void> {
  // Quoted: a column may be called date, user, order or timestamp.
  const inputColumns = [...p.schema, ...LINEAGE_COLUMNS].map((c) => `${quoteIdentifier(c.name)} ${duckType(c)}`);
  await connection.run(`CREATE OR REPLACE TEMP TABLE input (${inputColumns.join(', ')})`);
  let described: { name: string; type: string }[];
  try {
    const reader = await connection.runAndReadAll(`DESCRIBE ${p.transform}`);
    described = reader.getRowObjectsJson().map((r) => ({ name: String(r.column_name), type: String(r.column_type) }));
  } catch (error) {
    throw new DefinitionError(
      `${p.file}: the transform of pipeline ${p.name} does not run: ${(error as Error).message}`,
    );
  }
  const expected = [...p.table.columns, ...LINEAGE_COLUMNS];
  const problems: string[] = [];
  for (const col of expected) {
    const found = described.find((d) => d.name === col.name);
    const want = duckType(col).replaceAll(' ', '');
    if (!found) problems.push(`it returns no column ${col.name}`);
    else if (found.type.replaceAll(' ', '') !== want)
      problems.push(`${col.name} is ${found.type}, the table wants ${want}`);
  }
  for (const d of described) {
    if (!expected.some((c) => c.name === d.name)) problems.push(`it returns ${d.name}, which the table does not have`);
  }
  if (problems.length > 0) {
    throw new DefinitionError(
      `${p.file}: the transform of pipeline ${p.name} does not fit table ${p.table.name}: ${problems.join('; ')}`,
    );
  }
}
