/**
 * The UI end to end, as a user sees it: `sluice dev` in its own process (the UI on a free port
 * beside the runtime), a good file and a failing one run with `sluice run`, and the page opened
 * in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core). Screenshots go to
 * test-output/ui/. Without Chromium every test is skipped, naming the missing browser.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { HEADER, logRow } from '../support/fixtures.ts';
import { tempDir } from '../support/temp.ts';

const CHROMIUM = '/usr/bin/chromium';
const MISSING = existsSync(CHROMIUM)
  ? undefined
  : `no browser: ${CHROMIUM} (Debian's chromium) is not installed; install it with "apt-get install chromium" (npm test does, as root: scripts/ensure-chromium.ts)`;

const root = join(import.meta.dirname, '../..');
const cli = join(root, 'cli/sluice.ts');
const out = join(root, 'test-output/ui');
const dir = tempDir('ui-');
let dev: ChildProcess | undefined;
let devLog = '';
let ui = '';
let browser: Browser | undefined;
let page: Page;

interface Run {
  id: string;
  status: string;
  trigger: string;
  chunks: number | null;
}

async function sluice(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [cli, ...args, '--dir', dir], { cwd: root });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function runs(): Promise<Run[]> {
  const listed = await sluice('runs', '--json');
  if (listed.code !== 0) throw new Error(`sluice runs --json failed: ${listed.stderr}`);
  return JSON.parse(listed.stdout) as Run[];
}

/** The runs as `sluice runs --json` listed them in the first test (each CLI call is a process start). */
let listed: Run[] = [];

/** The runs as the UI's endpoint lists them: for polling. */
const uiRuns = async () => ((await (await fetch(`${ui}api/runs`)).json()) as { runs: Run[] }).runs;

function skipWithout(ctx: TestContext): void {
  if (MISSING) ctx.skip(MISSING);
}

beforeAll(async () => {
  if (MISSING) {
    console.warn(`UI e2e: every test is skipped: ${MISSING}`);
    return;
  }
  mkdirSync(out, { recursive: true });
  // Small chunks, so that the good file is several chunks across worker slots.
  dev = spawn(process.execPath, [cli, 'dev', '--port', '0', '--ui-port', '0', '--dir', dir], {
    cwd: root,
    env: { ...process.env, SLUICE_CHUNK_SIZE: '64KB' },
  });
  dev.stdout?.on('data', (b: Buffer) => {
    devLog += b.toString();
  });
  dev.stderr?.on('data', (b: Buffer) => {
    devLog += b.toString();
  });
  for (let i = 0; i < 300 && !ui && dev.exitCode === null; i++) {
    ui = /UI at (http:\/\/\S+)/.exec(devLog)?.[1] ?? '';
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!ui) throw new Error(`sluice dev did not serve the UI; it said:\n${devLog}`);
  const rows = Array.from({ length: 3000 }, (_, i) => logRow(i));
  rows[5] = logRow(5, { status: 'OK' });
  rows[1500] = 'not,enough,fields';
  writeFileSync(join(dir, 'good.csv'), `${HEADER}\n${rows.join('\n')}\n`);
  // A gzip file cut short: the worker reads its header, then fails on its end and refuses it.
  const gz = gzipSync(`${HEADER}\n${rows.join('\n')}\n`);
  writeFileSync(join(dir, 'cut.csv.gz'), gz.subarray(0, gz.length - 2000));
  expect((await sluice('run', 'access-logs', '--file', join(dir, 'good.csv'))).code).toBe(0);
  expect((await sluice('run', 'access-logs', '--file', join(dir, 'cut.csv.gz'))).code).toBe(1);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
});

afterAll(async () => {
  await browser?.close();
  dev?.kill('SIGTERM');
});

/** The number of bars the Gantt chart draws (its ECharts series), once it is drawn. */
async function ganttBars(): Promise<number> {
  await page.waitForSelector('#gantt[data-bars]');
  return page.evaluate(() => {
    // In the page: its document and the ECharts global (this file is type-checked without the DOM library).
    const inPage = globalThis as unknown as {
      document: { getElementById(id: string): unknown };
      echarts: { getInstanceByDom(node: unknown): { getOption(): { series: { data: unknown[] }[] } } };
    };
    const chart = inPage.echarts.getInstanceByDom(inPage.document.getElementById('gantt'));
    return chart.getOption().series[0]?.data.length ?? 0;
  });
}

