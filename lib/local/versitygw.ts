import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { isExecutableFile } from '../temporal/install.js';

/**
 * Versity's S3 gateway (versitygw), the real S3-compatible server the object-storage tests and
 * benchmarks run against: built once from source with `go install` into the project's cache,
 * as the Temporal CLI is (lib/temporal/install.ts).
 */
export const VERSITYGW_VERSION = 'v1.8.0';
const PACKAGE = 'github.com/versity/versitygw/cmd/versitygw';

/** `$RUNBOOK_CACHE_DIR/versitygw-v1.8.0`, else `${XDG_CACHE_HOME:-~/.cache}/durable-runbooks/versitygw-v1.8.0`. */
export function versitygwCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const root = env.RUNBOOK_CACHE_DIR || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'durable-runbooks');
  return path.resolve(root, `versitygw-${VERSITYGW_VERSION}`);
}

async function findGo(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const dirs = [...(env.PATH ?? '').split(path.delimiter).filter(Boolean), ...(env.GOROOT ? [path.join(env.GOROOT, 'bin')] : []), '/usr/local/go/bin'];
  for (const dir of dirs) if (await isExecutableFile(path.join(dir, 'go'))) return path.join(dir, 'go');
  return undefined;
}

/**
 * The versitygw binary: $VERSITYGW_PATH, else the cache; with `install`, built into the cache
 * when missing (a couple of minutes on two cores). Undefined when absent and Go is not there to
 * build it; throws when VERSITYGW_PATH names no executable or the build fails.
 */
export async function findVersitygw(opts: { install?: boolean; onProgress?: (line: string) => void; env?: NodeJS.ProcessEnv } = {}): Promise<string | undefined> {
  const env = opts.env ?? process.env;
  const progress = opts.onProgress ?? (() => undefined);
  if (env.VERSITYGW_PATH) {
    const p = path.resolve(env.VERSITYGW_PATH);
    if (await isExecutableFile(p)) return p;
    throw new Error(`VERSITYGW_PATH=${env.VERSITYGW_PATH} is not an executable file: point it at a versitygw binary or unset it`);
  }
  const cacheDir = versitygwCacheDir(env);
  const cached = path.join(cacheDir, 'versitygw');
  if (await isExecutableFile(cached)) return cached;
  if (!opts.install) return undefined;
  const go = await findGo(env);
  if (!go) return undefined;
  await mkdir(cacheDir, { recursive: true });
  // Built privately and renamed into place: a concurrent run never sees half a binary.
  const buildDir = await mkdtemp(path.join(cacheDir, '.build-'));
  const started = Date.now();
  progress(`building versitygw ${VERSITYGW_VERSION} with ${go} into ${cacheDir} (about 2 minutes the first time)`);
  const ticker = setInterval(() => progress(`  still building versitygw: ${Math.round((Date.now() - started) / 1000)}s elapsed`), 20_000);
  try {
    const r = await execa(go, ['install', `-ldflags=-X main.Version=${VERSITYGW_VERSION}`, `${PACKAGE}@${VERSITYGW_VERSION}`], {
      env: { ...env, GOTOOLCHAIN: 'local', GOBIN: buildDir },
      extendEnv: false,
      stdin: 'ignore',
      all: true,
      reject: false,
    });
    if (r.exitCode !== 0 || !(await isExecutableFile(path.join(buildDir, 'versitygw')))) {
      throw new Error(`go install ${PACKAGE}@${VERSITYGW_VERSION} failed (exit ${r.exitCode ?? r.signal}); last output:\n${String(r.all ?? '').split('\n').slice(-20).join('\n')}`);
    }
    await rename(path.join(buildDir, 'versitygw'), cached);
    progress(`built ${cached} in ${Math.round((Date.now() - started) / 1000)}s`);
    return cached;
  } finally {
    clearInterval(ticker);
    await rm(buildDir, { recursive: true, force: true });
  }
}

/** Prints the binary's path (building it if needed; progress on stderr), for .ci/run: `tsx lib/local/versitygw.ts`. */
if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  findVersitygw({ install: true, onProgress: (l) => process.stderr.write(`${l}\n`) }).then(
    (p) => {
      if (!p) {
        process.stderr.write('error: no versitygw and no Go to build it: install Go 1.25+ or set VERSITYGW_PATH\n');
        process.exit(1);
      }
      process.stdout.write(`${p}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`error: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
