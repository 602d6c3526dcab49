/**
 * The UI's HTTP server (node:http, 127.0.0.1 only): the page (ui/page/*, and Apache ECharts from
 * node_modules, so it works without network access) and the JSON endpoints it calls. Every
 * endpoint reads or acts through the target's S3, Step Functions and Athena clients (ui/data.ts,
 * ui/actions.ts), so `sluice ui --target aws` shows a deployed stack as `sluice dev` shows the
 * embedded one.
 *
 *   GET  /api/info                  the target and its pipelines
 *   GET  /api/runs?limit=200        runs, newest first
 *   GET  /api/runs/<run>            a run's page (steps, chunks, failure, statements, rejects)
 *   GET  /api/runs/<run>/rejects?offset=0   a page of its rejected lines
 *   GET  /api/tables                each pipeline's tables: rows and days
 *   POST /api/query {sql}           one read-only statement through Athena
 *   POST /api/actions/scheduled {pipeline} | redrive {run} | backfill {pipeline, from, to, reload}
 *
 * Errors answer `{error: "<plain sentence>"}` with a 4xx or 5xx status, never a stack trace.
 * POSTs must be JSON from the page's own origin: a page elsewhere cannot start runs.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isReadOnlyStatement, runQuery } from '../cli/client.ts';
import { messageOf } from '../cli/remote.ts';
import { backfill, redrive, startScheduled } from './actions.ts';
import { pipelineInfos, rejectsPage, runPage, runsPage, tablesPage, UiRequestError, type UiSource } from './data.ts';

/** The UI's port: beside the embedded runtime's 4577. */
export const DEFAULT_UI_PORT = 4578;

const PAGE_DIR = join(import.meta.dirname, 'page');

/** The page's static files: name → [path, content type]. */
const STATIC: Record<string, readonly [string, string]> = {
  '/': [join(PAGE_DIR, 'index.html'), 'text/html; charset=utf-8'],
  '/app.js': [join(PAGE_DIR, 'app.js'), 'text/javascript; charset=utf-8'],
  '/style.css': [join(PAGE_DIR, 'style.css'), 'text/css; charset=utf-8'],
  '/vendor/echarts.min.js': [
    fileURLToPath(import.meta.resolve('echarts/dist/echarts.min.js')),
    'text/javascript; charset=utf-8',
  ],
};

/** The page's files, read once. */
export function pageFile(name: 'index.html' | 'app.js' | 'style.css' | 'echarts'): string {
  const path = name === 'echarts' ? STATIC['/vendor/echarts.min.js']?.[0] : join(PAGE_DIR, name);
  return readFileSync(path ?? '', 'utf8');
}

export interface UiServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) {
    throw new UiRequestError('send JSON (content-type: application/json)', 415);
  }
  const origin = req.headers.origin;
  if (origin && origin !== `http://${req.headers.host}`) {
    throw new UiRequestError(`requests from ${origin} are not accepted`, 403);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 256 * 1024) throw new UiRequestError('the request is larger than 256 KiB', 413);
    chunks.push(chunk);
  }
  try {
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (typeof body === 'object' && body !== null && !Array.isArray(body)) return body as Record<string, unknown>;
  } catch {
    // below
  }
  throw new UiRequestError('the request body is not a JSON object');
}

type Route = (source: UiSource, req: IncomingMessage, url: URL, match: RegExpExecArray) => Promise<unknown>;

const ROUTES: { method: string; path: RegExp; route: Route }[] = [
  {
    method: 'GET',
    path: /^\/api\/info$/,
    route: async (source) => ({
      target: source.session.target,
      where: source.session.where,
      pipelines: pipelineInfos(source),
    }),
  },
  {
    method: 'GET',
    path: /^\/api\/runs$/,
    route: (source, _req, url) => {
      const limit = Number(url.searchParams.get('limit') ?? 100);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new UiRequestError('limit must be 1 to 1000');
      return runsPage(source, limit);
    },
  },
  { method: 'GET', path: /^\/api\/runs\/([^/]+)$/, route: (source, _req, _url, m) => runPage(source, m[1] ?? '') },
  {
    method: 'GET',
    path: /^\/api\/runs\/([^/]+)\/rejects$/,
    route: (source, _req, url, m) => rejectsPage(source, m[1] ?? '', Number(url.searchParams.get('offset') ?? 0)),
  },
  { method: 'GET', path: /^\/api\/tables$/, route: (source) => tablesPage(source) },
  {
    method: 'POST',
    path: /^\/api\/query$/,
    route: async (source, req) => {
      const { sql } = await jsonBody(req);
      if (typeof sql !== 'string' || !sql.trim()) throw new UiRequestError('no SQL given');
      if (!isReadOnlyStatement(sql)) {
        throw new UiRequestError(
          'the query box only reads (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, VALUES); use "sluice query --write" to change tables',
        );
      }
      return runQuery(source.session, sql);
    },
  },
  {
    method: 'POST',
    path: /^\/api\/actions\/scheduled$/,
    route: async (source, req) => startScheduled(source, (await jsonBody(req)).pipeline),
  },
  {
    method: 'POST',
    path: /^\/api\/actions\/redrive$/,
    route: async (source, req) => redrive(source, (await jsonBody(req)).run),
  },
  {
    method: 'POST',
    path: /^\/api\/actions\/backfill$/,
    route: async (source, req) => backfill(source, await jsonBody(req)),
  },
];

async function handle(source: UiSource, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const file = req.method === 'GET' ? STATIC[url.pathname] : undefined;
  if (file) {
    res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-cache' });
    res.end(readFileSync(file[0]));
    return;
  }
  for (const { method, path, route } of ROUTES) {
    const match = path.exec(url.pathname);
    if (!match) continue;
    if (req.method !== method) return send(res, 405, { error: `use ${method} for ${url.pathname}` });
    try {
      return send(res, 200, await route(source, req, url, match));
    } catch (error) {
      if (error instanceof UiRequestError) return send(res, error.status, { error: error.message });
      // A failed query or an unreachable target: its plain message, for the page to show.
      return send(res, error instanceof Error && error.name === 'QueryFailedError' ? 400 : 502, {
        error: messageOf(error),
      });
    }
  }
  send(res, 404, { error: `nothing at ${url.pathname}` });
}

/**
 * Serves the UI for `source` on 127.0.0.1:`port` (0 picks a free port). A port in use is an error
 * naming `portOption`, the command-line option that chooses another.
 */
export async function startUiServer(
  source: UiSource,
  port: number = DEFAULT_UI_PORT,
  portOption = '--port',
): Promise<UiServer> {
  const server: Server = createServer((req, res) => {
    handle(source, req, res).catch((error: unknown) => {
      if (!res.headersSent) send(res, 500, { error: messageOf(error) });
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? new UiRequestError(
              `port ${port} is in use (a running "sluice dev" serves the UI on 4578); choose another with ${portOption} (0 picks a free one)`,
            )
          : error,
      ),
    );
    server.listen(port, '127.0.0.1', resolve);
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    port: actual,
    url: `http://127.0.0.1:${actual}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
