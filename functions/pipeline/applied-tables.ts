/**
 * The shapes of a pipeline's tables as last set up in the warehouse, kept in the working
 * bucket (`catalog/<pipeline>/tables.json`). Plan compares the definition with them to add
 * `ALTER TABLE ... ADD COLUMNS` to the setup (or to refuse any other change, naming the table
 * and column); Finish records them once the setup has run.
 */
import { layout } from '../storage/layout.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import type { Pipeline } from './definition.ts';
import { parseTableShapes, shapesToRecord, type TableShapes } from './evolution.ts';

export async function readAppliedTables(
  store: ObjectStore,
  bucket: string,
  pipeline: string,
): Promise<TableShapes | undefined> {
  const key = layout.appliedTables(pipeline);
  const value = await store.getJson<unknown>(bucket, key);
  return value === undefined ? undefined : parseTableShapes(JSON.stringify(value), `s3://${bucket}/${key}`);
}

/** Records the shapes the run's setup gave the tables (Finish, after the setup statements ran). */
export async function recordAppliedTables(store: ObjectStore, bucket: string, p: Pipeline): Promise<void> {
  const applied = await readAppliedTables(store, bucket, p.name);
  await store.putJson(bucket, layout.appliedTables(p.name), shapesToRecord(p, applied));
}
