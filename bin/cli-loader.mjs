// Runs dist/client/cli.bundle.cjs (bin/bundle-cli.mjs) with a V8 code cache beside it: the compiled
// code of the bundle's modules, made by `npm run build` (writeCodeCache). A cache from another
// Node.js version, other V8 flags or an older bundle is rejected by V8 itself and replaced when the
// command ends; a cache that cannot be written (a read-only install) only costs the compile it saves.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';

function load(bundle) {
  const cacheFile = `${bundle}.v8cache`;
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${readFileSync(bundle, 'utf8')}\n})`, {
    filename: bundle,
    cachedData,
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  const save = () => {
    const tmp = `${cacheFile}.${process.pid}`;
    try {
      writeFileSync(tmp, script.createCachedData());
      renameSync(tmp, cacheFile);
    } catch {
      rmSync(tmp, { force: true });
    }
  };
  const module = { exports: {} };
  return { script, module, save, stale: cachedData === undefined || script.cachedDataRejected === true, run: () => script.runInThisContext()(module.exports, createRequire(bundle), module, bundle, path.dirname(bundle)) };
}

/** Runs the CLI from the bundle; when its code cache was missing or rejected, writes a new one at exit. */
export function runBundle(bundle) {
  const b = load(bundle);
  if (b.stale) process.once('exit', b.save);
  b.run();
}

/** `npm run build`: loads every module the short commands use, without running one, and caches their compiled code. */
export async function writeCodeCache(bundle) {
  process.env.RUNBOOK_CLI_PRELOAD = '1';
  const b = load(bundle);
  b.run();
  await b.module.exports.preloadForCodeCache();
  b.save();
}
