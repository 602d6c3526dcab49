/**
 * The chaos run's model of the access-logs pipeline, kept apart from the runtime: it writes the
 * input files, knows which of their lines must become rows (and which must be rejected, at which
 * line) and what those rows are in the table, and compares a table with that expectation. Nothing
 * here calls Sluice's worker or SQL: the expected rows are computed from the generated values, so
 * a load that loses, repeats or keeps a row it should not is seen whatever the runtime does.
 */
import { createHash } from 'node:crypto';

/** A table column as the pipeline declares it (name and Sluice type). */
export interface ColumnSpec {
  readonly name: string;
  readonly type: string;
}

/** One generated input file: its CSV text, the rows it must load and the lines it must reject. */
export interface GeneratedFile {
  readonly body: string;
  /** The table rows, as column name → value (timestamps as epoch milliseconds, UTC). */
  readonly rows: readonly Readonly<Record<string, string | number>>[];
  /** Physical line numbers (the header is line 1) of the lines that must be rejects. */
  readonly rejectedLines: readonly number[];
}

/** The columns the model writes, in the input's order (pipelines/access-logs.yaml `schema`). */
export const INPUT_COLUMNS = [
  'event_time',
  'user_id',
  'session_id',
  'method',
  'path',
  'status',
  'bytes_sent',
  'latency_ms',
  'user_agent',
  'country',
] as const;

/** The transform the model applies (to the UTC instant, as the rows are computed here). */
export const MODELLED_TRANSFORM = "SELECT * REPLACE (timezone('UTC', event_time) AS event_time) FROM input";

const PATHS = ['/', '/login', '/cart', '/p/1', '/p/2', '/search', '/api/items', '/checkout'];
const AGENTS = ['curl/8.5', 'Mozilla/5.0 (X11, Linux)', 'Go-http-client/2.0', 'bot "crawler", v2'];
const COUNTRIES = ['KR', 'US', 'DE', 'JP', 'BR'];
const METHODS = ['GET', 'GET', 'GET', 'POST'];
const STATUSES = [200, 200, 200, 200, 304, 404, 500, 503];
/** Offsets written with the event times: the table holds their UTC instant. */
const ZONES = [
  ['Z', 0],
  ['+09:00', 9],
  ['-05:00', -5],
] as const;
/** Lines the pipeline must reject, whatever else is in the file (few: under rejects.maxShare). */
const BAD_LINES = [
  (good: readonly string[]) => good.map((v, i) => (i === 5 ? 'oops' : v)), // status is not an integer
  (good: readonly string[]) => [...good, 'extra'], // one field too many
  (good: readonly string[]) => good.map((v, i) => (i === 0 ? '2026-03-02 10:00:00' : v)), // no zone in a timestamptz
];

const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

