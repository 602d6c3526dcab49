import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';

let instance: Promise<DuckDBInstance> | undefined;

/** Reads Parquet bytes back as JSON-safe row objects (to check what a worker wrote). */
export async function readParquet(
  bytes: Buffer | undefined,
  dir: string,
  sql = 'SELECT * FROM rows',
): Promise<Record<string, unknown>[]> {
  if (!bytes) return [];
  const file = join(dir, `read-${Math.random().toString(36).slice(2)}.parquet`);
  writeFileSync(file, bytes);
  instance ??= DuckDBInstance.create(':memory:');
  const connection = await (await instance).connect();
  try {
    await connection.run(`CREATE OR REPLACE TEMP VIEW rows AS SELECT * FROM read_parquet('${file}')`);
    return (await connection.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
  } finally {
    connection.closeSync();
  }
}
