/**
 * Fault injection (runtime/faults.ts, runtime/fault-injection.ts, the S3 hook of s3-server.ts) on
 * the real embedded stack: each fault happens where it says, the runtime's retries absorb it, and
 * the table still holds every row once. The faults here are scripted (one of a kind, where the
 * test wants it) so that each test proves one path; `npm run chaos` draws them at random.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { ListStateMachinesCommand, SFNClient } from '@aws-sdk/client-sfn';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Embedded, startEmbedded } from '../../runtime/dev.ts';
import type { ExecutionRecord } from '../../runtime/executions.ts';
import {
  countFaultLog,
  FAULT_KINDS,
  FaultConfigError,
  type FaultKind,
  type Faults,
  parseFaults,
  setFaults,
} from '../../runtime/faults.ts';
import { tempDir } from '../support/temp.ts';

const REPO_ROOT = join(import.meta.dirname, '../..');

describe('SLUICE_FAULTS', () => {
  it('reads rates and a seed; the same seed draws the same faults', () => {
    const draw = () => {
      const faults = parseFaults('worker-error=0.5, s3-5xx=0.1,seed=42');
      return Array.from({ length: 200 }, () => faults.roll('worker-error'));
    };
    const first = draw();
    expect(first).toEqual(draw());
    // About half fail at 0.5: neither never nor always.
    expect(first.filter(Boolean).length).toBeGreaterThan(60);
    expect(first.filter(Boolean).length).toBeLessThan(140);
    const faults = parseFaults('worker-error=0.5,seed=1');
    expect(faults.enabled).toBe(true);
    expect(faults.rate('s3-5xx')).toBe(0);
    expect(Array.from({ length: 50 }, () => faults.roll('s3-5xx'))).not.toContain(true);
  });

  it('is off when unset, and names what is wrong in a bad setting', () => {
    expect(parseFaults(undefined).enabled).toBe(false);
    expect(parseFaults('').enabled).toBe(false);
    expect(() => parseFaults('worker-eror=0.1')).toThrow(FaultConfigError);
    expect(() => parseFaults('worker-eror=0.1')).toThrow(/unknown fault "worker-eror".*worker-error/);
    expect(() => parseFaults('s3-5xx=2')).toThrow(/s3-5xx=2 is not a probability/);
    expect(() => parseFaults('s3-5xx')).toThrow(/"s3-5xx" is not <kind>=<number>/);
  });

  it('logs every injected fault to SLUICE_FAULTS_LOG, counted by kind', () => {
    const dir = tempDir('faults-');
    try {
      const log = join(dir, 'faults.jsonl');
      const faults = parseFaults('worker-error=1,commit-conflict=1', log);
      faults.roll('worker-error', 'run-1 chunk 0');
      faults.roll('commit-conflict', 'access_logs');
      faults.roll('commit-conflict', 'daily_traffic');
      expect(faults.counts()).toMatchObject({ 'worker-error': 1, 'commit-conflict': 2, 's3-5xx': 0 });
      expect(countFaultLog(log)).toMatchObject({ 'worker-error': 1, 'commit-conflict': 2, 's3-5xx': 0, kill: 0 });
      expect(JSON.parse(readFileSync(log, 'utf8').split('\n')[0] ?? '')).toMatchObject({
        kind: 'worker-error',
        where: 'run-1 chunk 0',
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Faults that fail exactly the opportunities queued, in order of kind; every other draw passes. */
function scripted(...queued: FaultKind[]): Faults & { readonly pending: FaultKind[] } {
  const pending = [...queued];
  const injected = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  return {
    pending,
    enabled: true,
    rate: (kind) => (pending.includes(kind) ? 1 : 0),
    roll(kind) {
      const at = pending.indexOf(kind);
      if (at < 0) return false;
      pending.splice(at, 1);
      injected[kind]++;
      return true;
    },
    counts: () => ({ ...injected }),
  };
}

/** A CSV of the access-logs pipeline with `rows` valid rows (unique session ids) and one bad line. */
function accessLog(tag: string, rows: number): string {
  const lines = ['event_time,user_id,session_id,method,path,status,bytes_sent,latency_ms,user_agent,country'];
  for (let i = 0; i < rows; i++) {
    lines.push(
      `2026-03-0${1 + (i % 3)}T10:${String(i % 60).padStart(2, '0')}:00Z,u${i % 7},${tag}-${i},GET,/p/${i % 4},200,${1000 + i},1.5,curl/8.5,KR`,
    );
  }
  lines.push(`2026-03-01T10:00:00Z,u1,${tag}-bad,GET,/,oops,1,1.5,curl/8.5,KR`);
  return `${lines.join('\n')}\n`;
}