/** A CSV field as the pipeline reads it (delimiter ',', quote '"', quotes doubled). */
const csvField = (value: string) => (/[",\n\r]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value);

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** An instant written with an offset: `2026-03-01T19:05:07+09:00`. */
function writtenTime(utcMs: number, offsetHours: number, zone: string): string {
  const local = new Date(utcMs + offsetHours * 3_600_000);
  return (
    `${local.getUTCFullYear()}-${pad(local.getUTCMonth() + 1)}-${pad(local.getUTCDate())}` +
    `T${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())}:${pad(local.getUTCSeconds())}${zone}`
  );
}

/**
 * A new file of `lines` rows (and up to `bad` bad lines among them). `tag` makes its rows unique
 * (it goes into session_id): give every file version its own.
 */
export function generateFile(random: () => number, tag: string, lines: number, bad: number): GeneratedFile {
  const start = Date.UTC(2026, 2, 1);
  const rows: Record<string, string | number>[] = [];
  const text = [INPUT_COLUMNS.join(',')];
  const rejectedLines: number[] = [];
  const badAt = new Set<number>();
  while (badAt.size < Math.min(bad, lines)) badAt.add(Math.floor(random() * lines));
  for (let i = 0; i < lines; i++) {
    const utcMs = start + Math.floor(random() * 4 * 86_400) * 1000;
    const [zone, offset] = pick(random, ZONES);
    const row = {
      event_time: utcMs,
      user_id: `u${Math.floor(random() * 40)}`,
      session_id: `${tag}-${i}`,
      method: pick(random, METHODS),
      path: pick(random, PATHS),
      status: pick(random, STATUSES),
      bytes_sent: Math.floor(random() * 5_000_000),
      latency_ms: Math.round(random() * 100_000) / 100,
      user_agent: pick(random, AGENTS),
      country: pick(random, COUNTRIES),
    };
    const fields = INPUT_COLUMNS.map((name) =>
      name === 'event_time' ? writtenTime(utcMs, offset, zone) : String(row[name]),
    );
    if (badAt.has(i)) {
      text.push(pick(random, BAD_LINES)(fields).map(csvField).join(','));
      rejectedLines.push(text.length);
    } else {
      text.push(fields.map(csvField).join(','));
      rows.push(row);
    }
  }
  return { body: `${text.join('\n')}\n`, rows, rejectedLines };
}

const NULL = '\u2400';

/**
 * One value as text that does not depend on who printed it: the model's JS values and Athena's
 * VarCharValue strings (`2026-03-01 10:00:00.000`, `1.5E7`) give the same text for the same value.
 */
export function normalizeValue(type: string, value: string | number | null | undefined): string {
  if (value === null || value === undefined) return NULL;
  switch (type) {
    case 'timestamp':
    case 'timestamptz': {
      const ms =
        typeof value === 'number' ? value : Date.parse(`${value.trim().replace(' ', 'T').replace(/ UTC$/, '')}Z`);
      return Number.isNaN(ms) ? `invalid:${value}` : new Date(ms).toISOString();
    }
    case 'date':
      return typeof value === 'number' ? new Date(value).toISOString().slice(0, 10) : value.slice(0, 10);
    case 'integer':
    case 'bigint':
      try {
        return BigInt(value).toString();
      } catch {
        return `invalid:${value}`;
      }
    case 'double':
      return String(Number(value));
    default:
      return String(value);
  }
}

/** A row as one text over every column (in the columns' order), for matching and hashing. */
export const rowText = (columns: readonly ColumnSpec[], row: Readonly<Record<string, string | number | null>>) =>
  columns.map((c) => normalizeValue(c.type, row[c.name])).join('\u001f');

/** A row's share of the order-independent checksum: the first 8 bytes of its SHA-256, summed mod 2^64. */
const rowHash = (text: string) => createHash('sha256').update(text).digest().readBigUInt64BE(0);

export function checksum(texts: Iterable<string>): string {
  let sum = 0n;
  for (const text of texts) sum = (sum + rowHash(text)) & 0xffff_ffff_ffff_ffffn;
  return sum.toString(16).padStart(16, '0');
}

/** An object as it is now in the input bucket, with what its current version must have put in the table. */
export interface CurrentObject {
  readonly key: string;
  /**
   * The current version's identities as S3 gives them (its VersionId and its ETag): the table's
   * source_version may hold either (Sluice records the ETag today; see functions/storage/s3-store.ts).
   */
  readonly versions: readonly string[];
  /** The row texts (`rowText`) of its valid lines. */
  readonly rows: readonly string[];
  readonly rejectedLines: readonly number[];
}

/** A table row as read back: its lineage and its text (`rowText`). */
export interface PresentRow {
  readonly key: string;
  readonly version: string;
  readonly text: string;
}

export interface TableComparison {
  readonly expected: number;
  readonly present: number;
  /** Expected rows missing from the table. */
  readonly lost: number;
  /** Rows of a current version present more than once (each copy after the first). */
  readonly duplicated: number;
  /** Rows of a version that is no longer current, or of an object that no longer exists. */
  readonly stale: number;
  /** Rows of a current version that match none of its lines (a wrong value, a reject loaded as a row). */
  readonly unexpected: number;
  readonly expectedChecksum: string;
  readonly presentChecksum: string;
  /** A few examples of each kind of difference, for the report. */
  readonly examples: readonly string[];
}

/** Whether a row's lineage names the current version of its object (a deleted object has none). */
const isCurrent = (versions: ReadonlyMap<string, readonly string[]>, key: string, version: string) =>
  versions.get(key)?.includes(version) ?? false;

/** Compares the table's rows with the rows the current objects must have put there. */
export function compareTable(current: readonly CurrentObject[], present: readonly PresentRow[]): TableComparison {
  const versions = new Map(current.map((o) => [o.key, o.versions]));
  const remaining = new Map<string, number>();
  const all = new Set<string>();
  for (const object of current) {
    for (const text of object.rows) {
      const id = `${object.key}\u001e${text}`;
      remaining.set(id, (remaining.get(id) ?? 0) + 1);
      all.add(id);
    }
  }
  let stale = 0;
  let duplicated = 0;
  let unexpected = 0;
  const examples: string[] = [];
  const example = (what: string, row: PresentRow) => {
    if (examples.length < 12)
      examples.push(`${what}: ${row.key} (version ${row.version}): ${row.text.split('\u001f').join(', ')}`);
  };
  for (const row of present) {
    if (!isCurrent(versions, row.key, row.version)) {
      stale++;
      example('stale', row);
      continue;
    }
    const id = `${row.key}\u001e${row.text}`;
    const left = remaining.get(id) ?? 0;
    if (left > 0) remaining.set(id, left - 1);
    else if (all.has(id)) {
      duplicated++;
      example('duplicated', row);
    } else {
      unexpected++;
      example('unexpected', row);
    }
  }
  let lost = 0;
  for (const [id, left] of remaining) {
    if (left > 0 && examples.length < 12)
      examples.push(`lost: ${id.replace('\u001e', ': ').split('\u001f').join(', ')}`);
    lost += left;
  }
  return {
    expected: current.reduce((n, o) => n + o.rows.length, 0),
    present: present.length,
    lost,
    duplicated,
    stale,
    unexpected,
    expectedChecksum: checksum(current.flatMap((o) => o.rows.map((text) => `${o.key}\u001f${text}`))),
    presentChecksum: checksum(present.map((r) => `${r.key}\u001f${r.text}`)),
    examples,
  };
}

/** A reject as read back from `<table>_rejects`. */
export interface PresentReject {
  readonly key: string;
  readonly version: string;
  readonly line: number;
}

export interface RejectComparison {
  readonly expected: number;
  /** Rejects of current versions in the rejects table. */
  readonly present: number;
  readonly missing: number;
  readonly duplicated: number;
  readonly unexpected: number;
}

/** The current versions' bad lines against the rejects table (rejects of older versions are a log: not compared). */
export function compareRejects(current: readonly CurrentObject[], present: readonly PresentReject[]): RejectComparison {
  const wanted = new Set(current.flatMap((o) => o.rejectedLines.map((line) => `${o.key}#${line}`)));
  const versions = new Map(current.map((o) => [o.key, o.versions]));
  const seen = new Set<string>();
  let counted = 0;
  let duplicated = 0;
  let unexpected = 0;
  for (const reject of present) {
    if (!isCurrent(versions, reject.key, reject.version)) continue;
    counted++;
    const id = `${reject.key}#${reject.line}`;
    if (!wanted.has(id)) unexpected++;
    else if (seen.has(id)) duplicated++;
    seen.add(id);
  }
  return {
    expected: wanted.size,
    present: counted,
    missing: [...wanted].filter((id) => !seen.has(id)).length,
    duplicated,
    unexpected,
  };
}

/** One daily_traffic row: day, path, requests, unique users, server errors (status >= 500), average latency. */
export interface TrafficRow {
  readonly day: string;
  readonly path: string;
  readonly requests: number;
  readonly uniqueUsers: number;
  readonly serverErrors: number;
  readonly avgLatencyMs: number;
}

/** daily_traffic as the pipeline's derived SQL defines it, computed from the rows the table must hold. */
export function expectedTraffic(rows: Iterable<Readonly<Record<string, string | number>>>): TrafficRow[] {
  const groups = new Map<string, { users: Set<string>; requests: number; errors: number; latency: number }>();
  for (const row of rows) {
    const day = new Date(Number(row.event_time)).toISOString().slice(0, 10);
    const id = `${day}\u001f${row.path}`;
    const group = groups.get(id) ?? { users: new Set<string>(), requests: 0, errors: 0, latency: 0 };
    group.users.add(String(row.user_id));
    group.requests++;
    if (Number(row.status) >= 500) group.errors++;
    group.latency += Number(row.latency_ms);
    groups.set(id, group);
  }
  return [...groups].map(([id, g]) => {
    const [day = '', path = ''] = id.split('\u001f');
    return {
      day,
      path,
      requests: g.requests,
      uniqueUsers: g.users.size,
      serverErrors: g.errors,
      avgLatencyMs: g.latency / g.requests,
    };
  });
}

export interface TrafficComparison {
  readonly expected: number;
  readonly present: number;
  /** (day, path) groups missing, extra, or with other figures. */
  readonly wrong: number;
  readonly examples: readonly string[];
}

export function compareTraffic(expected: readonly TrafficRow[], present: readonly TrafficRow[]): TrafficComparison {
  const byId = (rows: readonly TrafficRow[]) => new Map(rows.map((r) => [`${r.day} ${r.path}`, r]));
  const want = byId(expected);
  const got = byId(present);
  const examples: string[] = [];
  let wrong = present.length - got.size; // a (day, path) twice
  for (const [id, row] of want) {
    const other = got.get(id);
    const same =
      other &&
      other.requests === row.requests &&
      other.uniqueUsers === row.uniqueUsers &&
      other.serverErrors === row.serverErrors &&
      Math.abs(other.avgLatencyMs - row.avgLatencyMs) <= 1e-9 * Math.max(1, Math.abs(row.avgLatencyMs));
    if (same) continue;
    wrong++;
    if (examples.length < 5)
      examples.push(`${id}: expected ${JSON.stringify(row)}, present ${JSON.stringify(other ?? null)}`);
  }
  for (const [id, row] of got) {
    if (want.has(id)) continue;
    wrong++;
    if (examples.length < 5) examples.push(`${id}: not expected, present ${JSON.stringify(row)}`);
  }
  return { expected: expected.length, present: present.length, wrong, examples };
}
