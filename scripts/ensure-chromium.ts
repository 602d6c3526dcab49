/**
 * Before `npm test`: the UI test drives Debian's Chromium (/usr/bin/chromium) with playwright-core,
 * and a fresh machine does not have it. As root, install it from Debian's packages (the only
 * download besides npm packages that Sluice allows); otherwise say how, and the UI test skips
 * naming the missing browser. Quick when it is there: one file check.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const CHROMIUM = '/usr/bin/chromium';

if (!existsSync(CHROMIUM)) {
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    console.error(`${CHROMIUM} is missing: installing Debian's chromium for the UI test (apt-get)...`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    try {
      execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
      execFileSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    } catch {
      console.error('could not install chromium; the UI test will be skipped, naming it');
    }
  } else {
    console.error(
      `${CHROMIUM} is missing and this is not root: the UI test will be skipped (install it with "sudo apt-get install chromium")`,
    );
  }
}
