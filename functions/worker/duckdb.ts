import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';

let instance: Promise<DuckDBInstance> | undefined;

/**
 * One in-memory DuckDB per process, created on first use. Spill files and the home
 * directory live under the temp folder (the only writable place in Lambda), and the
 * memory limit leaves room for Node: 60% of the function's memory when in Lambda.
 */
export function duckdb(tmpDir: string): Promise<DuckDBInstance> {
  instance ??= (async () => {
    const spill = join(tmpDir, 'duckdb');
    mkdirSync(spill, { recursive: true });
    const lambdaMb = Number(process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE);
    const options: Record<string, string> = {
      temp_directory: spill,
      home_directory: spill,
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
      // The worker's partitioned COPY (good and rejected rows in one pass) buffers this many
      // rows before writing; DuckDB's default (524,288) held about 90 MB more of a 64 MB chunk.
      partitioned_write_flush_threshold: '50000',
    };
    if (lambdaMb > 0) options.memory_limit = `${Math.floor(lambdaMb * 0.6)}MB`;
    // One thread per vCPU by default; SLUICE_DUCKDB_THREADS pins it (benchmarks compare at equal threads).
    const threads = Number(process.env.SLUICE_DUCKDB_THREADS);
    if (threads > 0) options.threads = String(threads);
    return DuckDBInstance.create(':memory:', options);
  })();
  return instance;
}

/** Runs `fn` with a fresh connection, closed afterwards whatever happens. */
export async function withConnection<T>(tmpDir: string, fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
  const connection = await (await duckdb(tmpDir)).connect();
  // Timestamps with zones are shown and cast in UTC, whatever the machine's zone.
  await connection.run("SET TimeZone = 'UTC'");
  try {
    return await fn(connection);
  } finally {
    connection.closeSync();
  }
}
