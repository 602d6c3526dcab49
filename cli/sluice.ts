#!/usr/bin/env node
/**
 * The `sluice` command: turns on Node's module compile cache, then runs the CLI (cli/commands.ts).
 * Each command loads a few hundred modules (the AWS SDK clients, DuckDB, the embedded runtime), and
 * Node strips the types of Sluice's own TypeScript and compiles all of them at every start: with
 * the cache, compiled code is kept on disk for the next start (`sluice --help`: 0.54 s to about
 * 0.35 s on this 2-core machine). https://nodejs.org/api/module.html#module-compile-cache
 * The cache is in the OS's temp folder unless NODE_COMPILE_CACHE names another; Node checks each
 * entry against its source, so an edited file is compiled again.
 */
import { enableCompileCache } from 'node:module';

enableCompileCache();
await import('./commands.ts');
