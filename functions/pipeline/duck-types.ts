import type { Column, InputType } from './definition.ts';

const DUCK_TYPES: Record<InputType, string> = {
  string: 'VARCHAR',
  integer: 'INTEGER',
  bigint: 'BIGINT',
  double: 'DOUBLE',
  decimal: 'DECIMAL',
  boolean: 'BOOLEAN',
  date: 'DATE',
  timestamp: 'TIMESTAMP',
  timestamptz: 'TIMESTAMPTZ',
  json: 'JSON',
};

/** The DuckDB type of a pipeline column (input or table: table types are a subset of input types). */
export function duckType(col: Column): string {
  return col.type === 'decimal' ? `DECIMAL(${col.precision}, ${col.scale})` : DUCK_TYPES[col.type as InputType];
}
