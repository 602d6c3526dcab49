/**
 * Defect 1 of issue 6: on a versioned bucket HeadObject returns a VersionId and
 * ListObjectsV2 does not, so an upload's run (HEAD) and the next scheduled run (LIST) must
 * still agree on what "this version" is, or the scheduled run loads the file again. These
 * tests run the real S3 adapter against an in-memory versioned bucket.
 */
import { describe, expect, it } from 'vitest';
import type { Chunk, RunState } from '../../functions/contracts.ts';
import { InputError } from '../../functions/errors.ts';
import { plan } from '../../functions/planning/planner.ts';
import { type FinishedRun, finish } from '../../functions/run/finish.ts';
import { S3ObjectStore } from '../../functions/storage/s3-store.ts';
import { processChunk } from '../../functions/worker/worker.ts';
import { accessLogs, HEADER, logRow, pipelines, testConfig } from '../support/fixtures.ts';
import { MemoryStore } from '../support/memory-store.ts';

const csv = [HEADER, ...Array.from({ length: 20 }, (_, i) => logRow(i))].join('\n');

function finished(state: RunState): FinishedRun {
  const summary = {
    chunks: state.chunks,
    chunksFailed: 0,
    inputs: state.inputs,
    rowsRead: 0,
    rowsLoaded: 0,
    rowsRejected: 0,
    days: [],
  };
  return { ...state, verify: { statements: [], summary } };
}

describe('one identity per object version, on a versioned bucket', () => {
  it('the in-memory bucket is versioned like S3: HEAD and GET carry a VersionId, LIST only the ETag', async () => {
    const memory = new MemoryStore();
    memory.put('sluice-input', 'access-logs/a.csv', csv);
    const client = memory.s3Client();
    const { HeadObjectCommand, ListObjectsV2Command } = await import('@aws-sdk/client-s3');
    const head = (await client.send(new HeadObjectCommand({ Bucket: 'sluice-input', Key: 'access-logs/a.csv' }))) as {
      VersionId?: string;
      ETag?: string;
    };
    const list = await client.send(new ListObjectsV2Command({ Bucket: 'sluice-input', Prefix: 'access-logs/' }));
    expect(head.VersionId).toBeTruthy();
    expect(head.VersionId).not.toBe(head.ETag?.replaceAll('"', ''));
    expect(list.Contents?.[0]).not.toHaveProperty('VersionId');
    expect(list.Contents?.[0]?.ETag).toBe(head.ETag);
  });

  it('S3ObjectStore gives the ETag as the version from HEAD and LIST alike', async () => {
    const memory = new MemoryStore();
    memory.put('sluice-input', 'access-logs/a.csv', csv);
    const store = new S3ObjectStore(memory.s3Client());
    const [listed] = await store.list('sluice-input', 'access-logs/');
    const head = await store.head('sluice-input', 'access-logs/a.csv');
    expect(head?.version).toBe(memory.stored('sluice-input', 'access-logs/a.csv')?.etag);
    expect(listed?.version).toBe(head?.version);
  });

  it('an upload run, then the scheduled run: the second plans nothing', async () => {
    const memory = new MemoryStore();
    const store = new S3ObjectStore(memory.s3Client());
    const config = testConfig();
    const deps = { store, config, pipelines };
    memory.put(config.inputBucket, 'access-logs/day1.csv', csv);
    const upload = await plan(
      {
        request: {
          pipeline: 'access-logs',
          trigger: 'object',
          bucket: config.inputBucket,
          key: 'access-logs/day1.csv',
        },
        runId: 'upload-1',
        startedAt: '2024-03-04T00:00:00Z',
      },
      deps,
    );
    expect(upload.inputs).toBe(1);
    await finish(finished(upload), { ...deps, now: () => new Date('2024-03-04T00:01:00Z') });

    const nightly = await plan(
      {
        request: { pipeline: 'access-logs', trigger: 'schedule' },
        runId: 'night-1',
        startedAt: '2024-03-04T20:00:00Z',
      },
      deps,
    );
    expect(nightly.inputs).toBe(0);
    expect(nightly.chunks).toBe(0);

    // A new version of the same key is new: the next scheduled run loads it.
    memory.put(config.inputBucket, 'access-logs/day1.csv', `${csv}\n${logRow(99)}`);
    const next = await plan(
      {
        request: { pipeline: 'access-logs', trigger: 'schedule' },
        runId: 'night-2',
        startedAt: '2024-03-05T20:00:00Z',
      },
      deps,
    );
    expect(next.inputs).toBe(1);
  });

  it('the planner and the worker read the planned version only (If-Match on the ETag)', async () => {
    const memory = new MemoryStore();
    const store = new S3ObjectStore(memory.s3Client());
    const config = testConfig({ chunkSizeOverride: 256 });
    memory.put(config.inputBucket, 'access-logs/a.csv', csv);
    const etag = memory.stored(config.inputBucket, 'access-logs/a.csv')?.etag;
    const state = await plan(
      {
        request: { pipeline: 'access-logs', trigger: 'object', bucket: config.inputBucket, key: 'access-logs/a.csv' },
        runId: 'r1',
        startedAt: 'x',
      },
      { store, config, pipelines },
    );
    expect(memory.reads.length).toBeGreaterThan(0);
    expect(memory.reads.every((r) => r.ifMatch === `"${etag}"`)).toBe(true);
    const chunks = (await store.getJson<Chunk[]>(config.workingBucket, state.manifest.key)) ?? [];
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.every((c) => c.parts.every((p) => p.version === etag))).toBe(true);

    // The object is replaced after Plan: the worker's read fails, saying so, instead of reading the new bytes.
    memory.put(config.inputBucket, 'access-logs/a.csv', csv.replaceAll('u1', 'u2'));
    const failure = processChunk(chunks[1] as Chunk, { store, config, pipeline: accessLogs });
    await expect(failure).rejects.toThrow(InputError);
    await expect(failure).rejects.toThrow(
      /s3:\/\/sluice-input\/access-logs\/a\.csv was replaced while the run read it .*the new version gets its own run/,
    );
  });
});
