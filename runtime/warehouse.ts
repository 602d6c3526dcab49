/**
 * The local warehouse: a DuckDB file, `<dir>/warehouse.duckdb`, that runs the same SQL the
 * state machine sends to Athena (translated by `dialect.ts`). External (staging) tables are
 * served from the Parquet objects in the local S3, downloaded per statement.
 *
 * DuckDB lets one process at a time open a file read-write, and `sluice dev`, `sluice run`
 * and `sluice query` may be separate processes: the file is opened per operation and closed
 * right after; a locked file is retried with backoff for up to {@link LOCK_WAIT_MS}.
 */
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import {
  type DuckDBConnection,
  DuckDBInstance,
  type DuckDBResultReader,
  type DuckDBType,
  DuckDBTypeId,
} from '@duckdb/node-api';
import {
  type ColumnDefinition,
  type ExternalTable,
  partitionFilter,
  quoteDuckDb,
  referencesTable,
  translate,
  withAddedColumns,
} from './dialect.ts';

/** How long an operation waits for another process to release the database file. */
export const LOCK_WAIT_MS = 30_000;

export type Row = Record<string, unknown>;

export interface WarehouseOptions {
  /** The DuckDB file. */
  readonly file: string;
  /** Reads the Parquet objects of external tables. */
  readonly s3: S3Client;
  /** Where external-table objects are downloaded for the duration of a statement. */
  readonly tmpDir: string;
  /**
   * Open the file read-only (`sluice query` without `--write`): DuckDB's own `access_mode =
   * READ_ONLY`, so no statement can change a table; external tables are read from a scratch folder,
   * and then DuckDB's `enable_external_access = false` (that folder allowed) and
   * `lock_configuration` keep a statement from writing files (COPY ... TO) or attaching another
   * database read-write. A statement that would write fails with {@link WarehouseReadOnlyError}.
   */
  readonly readOnly?: boolean;
}

/** A failed statement: the local Athena reports it as a FAILED query with this message as StateChangeReason. */
export class WarehouseQueryError extends Error {
  override name = 'Sluice.WarehouseQueryError';
}

/** A statement that would change the warehouse (or write a file), refused because the warehouse is open read-only. */
export class WarehouseReadOnlyError extends WarehouseQueryError {
  override name = 'Sluice.WarehouseReadOnlyError';
}

/** DuckDB's errors for a write refused by `access_mode = READ_ONLY`, `enable_external_access` or the locked configuration. */
const isReadOnlyError = (error: unknown) =>
  /read-only mode|file system operations are disabled|configuration has been locked|Cannot open database .* in read-only mode/i.test(
    String(error),
  );

const REGISTRY = 'sluice_external_tables';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const isLockError = (error: unknown) => /Could not set lock|Conflicting lock/i.test(String(error));
const quoteLiteral = (value: string) => `'${value.replaceAll("'", "''")}'`;

export class LocalWarehouse {
  private readonly options: WarehouseOptions;
  /** Serialises operations within this process (DuckDB's file lock covers other processes). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: WarehouseOptions) {
    this.options = options;
  }

  /** Runs one Athena statement (DDL, MERGE...). Throws {@link WarehouseQueryError} when it fails. */
  async execute(sql: string): Promise<void> {
    await this.query(sql);
  }

  /** Runs one statement and returns its rows as JSON-safe objects. */
  query(sql: string): Promise<Row[]> {
    return this.read(sql, (reader) =>
      reader ? toJsonRows(reader.getRowObjectsJson(), reader.columnNames(), reader.columnTypes()) : [],
    );
  }

