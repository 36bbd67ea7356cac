#!/usr/bin/env node
// The `runbook` CLI: runs the compiled JavaScript in dist/ (`npm run build`), so a call does not
// pay for a TypeScript loader. Without a build it says so in one line instead of a stack trace.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { distState, STAMP } from './dist-state.mjs';

// `runbook status ID | head -3`: a reader that stops reading is not an error; stop writing and exit.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(process.exitCode ?? 0);
  });
}
// Whether the build is stale is said only to a person at a terminal (scripts and tests that read
// stderr get only the command's own output), so only then are the sources walked (~30 ms); otherwise
// one stat of the build stamp tells whether there is a build at all.
const state = process.stderr.isTTY ? distState() : existsSync(STAMP) ? 'fresh' : 'missing';
if (state === 'missing') {
  console.error('runbook: no build in dist/: run `npm run build` first');
  process.exit(1);
}
if (state === 'stale') console.error('runbook: warning: dist/ is older than the sources: run `npm run build`');
// Commands that run for minutes or days (a worker, the dev environment, a server) start once: they
// run the compiled ES modules, which load the worker's native module and bundler as they are.
const LONG_RUNNING = new Set(['worker', 'dev', 'temporal', 'codec-server']);
const BUNDLE = fileURLToPath(new URL('../dist/client/cli.bundle.cjs', import.meta.url));
// RUNBOOK_CLI_BUNDLE=0 runs every command from the ES modules (to tell a bundling fault from a bug).
const BUNDLED = process.env.RUNBOOK_CLI_BUNDLE !== '0';
if (process.argv[2] === 'demo') {
  // The demo environment's service commands are called many times per stack run: load only them.
  const { demoMain } = await import('../dist/demo/cli.js');
  process.exitCode = await demoMain(process.argv.slice(3));
} else if (BUNDLED && !LONG_RUNNING.has(process.argv[2] ?? '') && existsSync(BUNDLE)) {
  // Short commands run the one-file bundle with its compiled code cached (bin/bundle-cli.mjs).
  const { runBundle } = await import('./cli-loader.mjs');
  runBundle(BUNDLE);
} else {
  await import('../dist/client/cli.js');
}
