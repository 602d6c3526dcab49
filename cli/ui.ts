/**
 * `sluice ui`: the web UI for a target (ui/server.ts) on http://127.0.0.1:4578/, until Ctrl-C.
 * It reads and acts only through the target's S3, Step Functions and Athena APIs, so
 * `--target aws` shows a deployed stack as the local target shows the embedded runtime.
 * `sluice dev` serves the same UI beside the runtime (`--ui-port`).
 */
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import type { Pipeline } from '../functions/pipeline/definition.ts';
import { UiRequestError } from '../ui/data.ts';
import { DEFAULT_UI_PORT, startUiServer } from '../ui/server.ts';
import type { TargetSession } from './target.ts';

/** What a command in its own file needs of cli/commands.ts: its target checks, errors, log and pipelines. */
export interface CommandTools {
  /** Opens the target of a command line (--target, --stack, --dir and --pipelines checked as every command does). */
  readonly open: (values: {
    target?: string;
    stack?: string;
    dir?: string;
    pipelines?: string;
  }) => Promise<TargetSession>;
  /** A command line that is not understood (exit code 2). */
  readonly usage: (message: string) => Error;
  /** An error the user can fix, printed without a stack trace (exit code 1). */
  readonly fail: (message: string) => Error;
  /** Prints a command's help; returns its exit code. */
  readonly help: (command: string) => number;
  /** A progress line on stderr. */
  readonly log: (line: string) => void;
  /** The pipeline definitions (`--pipelines`, default the repository's). */
  readonly pipelines: (dir?: string) => ReadonlyMap<string, Pipeline>;
}

/** The options every command takes (cli/commands.ts uses them too). */
export const TARGET_OPTIONS = {
  dir: { type: 'string' },
  pipelines: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  target: { type: 'string', default: 'local' },
  stack: { type: 'string' },
} as const;

export function parseCommand<O extends ParseArgsOptionsConfig>(args: string[], options: O, tools: CommandTools) {
  try {
    return parseArgs({ args, allowPositionals: true, options: { ...TARGET_OPTIONS, ...options } });
  } catch (error) {
    throw tools.usage((error as Error).message);
  }
}

/** A port option: 0 to 65535 (0 picks a free one). */
export function portOption(value: string | undefined, option: string, tools: CommandTools): number {
  const port = Number(value);
  if (!value || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw tools.usage(`${option} "${value}" is not a port (0 to 65535; 0 picks a free one)`);
  }
  return port;
}

export const uiHelp = (
  targetHelp: string,
) => `Usage: sluice ui [--port ${DEFAULT_UI_PORT}] [--target T] [--stack S] [--dir .sluice]

Serves the web UI on http://127.0.0.1:<port>/ until Ctrl-C: runs newest first (filters, a grid by day and
pipeline, live while runs are in progress), a run's steps, chunks across worker slots, throughput,
failure, rejects and SQL, each pipeline's tables with a query box, and actions (start the scheduled run,
redrive, backfill) with a confirmation. "sluice dev" serves it too (--ui-port).
--port    the UI's port (default ${DEFAULT_UI_PORT}; 0 picks a free one)
${targetHelp}`;

export async function ui(args: string[], tools: CommandTools): Promise<number> {
  const { values, positionals } = parseCommand(
    args,
    { port: { type: 'string', default: String(DEFAULT_UI_PORT) } },
    tools,
  );
  if (values.help) return tools.help('ui');
  if (positionals.length > 0) throw tools.usage(`unexpected argument(s): ${positionals.join(' ')}; usage: sluice ui`);
  const port = portOption(values.port, '--port', tools);
  const pipelines = tools.pipelines(values.pipelines);
  const session = await tools.open(values);
  const server = await startUiServer({ session, pipelines }, port).catch(async (error: unknown) => {
    await session.close();
    throw error instanceof UiRequestError ? tools.fail(error.message) : error;
  });
  tools.log(`UI at ${server.url} (${session.where}); Ctrl-C stops it`);
  const stop = async () => {
    await server.close();
    await session.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  return new Promise<number>(() => {}); // runs until a signal
}
