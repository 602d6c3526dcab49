/**
 * Temporary folders for tests: each under one folder per test file, which is removed after the
 * file's tests (test/support/setup.ts, a vitest setup file) or at the latest when the process exits,
 * so that a run of the suite leaves nothing behind in the system's temp folder.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let root: string | undefined;

/** A new, empty folder named `<prefix><random>`, removed with the others when this process exits. */
export function tempDir(prefix: string): string {
  if (!root) {
    root = mkdtempSync(join(tmpdir(), 'sluice-tests-'));
    const made = root;
    process.once('exit', () => rmSync(made, { recursive: true, force: true }));
  }
  mkdirSync(root, { recursive: true });
  return mkdtempSync(join(root, prefix));
}

/** Removes every folder {@link tempDir} made in this test file. */
export function removeTempDirs(): void {
  if (root) rmSync(root, { recursive: true, force: true });
  root = undefined;
}