describe('faults on the embedded stack', () => {
  let dir: string;
  let embedded: Embedded;
  const log: string[] = [];
  const runs = new Map<string, Promise<ExecutionRecord>>();
  let s3: S3Client;

  beforeAll(async () => {
    dir = tempDir('faults-');
    embedded = await startEmbedded({
      dir,
      repoRoot: REPO_ROOT,
      port: 0,
      log: (line) => log.push(line),
      onExecution: (event, execution) => runs.set(event.key, execution),
    });
    s3 = new S3Client({
      endpoint: embedded.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
  });
  afterEach(() => setFaults(parseFaults(undefined)));
  afterAll(async () => {
    setFaults(undefined);
    await embedded?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Uploads a file with the faults armed and returns its run and the rows of its key in the table. */
  async function load(key: string, body: string, faults: Faults) {
    setFaults(faults);
    runs.delete(key);
    await s3.send(new PutObjectCommand({ Bucket: 'sluice-input', Key: key, Body: body }));
    const run = await runs.get(key);
    const [counted] = await embedded.runtime.warehouse.query(
      `SELECT count(*) AS n, count(DISTINCT session_id) AS distinct_sessions FROM access_logs WHERE source_key = '${key}'`,
    );
    return { run, rows: Number(counted?.n), distinct: Number(counted?.distinct_sessions) };
  }

  const retriesOf = (run: ExecutionRecord | undefined) =>
    log.filter((line) => line.startsWith(`${run?.id} `) && /Work retry \d+ after Lambda\.ServiceException/.test(line));

  it('worker-error: the chunk fails before its handler runs, the Work retry loads it, each row once', async () => {
    const faults = scripted('worker-error');
    const { run, rows, distinct } = await load('access-logs/faults/worker-error.csv', accessLog('we', 40), faults);
    expect(faults.counts()['worker-error'], 'the fault was injected').toBe(1);
    expect(run?.status).toBe('SUCCEEDED');
    expect(retriesOf(run), 'the Work state retried after the injected error').toHaveLength(1);
    expect({ rows, distinct }).toEqual({ rows: 40, distinct: 40 });
  });

  it('worker-partial: the handler ran and its result was taken back; the retry copes with its leftovers', async () => {
    const faults = scripted('worker-partial');
    const { run, rows, distinct } = await load('access-logs/faults/worker-partial.csv', accessLog('wp', 30), faults);
    expect(faults.counts()['worker-partial']).toBe(1);
    expect(run?.status).toBe('SUCCEEDED');
    expect(retriesOf(run)).toHaveLength(1);
    expect(log.some((line) => line.includes('died after staging its rows'))).toBe(true);
    expect({ rows, distinct }).toEqual({ rows: 30, distinct: 30 });
    const [rejects] = await embedded.runtime.warehouse.query(
      "SELECT count(*) AS n FROM access_logs_rejects WHERE source_key = 'access-logs/faults/worker-partial.csv'",
    );
    expect(Number(rejects?.n), 'the bad line is rejected once').toBe(1);
  });

  it('s3-5xx: an S3 request gets 503 SlowDown in S3 XML, the SDK retries it; the JSON APIs are never touched', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'sluice-working', Key: 'faults/probe.txt', Body: 'hello' }));
    setFaults(scripted('s3-5xx'));
    const raw = await fetch(`${embedded.endpoint}/sluice-working/faults/probe.txt`);
    expect(raw.status).toBe(503);
    expect(await raw.text()).toMatch(
      /<Error>\s*<Code>SlowDown<\/Code>\s*<Message>Please reduce your request rate\.<\/Message>/,
    );

    const faults = scripted('s3-5xx');
    setFaults(faults);
    const read = await s3.send(new GetObjectCommand({ Bucket: 'sluice-working', Key: 'faults/probe.txt' }));
    expect(await read.Body?.transformToString()).toBe('hello');
    expect(read.$metadata.attempts, 'the first attempt got the 503').toBe(2);

    const pending = scripted('s3-5xx');
    setFaults(pending);
    const sfn = new SFNClient({
      endpoint: embedded.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });
    const machines = await sfn.send(new ListStateMachinesCommand({}));
    expect(machines.stateMachines?.length).toBeGreaterThan(0);
    expect(pending.pending, 'Step Functions requests draw no S3 fault').toEqual(['s3-5xx']);
  });
});
