/**
 * `sluice cost`: the model's arithmetic on the real state machine and pipeline, and the command
 * as a user runs it (offline, a table or JSON, plain errors for bad input).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import {
  ASSUMPTIONS,
  type CostModel,
  chunksOf,
  cost,
  countTransitions,
  latestBenchmark,
  modelCost,
  parseInputSize,
  readStateMachine,
  type Throughput,
} from '../../cli/cost.ts';
import { loadPipelines, type Pipeline } from '../../functions/pipeline/definition.ts';

const root = join(import.meta.dirname, '../..');
const machine = readStateMachine(root);
const pipeline = loadPipelines(join(root, 'pipelines')).get('access-logs') as Pipeline;
const throughput: Throughput = { workerMbPerSecond: 25, copyMbPerSecond: 100, threads: 1, source: 'test' };
const TB = 1024 ** 4;
const MIB = 1024 ** 2;

const usdOf = (m: CostModel, service: string) =>
  m.items.filter((i) => i.service === service).reduce((sum, i) => sum + i.usd, 0);

describe('state transitions counted on the ASL', () => {
  const happyPath = (statements: number, polls: number) =>
    countTransitions(
      machine,
      (state, visits) => {
        if (state === 'HasChunks') return 'Process';
        if (state === 'QueryState') return visits < polls ? 'WaitForQuery' : 'QuerySucceeded';
        throw new Error(`unexpected Choice ${state}`);
      },
      (map) => (map === 'Load' ? statements : 0),
    );

  it('counts the parent states of a run, and per statement its Parallel, StartQuery, polls and Succeed', () => {
    // Plan, HasChunks, Process, AcquireLease, Verify, Load, Finish, ReleaseLease, Succeeded.
    expect(happyPath(0, 1)).toBe(9);
    // Statement, StartQuery, QuerySucceeded, and WaitForQuery + GetQuery + QueryState per poll.
    expect(happyPath(1, 1)).toBe(9 + 3 + 3);
    expect(happyPath(4, 5) - happyPath(3, 5)).toBe(3 + 3 * 5);
  });
});

describe('the cost model', () => {
  it('splits large objects into chunks and packs small ones, at most 500 parts a chunk', () => {
    expect(chunksOf(2, 200 * MIB, 64 * MIB)).toBe(8);
    expect(chunksOf(100, 1 * MIB, 64 * MIB)).toBe(2);
    expect(chunksOf(1000, 1024, 64 * MIB)).toBe(2);
  });

  it('reads sizes in binary units up to PB and refuses anything else', () => {
    expect(parseInputSize('1TB')).toBe(TB);
    expect(parseInputSize('1.5 gb')).toBe(1.5 * 1024 ** 3);
    expect(parseInputSize('1 TiB')).toBeNaN();
    expect(parseInputSize('-1TB')).toBeNaN();
  });

  it('totals its line items, and states whether the $0.10 per TB target is met and what dominates', () => {
    const m = modelCost(pipeline, machine, { inputBytes: TB, throughput });
    expect(m.totalUsd).toBeCloseTo(
      m.items.reduce((sum, i) => sum + i.usd, 0),
      10,
    );
    expect(m.usdPerTb).toBeCloseTo(m.totalUsd, 10);
    expect(m.target.met).toBe(m.usdPerTb <= 0.1);
    expect(m.target.dominant).toMatch(/^(Lambda|Athena|S3|Step Functions) /);
    expect(m.chunks).toBe(16384);
  });

  it('bills the worker by its throughput and memory: twice the speed halves its GB-seconds', () => {
    const work = (m: CostModel) => m.items.find((i) => i.item.startsWith('Work: 16384 chunks'))?.quantity ?? 0;
    const slow = modelCost(pipeline, machine, { inputBytes: TB, throughput });
    const fast = modelCost(pipeline, machine, {
      inputBytes: TB,
      throughput: { ...throughput, workerMbPerSecond: 50 },
    });
    const big = modelCost(pipeline, machine, { inputBytes: TB, throughput, workerMemoryMb: 3538 });
    expect(work(fast)).toBeCloseTo(work(slow) / 2, 6);
    expect(work(big)).toBeCloseTo(work(slow) * 2, 6);
  });

  it('charges Athena at least 10 MB a statement, so one run per small upload costs more than one scheduled run', () => {
    const input = { inputBytes: 10 * 1024 ** 3, objects: 10_000, throughput } as const;
    const scheduled = modelCost(pipeline, machine, input);
    const uploads = modelCost(pipeline, machine, { ...input, trigger: 'object' });
    expect(uploads.runs).toBe(10_000);
    expect(usdOf(uploads, 'Athena')).toBeGreaterThan(10_000 * 2 * 10 * 2 ** 20 * (5 / TB));
    expect(usdOf(uploads, 'Step Functions')).toBeGreaterThan(100 * usdOf(scheduled, 'Step Functions'));
    expect(uploads.totalUsd).toBeGreaterThan(scheduled.totalUsd);
  });

  it('puts Glue and an Athena CTAS beside it, the CTAS at $5 per TB of CSV', () => {
    const m = modelCost(pipeline, machine, { inputBytes: TB, throughput });
    expect(m.alternatives.map((a) => a.name)).toEqual(['Glue Spark job', 'Athena CTAS from the CSV']);
    expect(m.alternatives[1]?.usd).toBeCloseTo(5, 6);
    // A tiny input still pays Glue's minimum: 2 DPUs for one minute.
    const tiny = modelCost(pipeline, machine, { inputBytes: MIB, throughput });
    expect(tiny.alternatives[0]?.usd).toBeCloseTo((2 / 60) * 0.44, 6);
  });

  it("warns of the stack defaults' limits the load would meet, and of none for a small load", () => {
    const big = modelCost(pipeline, machine, { inputBytes: 10 * TB, objects: 1_000_000, throughput });
    expect(big.warnings.join('\n')).toMatch(/cutoff of 10 GiB a query/);
    // Plan reads no object it does not cut; Finish writes a marker per object within its 900 s up to about 2.8 M.
    expect(big.warnings.join('\n')).not.toMatch(/Plan would take|Finish would take/);
    const many = modelCost(pipeline, machine, { inputBytes: 10 * TB, objects: 3_000_000, throughput });
    expect(many.warnings.join('\n')).toMatch(/Finish would take about \d+ s for 3000000 objects/);
    const small = modelCost(pipeline, machine, { inputBytes: 20 * 1024 ** 3, throughput });
    expect(small.warnings).toEqual([]);
  });

  it('names its assumptions', () => {
    const m = modelCost(pipeline, machine, { inputBytes: TB, throughput });
    expect(m.assumptions.join('\n')).toContain(`${ASSUMPTIONS.s3LatencySeconds * 1000} ms`);
    expect(m.assumptions[0]).toContain('25 MB/s');
  });
});

describe('the worker throughput of docs/benchmarks.md', () => {
  const entry = (when: string, mbps: number) => `## bench:worker, ${when}, commit abc1234

- file 220 MB, 1900000 rows; DuckDB threads 1; chunk size 64MB; median of 3
- worker (S3 -> DuckDB -> Parquet on S3): ${mbps} MB/s
- plain DuckDB COPY read_csv -> parquet:  80.8 MB/s
`;

  it('comes from the newest entry that has the figures', () => {
    const markdown = `# Benchmarks\n\n${entry('2026-11-25T22:04Z', 17.3)}\n${entry('2026-11-26T03:17Z', 28.3)}\n## bench:worker, broken\n`;
    expect(latestBenchmark(markdown)).toEqual({
      workerMbPerSecond: 28.3,
      copyMbPerSecond: 80.8,
      threads: 1,
      source: 'docs/benchmarks.md, bench:worker, 2026-11-26T03:17Z, commit abc1234',
    });
    expect(latestBenchmark('# Benchmarks\n')).toBeUndefined();
  });
});

describe('sluice cost', () => {
  class Usage extends Error {}
  const tools = {
    usage: (message: string) => new Usage(message),
    help: () => 0,
    pipelines: () => loadPipelines(join(root, 'pipelines')),
  };
  /** Runs the command in this process, and returns what it printed on stdout. */
  const run = async (...args: string[]) => {
    const printed: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((line: unknown) => printed.push(String(line)));
    try {
      const code = await cost(args, tools, root);
      return { code, stdout: printed.join('\n') };
    } finally {
      spy.mockRestore();
    }
  };

  it('prints a table, the total per TB and the alternatives, with no AWS account', async () => {
    const { code, stdout } = await run('access-logs', '--input', '1TB');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^service +item +quantity +unit +usd$/m);
    expect(stdout).toMatch(/^total: \$[\d.]+, \$[\d.]+ per TB of CSV$/m);
    expect(stdout).toContain('Athena CTAS from the CSV: $5.00');
  });

  it('prints JSON with --json', async () => {
    const { code, stdout } = await run('access-logs', '--input', '250GB', '--objects', '1000', '--json');
    expect(code).toBe(0);
    const model = JSON.parse(stdout) as CostModel;
    expect(model.inputBytes).toBe(250 * 1024 ** 3);
    expect(model.objects).toBe(1000);
  });

  it('refuses bad input with a usage error that says what was wrong', async () => {
    await expect(run('access-logs', '--input', 'lots')).rejects.toThrow(
      new Usage('--input "lots" is not a size such as 1TB, 250GB or 64MB'),
    );
    await expect(run('access-logs')).rejects.toThrow(/--input <size> is required/);
    await expect(run('access-logs', '--input', '1TB', '--target', 'aws')).rejects.toThrow(/works offline/);
    await expect(run('access-logs', '--input', '1TB', '--objects', '0')).rejects.toThrow(/--objects "0"/);
    await expect(run('nope', '--input', '1TB')).rejects.toThrow(/unknown pipeline "nope"/);
  });

  it('is a command of the sluice CLI: a plain sentence and exit code 2 for a bad command line', async () => {
    const cli = join(root, 'cli/sluice.ts');
    const failed = await promisify(execFile)(process.execPath, [cli, 'cost', 'access-logs', '--input', 'lots'], {
      cwd: root,
    }).catch((error: { code: number; stderr: string }) => error);
    expect('code' in failed ? failed.code : 0).toBe(2);
    expect(failed.stderr).toContain('sluice: --input "lots" is not a size such as 1TB');
    expect(failed.stderr).not.toMatch(/\n\s+at /);
  });
});
