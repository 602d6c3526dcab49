/**
 * `sluice report <run> --out run.html`: one self-contained HTML file of the run's page in the UI
 * (its data, the page's script and style, and Apache ECharts inlined), read through the target's
 * APIs as the UI reads it.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { RUN_ID, UiRequestError } from '../ui/data.ts';
import { renderReport, reportData } from '../ui/report.ts';
import { type CommandTools, parseCommand } from './ui.ts';

export const reportHelp = (
  targetHelp: string,
) => `Usage: sluice report <run> --out <file.html> [--target T] [--stack S] [--dir .sluice]

Writes one self-contained HTML file of the run's page, as the UI shows it: steps, chunks across worker
slots, throughput, the failure in plain words, the top reject reasons and up to 1000 rejected lines,
and the SQL run at load and derive. It opens from disk, without a server or network access.
--out     the file to write
${targetHelp}`;

export async function report(args: string[], tools: CommandTools): Promise<number> {
  const { values, positionals } = parseCommand(args, { out: { type: 'string' } }, tools);
  if (values.help) return tools.help('report');
  const [id, ...extra] = positionals;
  if (!id) throw tools.usage('which run? usage: sluice report <run> --out <file.html>; "sluice runs" lists the runs');
  if (extra.length > 0)
    throw tools.usage(`unexpected argument(s): ${extra.join(' ')}; usage: sluice report <run> --out <file.html>`);
  if (!values.out) throw tools.usage('--out <file.html> is required: where to write the report');
  if (!RUN_ID.test(id)) throw tools.usage(`"${id}" is not a run id (1 to 80 of A-Z, a-z, 0-9, - and _)`);
  const out = resolve(values.out);
  const pipelines = tools.pipelines(values.pipelines);
  const session = await tools.open(values);
  try {
    const data = await reportData({ session, pipelines }, id).catch((error: unknown) => {
      throw error instanceof UiRequestError ? tools.fail(`${error.message}; "sluice runs" lists the runs`) : error;
    });
    const html = renderReport(data);
    writeFileSync(out, html);
    tools.log(`wrote ${out} (${Math.round(html.length / 1024)} KB)`);
    console.log(out);
    return 0;
  } finally {
    await session.close();
  }
}
