/**
 * The ledger: which version of which input object a run has loaded, and which versions
 * a run refused. One small marker object per (key, version), whose KEY says both:
 *
 *   loaded/<pipeline>/<sha256(key) in hex>/<ETag>    refused/<pipeline>/<sha256(key) in hex>/<ETag>
 *
 * so that one paginated listing of the prefix (1,000 markers per request) tells the
 * planner everything, instead of one GET per input object. The key is hashed because an
 * S3 key may hold any character and be 1,024 bytes long; the marker's body (key, version,
 * run, time, and the days its rows touched) is read by Verify and by a backfill with reload: the
 * days of the version a newer one replaces tell the load which partitions hold the rows to delete,
 * without querying the table (see docs/loads.md). Finish writes markers with bounded
 * parallelism and deletes the markers of older versions of the same keys in DeleteObjects
 * batches, so the prefix holds about one marker per input object.
 */
import { createHash } from 'node:crypto';
import type { NotLoaded } from '../contracts.ts';
import { InputError } from '../errors.ts';
import { mapLimit, S3_PARALLELISM } from '../storage/concurrency.ts';
import { layout } from '../storage/layout.ts';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.ts';

/** What a loaded marker's body says: this version of this key was loaded by that run. */
export interface LedgerEntry {
  readonly key: string;
  readonly version: string;
  readonly runId: string;
  readonly loadedAt: string;
  /**
   * The days (`YYYY-MM-DD`, of the table's partition column) the version's rows were loaded on: a
   * superset (the days of the chunks that held its lines). Absent in markers written before days
   * were recorded: the rows of such a version are then found without a partition predicate.
   */
  readonly days?: readonly string[];
}

/** An object version to mark loaded, with the days its rows touched. */
export interface LoadedObject extends ObjectInfo {
  readonly days?: readonly string[];
}

/**
 * What Verify decided a run loads and removes, at `runs/<pipeline>/<runId>/verified.json`
 * ({@link verifiedInputsKey}), for Finish to mark (or unmark) in the ledger. It lives here, not in
 * Verify's module, because Finish reads it and must not bundle Verify's DuckDB.
 */
export interface VerifiedInputs {
  /** The planned objects loaded, with the days their rows touched (their ledger markers keep them). */
  readonly loaded: readonly LoadedObject[];
  /** Planned objects not loaded, and why: they stay unmarked, so a later run plans them again. */
  readonly notLoaded: readonly NotLoaded[];
  /** Keys whose rows a delete run removed: Finish deletes their loaded markers. */
  readonly removed: readonly string[];
}

/** Where Verify leaves {@link VerifiedInputs}: beside the run's inputs. */
export const verifiedInputsKey = (pipeline: string, runId: string) =>
  `${layout.runFolder(pipeline, runId)}verified.json`;

/** An object version a run refused, and why (the refused marker's body). */
export interface RefusedEntry {
  readonly key: string;
  readonly version: string;
  readonly runId: string;
  readonly reason: string;
}

export type LedgerKind = 'loaded' | 'refused';

const prefixOf = (kind: LedgerKind, pipeline: string) =>
  kind === 'loaded' ? layout.ledgerPrefix(pipeline) : layout.refusedPrefix(pipeline);

/** The hex SHA-256 of an object key: the folder of its markers. */
export const keyHash = (key: string): string => createHash('sha256').update(key, 'utf8').digest('hex');

/** The marker of one version of one key. */
function markerKey(kind: LedgerKind, pipeline: string, key: string, version: string): string {
  return `${prefixOf(kind, pipeline)}${keyHash(key)}/${encodeURIComponent(version)}`;
}

/** The part of a marker's key after the prefix: `<sha256(key) in hex>/<version, URI-encoded>`. */
const markerName = (hash: string, version: string) => `${hash}/${encodeURIComponent(version)}`;

