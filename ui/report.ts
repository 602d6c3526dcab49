/**
 * `sluice report`: one run's page as one self-contained HTML file: the page (ui/page/*), Apache
 * ECharts and the run's data inlined, so it opens from disk, is attached to a ticket or mailed,
 * and shows the run as the UI did when the report was written (no actions, no requests).
 */
import { type RunPage, rejectsPage, runPage, type UiSource } from './data.ts';
import { pageFile } from './server.ts';

/** At most this many rejected lines go into a report (its table pages through them). */
const MAX_REPORT_REJECTS = 1000;

/** Text inside a <script> element: `</script` and `<!--` cannot end or confuse it. */
const scriptText = (text: string) => text.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');

/** The report's data, read through the target's APIs as the UI reads it. */
export async function reportData(source: UiSource, id: string) {
  const page = await runPage(source, id);
  const rows: Awaited<ReturnType<typeof rejectsPage>>['rows'] = [];
  let total = page.rejects.total;
  while (rows.length < Math.min(total, MAX_REPORT_REJECTS)) {
    const next = await rejectsPage(source, id, rows.length);
    total = next.total;
    if (next.rows.length === 0) break;
    rows.push(...next.rows);
  }
  return { page, rejects: { rows: rows.slice(0, MAX_REPORT_REJECTS), total }, where: source.session.where };
}

export function renderReport(data: { page: RunPage; rejects: unknown; where: string }): string {
  // JSON with every `<` escaped cannot close the script element it sits in.
  const json = JSON.stringify(data).replace(/</g, '\\u003c');
  return pageFile('index.html')
    .replace('<title>Sluice</title>', () => `<title>Sluice run ${data.page.run.id}</title>`)
    .replace('<link rel="stylesheet" href="/style.css">', () => `<style>\n${pageFile('style.css')}</style>`)
    .replace(
      '<script src="/vendor/echarts.min.js"></script>',
      () => `<script>${scriptText(pageFile('echarts'))}</script>\n<script>window.SLUICE_REPORT = ${json};</script>`,
    )
    .replace('<script src="/app.js"></script>', () => `<script>\n${scriptText(pageFile('app.js'))}</script>`);
}
