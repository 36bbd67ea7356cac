#!/usr/bin/env node
// The `runbook` CLI. TypeScript sources run through tsx's loader, so there is no build step to forget.
import { register } from 'tsx/esm/api';

register();
// `runbook status ID | head -3`: a reader that stops reading is not an error; stop writing and exit.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(process.exitCode ?? 0);
  });
}
if (process.argv[2] === 'demo') {
  // The demo environment's service commands are called many times per stack run: load only them.
  const { demoMain } = await import('../demo/cli.ts');
  process.exitCode = await demoMain(process.argv.slice(3));
} else {
  await import('../client/cli.ts');
}
