#!/usr/bin/env node
// The `runbook` CLI: runs the compiled JavaScript in dist/ (`npm run build`), so a call does not
// pay for a TypeScript loader. Without a build it says so in one line instead of a stack trace.
import { existsSync } from 'node:fs';
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
if (process.argv[2] === 'demo') {
  // The demo environment's service commands are called many times per stack run: load only them.
  const { demoMain } = await import('../dist/demo/cli.js');
  process.exitCode = await demoMain(process.argv.slice(3));
} else {
  await import('../dist/client/cli.js');
}