/** The markers under one prefix. */
export class LedgerIndex {
  /** Marker names (`hash/version`): one Set, so that a lookup is one string hash. */
  private readonly names = new Set<string>();
  private readonly prefix: string;
  constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** Adds a marker by its name; returns false when the name is not a marker's (64 hex digits, a slash, a version). */
  add(name: string): boolean {
    if (name.length < 66 || name.charCodeAt(64) !== 0x2f || name.indexOf('/', 65) >= 0) return false;
    this.names.add(name);
    return true;
  }

  /** Whether the version of the key whose hash this is (see {@link keyHash}) has a marker. */
  hasHash(hash: string, version: string): boolean {
    return this.names.has(markerName(hash, version));
  }

  /** The versions of the key whose hash this is that have a marker. */
  versionsOf(hash: string): string[] {
    const out: string[] = [];
    for (const name of this.names) {
      if (name.startsWith(hash) && name.charCodeAt(64) === 0x2f) out.push(decodeURIComponent(name.slice(65)));
    }
    return out;
  }

  /** Every marker's full key. */
  allMarkers(): string[] {
    return [...this.names].map((name) => `${this.prefix}${name}`);
  }

  /** The full keys of the markers of these key hashes, except the marker `keep` of each. */
  markersOf(hashes: ReadonlySet<string>, keep?: ReadonlySet<string>): string[] {
    const out: string[] = [];
    for (const name of this.names) {
      if (hashes.has(name.slice(0, 64)) && !keep?.has(name)) out.push(`${this.prefix}${name}`);
    }
    return out;
  }
}

/**
 * Reads the markers of one kind with one paginated listing (or, given a few `keys`, one
 * listing of each key's folder). Keys under the prefix that are not markers (the ledger's
 * older layout, `loaded/<pipeline>/<encoded key>.json`) are ignored: their objects are
 * planned again once, and the lineage-keyed MERGE adds nothing for a version already in
 * the table.
 */
export async function readLedger(
  store: ObjectStore,
  bucket: string,
  pipeline: string,
  kind: LedgerKind,
  keys?: readonly string[],
): Promise<LedgerIndex> {
  const prefix = prefixOf(kind, pipeline);
  const index = new LedgerIndex(prefix);
  // A few keys (an upload's run): one listing of each key's folder, all at once, beats paging through the prefix.
  const listed =
    keys && keys.length <= S3_PARALLELISM
      ? (await mapLimit(keys, S3_PARALLELISM, (k) => store.list(bucket, `${prefix}${keyHash(k)}/`))).flat()
      : await store.list(bucket, prefix);
  for (const o of listed) index.add(o.key.slice(prefix.length));
  return index;
}

/**
 * Marks these versions loaded by `runId`: writes their markers (bounded parallelism),
 * then deletes the markers of other versions of the same keys, and their refused
 * markers, in DeleteObjects batches. Idempotent: Finish may run again after a retry.
 */
export async function markLoaded(
  store: ObjectStore,
  bucket: string,
  pipeline: string,
  inputs: readonly LoadedObject[],
  runId: string,
  loadedAt: string,
): Promise<{ written: number; deleted: number }> {
  const hashes = inputs.map((o) => keyHash(o.key));
  const prefix = layout.ledgerPrefix(pipeline);
  const names = inputs.map((o, i) => markerName(hashes[i] as string, o.version));
  await mapLimit(inputs, S3_PARALLELISM, (o, i) => {
    const entry: LedgerEntry = { key: o.key, version: o.version, runId, loadedAt, ...(o.days ? { days: o.days } : {}) };
    return store.putJson(bucket, `${prefix}${names[i]}`, entry);
  });
  const keys = inputs.map((o) => o.key);
  const [loaded, refused] = await Promise.all([
    readLedger(store, bucket, pipeline, 'loaded', keys),
    readLedger(store, bucket, pipeline, 'refused', keys),
  ]);
  const ofInputs = new Set(hashes);
  const stale = [...loaded.markersOf(ofInputs, new Set(names)), ...refused.markersOf(ofInputs)];
  if (stale.length > 0) await store.deleteKeys(bucket, stale);
  return { written: inputs.length, deleted: stale.length };
}

