#!/usr/bin/env node
// `npm run build`: compile the runtime folders (tsconfig.build.json) to dist/, then copy the files
// they read at run time relative to themselves (codec converters, .proto, demo migrations: every
// file that is not TypeScript) to the same relative paths. `--if-stale` does nothing when dist/
// is newer than every source (`npm start`, `npm run worker`, `npm test`).
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { bundleCli } from './bundle-cli.mjs';
import { BUILD_TSCONFIG, DIST, ROOT, STAMP, distState, sourceDirs } from './dist-state.mjs';

if (process.argv.includes('--if-stale') && distState() === 'fresh') process.exit(0);

const started = Date.now();
// Built beside dist/ and swapped in when complete: a CLI or worker started meanwhile still finds
// the previous build, and a source moved or deleted leaves no old output behind.
const next = `${DIST}.next-${process.pid}`;
rmSync(next, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const compiled = spawnSync(process.execPath, [tsc, '-p', BUILD_TSCONFIG, '--outDir', next], { cwd: ROOT, stdio: 'inherit' });
if (compiled.status !== 0) {
  rmSync(next, { recursive: true, force: true });
  console.error('build failed: tsc reported the errors above; dist/ is unchanged');
  process.exit(compiled.status ?? 1);
}

let copied = 0;
for (const dir of sourceDirs()) {
  for (const rel of readdirSync(dir, { recursive: true })) {
    const from = path.join(dir, rel);
    if (rel.endsWith('.ts') || !statSync(from).isFile()) continue;
    const to = path.join(next, path.relative(ROOT, from));
    mkdirSync(path.dirname(to), { recursive: true });
    cpSync(from, to);
    copied++;
  }
}
const bundled = await bundleCli(next).catch((err) => err);
if (bundled instanceof Error) {
  rmSync(next, { recursive: true, force: true });
  console.error(`build failed: bundling the CLI: ${bundled.message}; dist/ is unchanged`);
  process.exit(1);
}
// The bundle's compiled code, cached by a separate process that loads it (bin/cli-loader.mjs).
const loader = new URL('./cli-loader.mjs', import.meta.url).href;
const cached = spawnSync(process.execPath, ['--input-type=module', '-e', `await (await import(${JSON.stringify(loader)})).writeCodeCache(${JSON.stringify(bundled.outfile)})`], { cwd: ROOT, stdio: 'inherit' });
if (cached.status !== 0) console.error('build: warning: no code cache for the CLI bundle (the first short command writes one)');
writeFileSync(path.join(next, path.basename(STAMP)), `${new Date().toISOString()}\n`);
const old = `${DIST}.old-${process.pid}`;
if (existsSync(DIST)) renameSync(DIST, old);
renameSync(next, DIST);
rmSync(old, { recursive: true, force: true });
console.error(`built dist/ in ${((Date.now() - started) / 1000).toFixed(1)} s (${copied} non-TypeScript files copied)`);