  /**
   * Runs one statement and hands its whole result (column names and types, rows) to `read`,
   * e.g. to shape it as Athena's GetQueryResults does (`athena.ts`). A statement the warehouse
   * serves itself (CREATE EXTERNAL TABLE, ALTER TABLE ADD COLUMNS on one) has no result: `read`
   * gets `undefined`.
   */
  read<T>(sql: string, read: (reader: DuckDBResultReader | undefined) => T): Promise<T> {
    const run = this.queue.then(() => this.run(sql, read));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async run<T>(sql: string, read: (reader: DuckDBResultReader | undefined) => T): Promise<T> {
    let translated: ReturnType<typeof translate>;
    try {
      translated = translate(sql);
    } catch (error) {
      throw new WarehouseQueryError(String((error as Error).message));
    }
    const readOnly = this.options.readOnly === true;
    if (readOnly && translated.kind !== 'sql') {
      throw new WarehouseReadOnlyError(
        `the warehouse is open read-only, and this statement changes a table (${translated.kind})`,
      );
    }
    return this.withConnection(async (connection) => {
      if (!readOnly) {
        await connection.run(
          `CREATE TABLE IF NOT EXISTS ${REGISTRY} (name VARCHAR PRIMARY KEY, location VARCHAR, columns VARCHAR, partitions VARCHAR)`,
        );
      }
      if (translated.kind === 'external-table') {
        await registerExternalTable(connection, translated);
        return read(undefined);
      }
      if (translated.kind === 'add-columns') {
        // ALTER TABLE ... ADD COLUMNS on a staging (external) table changes its registered columns;
        // on an Iceberg (DuckDB) table it runs as DuckDB's ADD COLUMN IF NOT EXISTS.
        const external = (await externalTables(connection, readOnly)).find((t) => t.name === translated.name);
        if (external) {
          await registerExternalTable(connection, { ...withAddedColumns(external, translated), ifNotExists: false });
          return read(undefined);
        }
      }
      const scratch = await mkdtemp(join(this.options.tmpDir, 'external-'));
      try {
        for (const table of await externalTables(connection, readOnly)) {
          if (referencesTable(translated.sql, table.name)) {
            await this.attachExternalTable(connection, table, translated.sql, join(scratch, table.name));
          }
        }
        if (readOnly) {
          // Files only in the scratch folder (the external tables' copies); then no SET can undo it.
          await connection.run(`SET allowed_directories = [${quoteLiteral(`${scratch}/`)}]`);
          await connection.run('SET enable_external_access = false');
          await connection.run('SET lock_configuration = true');
        }
        return read(await connection.runAndReadAll(translated.sql));
      } catch (error) {
        if (error instanceof WarehouseQueryError) throw error;
        if (readOnly && isReadOnlyError(error)) throw new WarehouseReadOnlyError((error as Error).message);
        throw new WarehouseQueryError((error as Error).message);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    });
  }

  /** Opens the file, retrying while another process holds it, and always closes it. */
  private async withConnection<T>(work: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
    await mkdir(dirname(this.options.file), { recursive: true });
    await mkdir(this.options.tmpDir, { recursive: true });
    const deadline = Date.now() + LOCK_WAIT_MS;
    let delay = 50;
    for (;;) {
      let instance: DuckDBInstance;
      try {
        // Read-only and no warehouse yet: an empty database, so that "no such table" says what is missing.
        instance = !this.options.readOnly
          ? await DuckDBInstance.create(this.options.file, { temp_directory: this.options.tmpDir })
          : existsSync(this.options.file)
            ? await DuckDBInstance.create(this.options.file, {
                access_mode: 'READ_ONLY',
                temp_directory: this.options.tmpDir,
              })
            : await DuckDBInstance.create(':memory:', { temp_directory: this.options.tmpDir });
      } catch (error) {
        if (!isLockError(error) || Date.now() > deadline) {
          throw new WarehouseQueryError(
            isLockError(error)
              ? `the local warehouse ${this.options.file} stayed locked by another process for ${LOCK_WAIT_MS / 1000} s`
              : (error as Error).message,
          );
        }
        await sleep(delay + Math.random() * delay);
        delay = Math.min(delay * 2, 1000);
        continue;
      }
      const connection = await instance.connect();
      try {
        return await work(connection);
      } finally {
        connection.closeSync();
        instance.closeSync();
      }
    }
  }

  /** Downloads the table's Parquet (one partition when the statement filters on it) and defines a temp view. */
  private async attachExternalTable(
    connection: DuckDBConnection,
    table: ExternalTable,
    sql: string,
    folder: string,
  ): Promise<void> {
    const { bucket, prefix } = parseS3Url(table.location);
    const [partition] = table.partitions;
    const only = partition && table.partitions.length === 1 ? partitionFilter(sql, partition.name) : undefined;
    const listPrefix = only !== undefined && partition ? `${prefix}${partition.name}=${only}/` : prefix;
    const files = await this.download(bucket, listPrefix, prefix, folder);
    const columns = [...table.columns, ...table.partitions];
    const select = columns.map((c) => `CAST(${quoteDuckDb(c.name)} AS ${c.type}) AS ${quoteDuckDb(c.name)}`).join(', ');
    if (files === 0) {
      await connection.run(
        `CREATE OR REPLACE TEMP VIEW ${quoteDuckDb(table.name)} AS SELECT ${columns.map((c) => `CAST(NULL AS ${c.type}) AS ${quoteDuckDb(c.name)}`).join(', ')} WHERE false`,
      );
      return;
    }
    // Partition values are strings as in Athena's projection, never auto-cast to numbers or dates.
    const hiveTypes = table.partitions.map((p) => `${quoteLiteral(p.name)}: VARCHAR`).join(', ');
    const glob = quoteLiteral(`${folder}/**/*.parquet`);
    await connection.run(
      `CREATE OR REPLACE TEMP VIEW ${quoteDuckDb(table.name)} AS SELECT ${select} FROM read_parquet(${glob}, hive_partitioning = true, union_by_name = true${hiveTypes ? `, hive_types = {${hiveTypes}}` : ''})`,
    );
  }

  private async download(bucket: string, listPrefix: string, root: string, folder: string): Promise<number> {
    let count = 0;
    let token: string | undefined;
    do {
      const page = await this.options.s3.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: listPrefix, ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) {
        if (!object.Key?.endsWith('.parquet')) continue;
        const target = join(folder, object.Key.slice(root.length));
        if (!target.startsWith(folder)) continue;
        await mkdir(dirname(target), { recursive: true });
        const body = await this.options.s3.send(new GetObjectCommand({ Bucket: bucket, Key: object.Key }));
        await pipeline(body.Body as Readable, createWriteStream(target));
        count++;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return count;
  }
}

/** True once a run has created the warehouse file. */
export const warehouseExists = (file: string) => existsSync(file);

async function registerExternalTable(connection: DuckDBConnection, table: ExternalTable): Promise<void> {
  const values = [table.name, table.location, JSON.stringify(table.columns), JSON.stringify(table.partitions)]
    .map(quoteLiteral)
    .join(', ');
  await connection.run(
    table.ifNotExists
      ? `INSERT INTO ${REGISTRY} VALUES (${values}) ON CONFLICT DO NOTHING`
      : `INSERT OR REPLACE INTO ${REGISTRY} VALUES (${values})`,
  );
}

/** `readOnly`: the registry may not exist (no run has set up this warehouse yet); otherwise `run` has just created it. */
async function externalTables(connection: DuckDBConnection, readOnly: boolean): Promise<ExternalTable[]> {
  if (readOnly) {
    const exists = await connection.runAndReadAll(
      `SELECT 1 FROM duckdb_tables() WHERE table_name = ${quoteLiteral(REGISTRY)} AND NOT temporary`,
    );
    if (exists.getRows().length === 0) return [];
  }
  const reader = await connection.runAndReadAll(`SELECT name, location, columns, partitions FROM ${REGISTRY}`);
  return reader.getRowObjectsJson().map((row) => ({
    kind: 'external-table',
    name: String(row.name),
    location: String(row.location),
    columns: JSON.parse(String(row.columns)) as ColumnDefinition[],
    partitions: JSON.parse(String(row.partitions)) as ColumnDefinition[],
    ifNotExists: true,
  }));
}

function parseS3Url(url: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/]+)\/(.*)$/.exec(url);
  if (!match?.[1]) throw new WarehouseQueryError(`not an s3:// location: ${url}`);
  return { bucket: match[1], prefix: match[2] ?? '' };
}

const INTEGERS = new Set<number>([
  DuckDBTypeId.BIGINT,
  DuckDBTypeId.UBIGINT,
  DuckDBTypeId.HUGEINT,
  DuckDBTypeId.UHUGEINT,
]);

/** JSON-safe values: 64/128-bit integers as numbers when exact, timestamps and dates as ISO 8601. */
function toJsonRows(rows: Record<string, unknown>[], names: string[], types: DuckDBType[]): Row[] {
  const converters = names.map((_, i): ((value: unknown) => unknown) | undefined => {
    const type = types[i];
    if (!type) return undefined;
    if (INTEGERS.has(type.typeId)) {
      return (v) => (Number.isSafeInteger(Number(v)) ? Number(v) : v);
    }
    if (type.typeId === DuckDBTypeId.DECIMAL) {
      return (v) => (Number.isFinite(Number(v)) && String(v).replace(/[-.]/g, '').length <= 15 ? Number(v) : v);
    }
    if (
      type.typeId === DuckDBTypeId.TIMESTAMP ||
      type.typeId === DuckDBTypeId.TIMESTAMP_MS ||
      type.typeId === DuckDBTypeId.TIMESTAMP_S ||
      type.typeId === DuckDBTypeId.TIMESTAMP_NS
    ) {
      return (v) => String(v).replace(' ', 'T');
    }
    if (type.typeId === DuckDBTypeId.TIMESTAMP_TZ) {
      return (v) =>
        String(v)
          .replace(' ', 'T')
          .replace(/([+-]\d\d)$/, '$1:00')
          .replace(/\+00:00$/, 'Z');
    }
    return undefined;
  });
  return rows.map((row) => {
    const out: Row = {};
    names.forEach((name, i) => {
      const value = row[name];
      const convert = converters[i];
      out[name] = value === null || value === undefined || !convert ? (value ?? null) : convert(value);
    });
    return out;
  });
}
