import { constants } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { pidAlive } from '../local/processes.js';
import { silentLogger, type Logger } from '../logger.js';

/** The Temporal CLI whose `server start-dev` we run (Temporal Server 1.29.1, UI 2.42.1). */
export const TEMPORAL_CLI_VERSION = 'v1.5.1';
const CLI_PACKAGE = 'github.com/temporalio/cli/cmd/temporal';
/** go.mod of the CLI at TEMPORAL_CLI_VERSION says `go 1.25.0`; GOTOOLCHAIN=local forbids fetching a newer one. */
export const MIN_GO = '1.25';

/** What a user can do when there is no CLI and none could be built, one line each. */
export const TEMPORAL_CLI_FIXES = [
  `install Go ${MIN_GO}+ (https://go.dev/dl/) and run \`runbook temporal install\` (builds ${TEMPORAL_CLI_VERSION} into the cache)`,
  'download the Temporal CLI (https://github.com/temporalio/cli/releases) and set TEMPORAL_CLI_PATH=/path/to/temporal',
] as const;

export interface FindCliOptions {
  /** Build it with `go install` when it is nowhere to be found (minutes the first time). */
  install?: boolean;
  logger?: Logger;
  /** Human-readable progress of a build, one line at a time. */
  onProgress?: (line: string) => void;
  /** Where TEMPORAL_CLI_PATH, PATH and RUNBOOK_CACHE_DIR are read; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
}

/** `$RUNBOOK_CACHE_DIR/temporal-v1.5.1`, else `${XDG_CACHE_HOME:-~/.cache}/durable-runbooks/temporal-v1.5.1`. */
export function temporalCliCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(runbookCacheRoot(env), `temporal-${TEMPORAL_CLI_VERSION}`);
}

/** `$RUNBOOK_CACHE_DIR`, else `${XDG_CACHE_HOME:-~/.cache}/durable-runbooks`: where built tools are kept. */
export function runbookCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.RUNBOOK_CACHE_DIR || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'durable-runbooks'));
}