describe('sluice ui', () => {
  it('lists the runs as `sluice runs --json` does, newest first, with the grid by day and pipeline', async (ctx) => {
    skipWithout(ctx);
    listed = await runs();
    const expected = listed;
    await page.goto(`${ui}#/runs`);
    await page.waitForSelector('#runs-table tr[data-run]');
    const shown = await page.$$eval('#runs-table tr[data-run]', (rows) =>
      rows.map((r) => ({ id: r.getAttribute('data-run'), status: r.getAttribute('data-status') })),
    );
    expect(shown).toEqual(expected.map((r) => ({ id: r.id, status: r.status })));
    expect(shown.map((r) => r.status)).toEqual(['FAILED', 'SUCCEEDED']);
    // Filtered by status, only the failed run is left.
    await page.selectOption('select[data-filter="status"]', 'FAILED');
    expect(await page.$$eval('#runs-table tr[data-run]', (rows) => rows.length)).toBe(1);
    await page.selectOption('select[data-filter="status"]', '');
    await page.screenshot({ path: join(out, 'runs.png'), fullPage: true });
  });

  it('draws one Gantt bar per chunk of a run, with its steps, rejects and SQL', async (ctx) => {
    skipWithout(ctx);
    const good = listed.find((r) => r.status === 'SUCCEEDED');
    expect(good?.chunks).toBeGreaterThan(1);
    await page.goto(`${ui}#/run/${good?.id}`);
    expect(await ganttBars()).toBe(good?.chunks);
    await page.waitForSelector('#rejects-table tbody tr');
    const rejects = await page.$$eval('#rejects-table tbody tr', (rows) => rows.map((r) => r.textContent ?? ''));
    expect(rejects).toHaveLength(2);
    expect(rejects[0]).toContain('access-logs/good.csv7status');
    expect(rejects[1]).toContain('not,enough,fields');
    expect(await page.textContent('#statements')).toContain('MERGE INTO "access_logs"');
    await page.screenshot({ path: join(out, 'run.png'), fullPage: true });
  });

  it("names a failed run's input and its error, in plain words", async (ctx) => {
    skipWithout(ctx);
    const failed = listed.find((r) => r.status === 'FAILED');
    await page.goto(`${ui}#/run/${failed?.id}`);
    const text = await page.textContent('#failure');
    expect(text).toContain('Failed in Process');
    expect(text).toContain('s3://sluice-input/access-logs/cut.csv.gz is not a valid gzip file');
    expect(text).toContain('chunk 0Sluice.InputError in access-logs/cut.csv.gz (bytes 0–');
    expect(await ganttBars()).toBe(1);
    expect(await page.isVisible('#redrive')).toBe(true);
    await page.screenshot({ path: join(out, 'failed-run.png'), fullPage: true });
  });

  it('starts the scheduled run after a confirmation, through the same call as the CLI', async (ctx) => {
    skipWithout(ctx);
    const before = await uiRuns();
    await page.goto(`${ui}#/runs`);
    await page.click('#start-scheduled');
    await page.click('#confirm-ok');
    await page.waitForSelector('.notice a[href^="#/run/"]');
    const started = await page.getAttribute('.notice a[href^="#/run/"]', 'href');
    let after = await uiRuns();
    for (let i = 0; i < 100 && after[0]?.status === 'RUNNING'; i++) {
      await new Promise((r) => setTimeout(r, 200));
      after = await uiRuns();
    }
    expect(after).toHaveLength(before.length + 1);
    // It ended: cut.csv.gz was refused by the run that read it, so the scheduled run skips that version
    // (one bad file fails one run, not every night's) and succeeds with nothing to load.
    expect(after[0]).toMatchObject({ trigger: 'schedule', status: 'SUCCEEDED' });
    expect(started).toBe(`#/run/${after[0]?.id}`);
  });

  it('shows the tables with rows and days, and answers the query box', async (ctx) => {
    skipWithout(ctx);
    await page.goto(`${ui}#/tables`);
    await page.waitForSelector('tr[data-table="access_logs"]');
    const cells = await page.$$eval('tr[data-table="access_logs"] td', (tds) => tds.map((td) => td.textContent));
    expect(cells).toEqual([
      'access_logs',
      'main',
      '2,998',
      '3 day(s): 2024-03-03 (999), 2024-03-02 (1,000), 2024-03-01 (999)',
    ]);
    await page.fill('#sql', 'SELECT path, count(*) AS n FROM access_logs GROUP BY path ORDER BY path');
    await page.click('#run-query');
    await page.waitForSelector('#query-table tbody tr');
    expect(await page.$$eval('#query-table tbody tr', (rows) => rows.map((r) => r.textContent))).toEqual([
      '/p/0749',
      '/p/1749',
      '/p/2750',
      '/p/3750',
    ]);
    await page.screenshot({ path: join(out, 'tables.png'), fullPage: true });
  });

  it('writes one self-contained HTML report of a run that opens from disk', async (ctx) => {
    skipWithout(ctx);
    const failed = listed.find((r) => r.status === 'FAILED');
    const file = join(out, 'report.html');
    const written = await sluice('report', failed?.id ?? '', '--out', file);
    expect(written.code).toBe(0);
    // Offline: any request the page made would fail.
    const context = await (browser as Browser).newContext({ offline: true });
    const report = await context.newPage();
    await report.goto(`file://${file}`);
    expect(await report.textContent('#failure')).toContain('access-logs/cut.csv.gz is not a valid gzip file');
    await report.waitForSelector('#gantt[data-bars="1"]');
    await context.close();
  });
});