/**
 * Refuses objects a run cannot read as the pipeline's format (the planner for the objects it
 * cuts, a worker for those it reads whole): marks each version refused, then throws the error
 * that fails the run, the first one's message and how many others (ten named).
 */
export async function refuseObjects(
  store: ObjectStore,
  bucket: string,
  pipeline: string,
  runId: string,
  refused: readonly { readonly key: string; readonly version: string; readonly error: InputError }[],
): Promise<never> {
  const [first, ...others] = refused;
  if (!first) throw new Error('refuseObjects needs at least one refused object');
  await markRefused(
    store,
    bucket,
    pipeline,
    refused.map(({ key, version, error }) => ({ key, version, runId, reason: error.message })),
  );
  if (others.length === 0) throw first.error;
  throw new InputError(
    `${first.error.message} (and ${others.length} more refused objects: ${others
      .slice(0, 10)
      .map((r) => r.key)
      .join(', ')}${others.length > 10 ? ', ...' : ''})`,
    { cause: first.error },
  );
}

/** Marks versions refused (scheduled runs skip them until they change). */
export async function markRefused(
  store: ObjectStore,
  bucket: string,
  pipeline: string,
  entries: readonly RefusedEntry[],
): Promise<void> {
  await mapLimit(entries, S3_PARALLELISM, (e) =>
    store.putJson(bucket, markerKey('refused', pipeline, e.key, e.version), e),
  );
}

/**
 * The loaded markers of these keys, bodies read (one GET per marker): what each key has in the
 * table now, and on which days. Verify reads it under the pipeline's lease, so that the rows a
 * replace or a delete removes are those of the version loaded last, not of one seen at Plan.
 */
export async function loadedEntries(
  store: ObjectStore,
  bucket: string,
  pipeline: string,
  keys: readonly string[],
): Promise<Map<string, LedgerEntry[]>> {
  const out = new Map<string, LedgerEntry[]>();
  if (keys.length === 0) return out;
  const index = await readLedger(store, bucket, pipeline, 'loaded', keys);
  const wanted = keys.flatMap((key) => {
    const hash = keyHash(key);
    return index
      .versionsOf(hash)
      .map((version) => ({ key, version, marker: markerKey('loaded', pipeline, key, version) }));
  });
  const bodies = await mapLimit(wanted, S3_PARALLELISM, (w) => store.getJson<LedgerEntry>(bucket, w.marker));
  for (const [i, w] of wanted.entries()) {
    const body = bodies[i];
    const entry: LedgerEntry = body?.key === w.key ? body : { key: w.key, version: w.version, runId: '', loadedAt: '' };
    const list = out.get(w.key);
    if (list) list.push(entry);
    else out.set(w.key, [entry]);
  }
  return out;
}

/** Every loaded marker of the pipeline, bodies read (one GET each, bounded parallelism): for a backfill with reload. */
export async function allLoadedEntries(store: ObjectStore, bucket: string, pipeline: string): Promise<LedgerEntry[]> {
  const index = await readLedger(store, bucket, pipeline, 'loaded');
  const bodies = await mapLimit(index.allMarkers(), S3_PARALLELISM, (marker) =>
    store.getJson<LedgerEntry>(bucket, marker),
  );
  return bodies.filter((b): b is LedgerEntry => typeof b?.key === 'string' && typeof b.version === 'string');
}

/** Deletes every loaded marker of these keys (their rows were removed): a later upload of the key loads again. */
export async function unmarkLoaded(
  store: ObjectStore,
  bucket: string,
  pipeline: string,
  keys: readonly string[],
): Promise<number> {
  if (keys.length === 0) return 0;
  const loaded = await readLedger(store, bucket, pipeline, 'loaded', keys);
  const markers = loaded.markersOf(new Set(keys.map(keyHash)));
  if (markers.length > 0) await store.deleteKeys(bucket, markers);
  return markers.length;
}
