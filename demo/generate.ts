/**
 * Seeded sample access logs for the demo and the benchmarks: the same seed gives the
 * same bytes. A few malformed rows are mixed in on purpose, at known places.
 */

import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { randomGenerator } from '../runtime/faults.ts';

export const HEADER = 'event_time,user_id,session_id,method,path,status,bytes_sent,latency_ms,user_agent,country';

/** A small, fast, seedable PRNG (the one fault injection draws from). */
export const random = randomGenerator;

const PATHS = [
  '/',
  '/login',
  '/logout',
  '/search',
  '/cart',
  '/checkout',
  '/api/items',
  '/api/orders',
  '/help',
  '/about',
];
const AGENTS = [
  '"Mozilla/5.0 (Windows NT 10.0; Win64; x64)"',
  '"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)"',
  'curl/8.5.0',
  '"Googlebot/2.1 (+http://www.google.com/bot.html)"',
];
const COUNTRIES = ['KR', 'US', 'JP', 'DE', 'BR', 'IN'];
const ZONES = ['Z', '+09:00', '-05:00', '+00:00'];

export interface SampleFile {
  readonly path: string;
  /** Rows written, malformed ones included (the header is not a row). */
  readonly rows: number;
  /** Rows written malformed on purpose. */
  readonly malformed: number;
}

const two = (n: number) => String(n).padStart(2, '0');

/** One row for `day` (YYYY-MM-DD, UTC); `malformed` picks one of several ways to break it. */
function row(rand: () => number, day: string, malformed: number | undefined): string {
  const hour = Math.floor(rand() * 24);
  const zone = ZONES[Math.floor(rand() * ZONES.length)] as string;
  // Shift the local time so that the UTC instant stays on `day`.
  const offsetHours = zone === 'Z' || zone === '+00:00' ? 0 : Number(zone.slice(0, 3));
  const utc = new Date(`${day}T${two(hour)}:${two(Math.floor(rand() * 60))}:${two(Math.floor(rand() * 60))}Z`);
  const local = new Date(utc.getTime() + offsetHours * 3600_000).toISOString().slice(0, 19);
  const status = rand() < 0.03 ? 500 + Math.floor(rand() * 4) : rand() < 0.1 ? 404 : 200;
  const fields = [
    `${local}${zone}`,
    `user${Math.floor(rand() * 5000)}`,
    `sess${Math.floor(rand() * 1e9).toString(36)}`,
    rand() < 0.8 ? 'GET' : 'POST',
    PATHS[Math.floor(rand() * PATHS.length)] as string,
    String(status),
    String(Math.floor(rand() * 2_000_000)),
    (rand() * 800).toFixed(2),
    AGENTS[Math.floor(rand() * AGENTS.length)] as string,
    COUNTRIES[Math.floor(rand() * COUNTRIES.length)] as string,
  ];
  switch (malformed) {
    case 0:
      fields[5] = 'OK'; // status is not an integer
      break;
    case 1:
      fields.splice(6, 4); // too few columns
      break;
    case 2:
      fields[0] = `${day} 10:00:00`; // no zone
      break;
    case 3:
      fields[7] = 'fast'; // latency is not a number
      break;
  }
  return fields.join(',');
}

async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

/** Writes `rows` rows for `day` to `path` (gzip when it ends in .gz), with `malformed` broken rows. */
export async function writeSample(
  path: string,
  day: string,
  rows: number,
  malformed: number,
  seed: number,
): Promise<SampleFile> {
  const rand = random(seed);
  const file = createWriteStream(path);
  const gzip = path.endsWith('.gz') ? createGzip() : undefined;
  gzip?.pipe(file);
  const out: Writable = gzip ?? file;
  const broken = new Set(Array.from({ length: malformed }, (_, i) => Math.floor(((i + 0.5) * rows) / malformed)));
  let batch = `${HEADER}\n`;
  for (let i = 0; i < rows; i++) {
    batch += `${row(rand, day, broken.has(i) ? i % 4 : undefined)}\n`;
    if (batch.length > 1 << 16) {
      await write(out, batch);
      batch = '';
    }
  }
  await write(out, batch);
  out.end();
  await once(file, 'close');
  return { path, rows, malformed };
}