export async function isExecutableFile(file: string): Promise<boolean> {
  try {
    if (!(await stat(file)).isFile()) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function findOnPath(name: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/** Go is often installed without being on a non-login shell's PATH. */
export async function findGo(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const onPath = await findOnPath('go', env);
  if (onPath) return onPath;
  for (const candidate of [env.GOROOT && path.join(env.GOROOT, 'bin', 'go'), '/usr/local/go/bin/go']) {
    if (candidate && (await isExecutableFile(candidate))) return candidate;
  }
  return undefined;
}

export class TemporalCliBuildError extends Error {
  constructor(
    message: string,
    readonly outputTail: string,
  ) {
    super(`${message}\n${outputTail}`);
    this.name = 'TemporalCliBuildError';
  }
}

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/**
 * Where the `temporal` binary is, in this order: $TEMPORAL_CLI_PATH, `temporal` on PATH,
 * the project's cache; then, with `install`, built by `go install` into the cache.
 * Returns undefined when none is found and Go is not available to build one.
 * Throws when TEMPORAL_CLI_PATH names no executable (an explicit setting must not be
 * silently ignored) and when Go is there but the build fails (the error carries Go's output).
 */
export async function findTemporalCli(opts: FindCliOptions = {}): Promise<string | undefined> {
  const env = opts.env ?? process.env;
  const logger = opts.logger ?? silentLogger;
  const explicit = env.TEMPORAL_CLI_PATH;
  if (explicit) {
    const resolved = path.resolve(explicit);
    if (await isExecutableFile(resolved)) return resolved;
    throw new Error(`TEMPORAL_CLI_PATH=${explicit} is not an executable file: point it at a \`temporal\` binary or unset it`);
  }
  const onPath = await findOnPath('temporal', env);
  if (onPath) return onPath;

  const cacheDir = temporalCliCacheDir(env);
  const cached = path.join(cacheDir, 'temporal');
  if (await isExecutableFile(cached)) return cached;
  if (!opts.install) return undefined;

  const go = await findGo(env);
  if (!go) {
    logger.warn({ cacheDir }, 'no Temporal CLI found and Go is not installed to build one');
    return undefined;
  }
  await goInstallCached(
    {
      label: `Temporal CLI ${TEMPORAL_CLI_VERSION}`,
      cacheDir,
      packages: [`${CLI_PACKAGE}@${TEMPORAL_CLI_VERSION}`],
      // Without this the binary reports 0.0.0-DEV; release builds set it the same way.
      ldflags: `-X github.com/temporalio/cli/temporalcli.Version=${TEMPORAL_CLI_VERSION.slice(1)}`,
      binaries: { temporal: 'temporal' },
      minGo: MIN_GO,
    },
    { go, env, logger, onProgress: opts.onProgress },
  );
  return cached;
}

/** One `go install` of packages of one module version, whose binaries are kept in a cache directory. */
export interface GoBuild {
  /** For progress lines and errors, e.g. "Temporal CLI v1.5.1". */
  label: string;
  cacheDir: string;
  /** `import/path@version`, all of the same module version (one `go install`). */
  packages: string[];
  ldflags?: string;
  /** Name `go install` gives a binary -> its name in cacheDir. */
  binaries: Record<string, string>;
  /** The Go release the module's go.mod asks for, named in messages. */
  minGo: string;
}

/**
 * Builds `build` into its cache directory unless all its binaries are there. One build at a
 * time per cache: a second process (another test run, a second `runbook dev`) waits for the
 * first instead of compiling the same thing again on the same cores. Throws
 * TemporalCliBuildError with the end of Go's output when the build fails.
 */
export async function goInstallCached(
  build: GoBuild,
  opts: { go: string; env?: NodeJS.ProcessEnv; logger?: Logger; onProgress?: (line: string) => void },
): Promise<void> {
  const env = opts.env ?? process.env;
  const logger = opts.logger ?? silentLogger;
  const progress = opts.onProgress ?? (() => undefined);
  const { cacheDir } = build;
  const allThere = async () => (await Promise.all(Object.values(build.binaries).map((b) => isExecutableFile(path.join(cacheDir, b))))).every(Boolean);
  if (await allThere()) return;
  const lock = path.join(cacheDir, '.build.lock');
  await mkdir(cacheDir, { recursive: true });
  for (let waitedMs = 0; ; waitedMs += 2000) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number((await readFile(lock, 'utf8').catch(() => '')).trim());
    if (!holder || !pidAlive(holder)) {
      await rm(lock, { force: true });
      continue;
    }
    if (waitedMs % 20_000 === 0) progress(`another process (pid ${holder}) is building the ${build.label} into ${cacheDir}; waiting for it`);
    await sleep(2000);
    if (await allThere()) return;
  }
  try {
    if (await allThere()) return;
    await runGoInstall(build, opts.go, env, logger, progress);
  } finally {
    await rm(lock, { force: true });
  }
}

async function runGoInstall(build: GoBuild, go: string, env: NodeJS.ProcessEnv, logger: Logger, progress: (line: string) => void): Promise<void> {
  const { cacheDir } = build;
  await mkdir(cacheDir, { recursive: true });
  // Built into a private directory and renamed into place, so a concurrent run never sees half a binary.
  const buildDir = await mkdtemp(path.join(cacheDir, '.build-'));
  const started = Date.now();
  const args = ['install', '-v', ...(build.ldflags ? [`-ldflags=${build.ldflags}`] : []), ...build.packages];
  progress(`building ${build.label} with ${go} into ${cacheDir} (several minutes the first time; needs Go ${build.minGo}+)`);
  logger.info({ go, cacheDir, packages: build.packages }, `building ${build.label}`);

  let downloaded = 0;
  let compiled = 0;
  const tail: string[] = [];
  const ticker = setInterval(
    () => progress(`  still building: ${downloaded} modules downloaded, ${compiled} packages compiled, ${formatDuration(Date.now() - started)} elapsed`),
    20_000,
  );
  try {
    const sub = execa(go, args, {
      env: { ...env, GOTOOLCHAIN: 'local', GOBIN: buildDir },
      extendEnv: false,
      stdin: 'ignore',
      all: true,
      buffer: false,
      reject: false,
    });
    for await (const line of sub.iterable({ from: 'all' })) {
      if (line.startsWith('go: downloading ')) downloaded += 1;
      else if (/^[\w.-]+(\/[\w.+~-]+)*$/.test(line)) compiled += 1;
      tail.push(line);
      if (tail.length > 25) tail.shift();
    }
    const result = await sub;
    const missing = [];
    for (const built of Object.keys(build.binaries)) if (!(await isExecutableFile(path.join(buildDir, built)))) missing.push(built);
    if (result.exitCode !== 0 || missing.length > 0) {
      throw new TemporalCliBuildError(
        `go install ${build.packages.join(' ')} failed (exit ${result.exitCode ?? result.signal}); Go ${build.minGo}+ and access to the Go module proxy are needed. Last output:`,
        tail.join('\n'),
      );
    }
    for (const [built, name] of Object.entries(build.binaries)) await rename(path.join(buildDir, built), path.join(cacheDir, name));
    const took = formatDuration(Date.now() - started);
    const names = Object.values(build.binaries).map((b) => path.join(cacheDir, b));
    progress(`built ${names.join(' and ')} in ${took} (${downloaded} modules downloaded, ${compiled} packages compiled)`);
    logger.info({ paths: names, tookMs: Date.now() - started }, `built ${build.label}`);
  } finally {
    clearInterval(ticker);
    await rm(buildDir, { recursive: true, force: true });
  }
}
