/**
 * moto's server (moto 5.2.1 in the machine's Python) for tests: its Step Functions parses and runs
 * definitions with LocalStack's ASL grammar and interpreter once `execute_state_machine` is on,
 * and it serves CloudFormation. A missing moto is a skip with a message naming it, never a pass.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';

export const motoInstalled = spawnSync('python3', ['-c', 'import moto.server']).status === 0;

/** Says once, in the test output, what did not run because moto is missing. */
export function warnIfMotoMissing(what: string): void {
  if (!motoInstalled) console.warn(`SKIPPED: moto is not installed (pip install 'moto[server]'), so ${what}`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface MotoServer {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  stop(): void;
}

/** Starts `python3 -m moto.server` on a free port and turns on executions (without it they never leave RUNNING). */
export async function startMoto(): Promise<MotoServer> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let output = '';
  const moto: ChildProcess = spawn('python3', ['-m', 'moto.server', '-p', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  moto.stdout?.on('data', (d: Buffer) => (output += d));
  moto.stderr?.on('data', (d: Buffer) => (output += d));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (moto.exitCode !== null) throw new Error(`moto.server exited (${moto.exitCode}): ${output}`);
    try {
      const config = await fetch(`${endpoint}/moto-api/config`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ stepfunctions: { execute_state_machine: true } }),
      });
      if (config.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      moto.kill();
      throw new Error(`moto.server did not answer on ${endpoint} within 30 s: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { endpoint, stop: () => moto.kill() };
}
