// Whether dist/ (the compiled runtime, `npm run build`) exists and is newer than the sources it
// was built from. Shared by the `runbook` entry and bin/build.mjs; cheap enough for every call.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DIST = path.join(ROOT, 'dist');
/** Written last by bin/build.mjs: a dist/ without it is a build that did not finish. */
export const STAMP = path.join(DIST, '.build-stamp');
export const BUILD_TSCONFIG = path.join(ROOT, 'tsconfig.build.json');

/** The source folders compiled to dist/: tsconfig.build.json's `include`. None in an image that ships only dist/. */
export function sourceDirs() {
  if (!existsSync(BUILD_TSCONFIG)) return [];
  const { include = [] } = JSON.parse(readFileSync(BUILD_TSCONFIG, 'utf8'));
  return include.map((dir) => path.join(ROOT, dir)).filter((dir) => existsSync(dir));
}

/** 'missing', 'stale' (a source file changed after the last build) or 'fresh'. */
export function distState() {
  let built;
  try {
    built = statSync(STAMP).mtimeMs;
  } catch {
    return 'missing';
  }
  const sources = [BUILD_TSCONFIG, path.join(ROOT, 'tsconfig.json'), ...sourceDirs()];
  for (const dir of sources) {
    if (!existsSync(dir)) continue;
    if (statSync(dir).mtimeMs > built) return 'stale';
    if (!statSync(dir).isDirectory()) continue;
    for (const rel of readdirSync(dir, { recursive: true })) {
      // A moved or deleted file changes its directory's mtime, which this catches too.
      if (statSync(path.join(dir, rel)).mtimeMs > built) return 'stale';
    }
  }
  return 'fresh';
}
