/**
 * Fault injection for the embedded runtime: off unless `SLUICE_FAULTS` is set, never on AWS
 * (nothing under `functions/` reads it). It proves that the retries, the ledger and the
 * loads keep every row exactly once when things go wrong (`npm run chaos`, docs/reliability.md).
 *
 * `SLUICE_FAULTS="worker-error=0.1,s3-5xx=0.02,commit-conflict=0.3,seed=7"`: each kind with
 * the probability (0..1) that one opportunity for it fails; `seed` makes a sequence repeatable.
 * Every injected fault is counted, and appended as one JSON line to `SLUICE_FAULTS_LOG` when it
 * is set, so that a script running the runtime in another process can count them too.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';

/** The faults the runtime can inject, each at its own place. */
export const FAULT_KINDS = [
  /** A worker invocation fails before doing anything (transient: Lambda.ServiceException). */
  'worker-error',
  /** A worker writes part of its output, then dies (its invocation fails). */
  'worker-partial',
  /** The embedded S3 endpoint answers 503 SlowDown instead of serving a request. */
  's3-5xx',
  /** A warehouse commit fails with ICEBERG_COMMIT_ERROR, as a conflicting Iceberg commit does. */
  'commit-conflict',
  /** The runtime process is killed in the middle of a run (see the chaos script). */
  'kill',
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

export class FaultConfigError extends Error {
  override name = 'FaultConfigError';
}

export interface Faults {
  /** Whether any fault is configured. */
  readonly enabled: boolean;
  /** The probability configured for a kind (0 when absent). */
  rate(kind: FaultKind): number;
  /** Draws once: true (and counted) when this opportunity for `kind` should fail. */
  roll(kind: FaultKind, where?: string): boolean;
  /** Faults injected so far in this process, by kind. */
  counts(): Readonly<Record<FaultKind, number>>;
}

/** mulberry32: a small, fast, seedable generator in [0, 1); good enough to pick faults (and the chaos script's actions). */
export function randomGenerator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Parses `SLUICE_FAULTS`; an unknown kind or a rate outside 0..1 is an error that names it. */
export function parseFaults(text: string | undefined, log?: string): Faults {
  const rates = new Map<FaultKind, number>();
  let seed = Date.now() & 0xffffffff;
  for (const entry of (text ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean)) {
    const [name, value, ...rest] = entry.split('=');
    const number = Number(value);
    if (rest.length > 0 || value === undefined || value.trim() === '' || !Number.isFinite(number)) {
      throw new FaultConfigError(`SLUICE_FAULTS: "${entry}" is not <kind>=<number>`);
    }
    if (name === 'seed') {
      seed = Math.trunc(number);
      continue;
    }
    if (!(FAULT_KINDS as readonly string[]).includes(name ?? '')) {
      throw new FaultConfigError(`SLUICE_FAULTS: unknown fault "${name}"; the faults are ${FAULT_KINDS.join(', ')}`);
    }
    if (number < 0 || number > 1) {
      throw new FaultConfigError(`SLUICE_FAULTS: ${name}=${value} is not a probability between 0 and 1`);
    }
    rates.set(name as FaultKind, number);
  }
  const random = randomGenerator(seed);
  const injected = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  return {
    enabled: [...rates.values()].some((r) => r > 0),
    rate: (kind) => rates.get(kind) ?? 0,
    roll(kind, where) {
      const rate = rates.get(kind) ?? 0;
      if (rate <= 0 || random() >= rate) return false;
      injected[kind]++;
      if (log) logFault(log, kind, where);
      return true;
    },
    counts: () => ({ ...injected }),
  };
}

let current: Faults | undefined;

/** The process's faults, from `SLUICE_FAULTS` and `SLUICE_FAULTS_LOG`, read once. */
export function faults(): Faults {
  current ??= parseFaults(process.env.SLUICE_FAULTS, process.env.SLUICE_FAULTS_LOG);
  return current;
}

/** For tests: replaces the process's faults (undefined: read the environment again on next use). */
export function setFaults(next: Faults | undefined): void {
  current = next;
}

/** One line of `SLUICE_FAULTS_LOG`. */
export interface InjectedFault {
  readonly at: string;
  readonly kind: FaultKind;
  readonly where: string | null;
}

/**
 * Counts the faults a `SLUICE_FAULTS_LOG` file records, by kind (every kind present, 0 when none).
 * A missing file counts nothing; a line that is not one of ours (a torn last line of a killed
 * process) is skipped.
 */
export function countFaultLog(file: string): Record<FaultKind, number> {
  const counts = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  if (!existsSync(file)) return counts;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const { kind } = JSON.parse(line) as Partial<InjectedFault>;
      if (typeof kind === 'string' && Object.hasOwn(counts, kind)) counts[kind as FaultKind]++;
    } catch {
      // a torn line
    }
  }
  return counts;
}

/** Appends one fault to a `SLUICE_FAULTS_LOG` file (the chaos script records its kills this way). */
export function logFault(file: string, kind: FaultKind, where?: string): void {
  const fault: InjectedFault = { at: new Date().toISOString(), kind, where: where ?? null };
  appendFileSync(file, `${JSON.stringify(fault)}\n`);
}
