import { constants, createWriteStream, type WriteStream } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { Connection, isGrpcServiceError } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
// Not re-exported from the package index; the SDK exports it for registering search attributes.
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import { execa } from 'execa';
import { pino } from 'pino';
import { SEARCH_ATTRIBUTES } from '../common/search-attributes.js';
import type { Logger } from './logger.js';

/** The Temporal CLI whose `server start-dev` we run (Temporal Server 1.29.1, UI 2.42.1). */
export const TEMPORAL_CLI_VERSION = 'v1.5.1';
const CLI_PACKAGE = 'github.com/temporalio/cli/cmd/temporal';
/** go.mod of the CLI at TEMPORAL_CLI_VERSION says `go 1.25.0`; GOTOOLCHAIN=local forbids fetching a newer one. */
const MIN_GO = '1.25';

const silent: Logger = pino({ enabled: false });

type CliType = (typeof SEARCH_ATTRIBUTES)[number]['type'];
const SDK_TYPE: Record<CliType, SearchAttributeType> = {
  Keyword: SearchAttributeType.KEYWORD,
  Bool: SearchAttributeType.BOOL,
  Double: SearchAttributeType.DOUBLE,
};

// ---------------------------------------------------------------------------------------------
// Finding or building the CLI
// ---------------------------------------------------------------------------------------------

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
  const root = env.RUNBOOK_CACHE_DIR || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'durable-runbooks');
  return path.resolve(root, `temporal-${TEMPORAL_CLI_VERSION}`);
}

async function isExecutableFile(file: string): Promise<boolean> {
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
async function findGo(env: NodeJS.ProcessEnv): Promise<string | undefined> {
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

function formatDuration(ms: number): string {
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
  const logger = opts.logger ?? silent;
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
  const progress = opts.onProgress ?? (() => undefined);
  // One build at a time per cache: a second process (another test run, a second `runbook dev`)
  // waits for the first instead of compiling the same thing again on the same cores.
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
    if (!holder || !processAlive(holder)) {
      await rm(lock, { force: true });
      continue;
    }
    if (waitedMs % 20_000 === 0) progress(`another process (pid ${holder}) is building the Temporal CLI into ${cacheDir}; waiting for it`);
    await sleep(2000);
    if (await isExecutableFile(cached)) return cached;
  }
  try {
    if (await isExecutableFile(cached)) return cached;
    await buildTemporalCli(go, cacheDir, env, logger, progress);
  } finally {
    await rm(lock, { force: true });
  }
  return cached;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function buildTemporalCli(
  go: string,
  cacheDir: string,
  env: NodeJS.ProcessEnv,
  logger: Logger,
  progress: (line: string) => void,
): Promise<void> {
  await mkdir(cacheDir, { recursive: true });
  // Built into a private directory and renamed into place, so a concurrent run never sees half a binary.
  const buildDir = await mkdtemp(path.join(cacheDir, '.build-'));
  const started = Date.now();
  const args = [
    'install',
    '-v',
    // Without this the binary reports 0.0.0-DEV; release builds set it the same way.
    `-ldflags=-X github.com/temporalio/cli/temporalcli.Version=${TEMPORAL_CLI_VERSION.slice(1)}`,
    `${CLI_PACKAGE}@${TEMPORAL_CLI_VERSION}`,
  ];
  progress(`building Temporal CLI ${TEMPORAL_CLI_VERSION} with ${go} into ${cacheDir} (several minutes the first time; needs Go ${MIN_GO}+)`);
  logger.info({ go, cacheDir, version: TEMPORAL_CLI_VERSION }, 'building Temporal CLI');

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
    if (result.exitCode !== 0 || !(await isExecutableFile(path.join(buildDir, 'temporal')))) {
      throw new TemporalCliBuildError(
        `go install ${CLI_PACKAGE}@${TEMPORAL_CLI_VERSION} failed (exit ${result.exitCode ?? result.signal}); Go ${MIN_GO}+ and access to the Go module proxy are needed. Last output:`,
        tail.join('\n'),
      );
    }
    await rename(path.join(buildDir, 'temporal'), path.join(cacheDir, 'temporal'));
    const took = formatDuration(Date.now() - started);
    progress(`built ${path.join(cacheDir, 'temporal')} in ${took} (${downloaded} modules downloaded, ${compiled} packages compiled)`);
    logger.info({ path: path.join(cacheDir, 'temporal'), tookMs: Date.now() - started }, 'built Temporal CLI');
  } finally {
    clearInterval(ticker);
    await rm(buildDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The dev server
// ---------------------------------------------------------------------------------------------

export interface DevServerOptions {
  /** The SQLite file goes to `<stateDir>/temporal.db`; undefined = in memory, gone on stop. */
  stateDir?: string;
  /** Default 127.0.0.1. */
  ip?: string;
  /** Frontend gRPC port; default 7233, 0 = a free port. */
  port?: number;
  /** Web UI port; default 8233, 0 = a free port. */
  uiPort?: number;
  /** Default true. */
  ui?: boolean;
  /** Default 'default' (always created); another name is created in addition. */
  namespace?: string;
  /** Remote codec endpoint the Web UI uses to decode payloads. */
  codecEndpoint?: string;
  /** Server output is appended here as well as kept (its tail) for error messages. */
  logFile?: string;
  /** Default 60000. */
  readyTimeoutMs?: number;
  logger?: Logger;
  /** Build the CLI with Go when missing; default true. */
  install?: boolean;
  /** Server log level; default 'warn' (the CLI's own default for start-dev). */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

export interface DevServer {
  /** host:port of the frontend, what TEMPORAL_ADDRESS takes. */
  address: string;
  namespace: string;
  uiUrl?: string;
  pid?: number;
  /** Time from spawn to the namespace answering. */
  readyMs: number;
  stop(): Promise<void>;
}

/** An unused TCP port on `ip`, chosen by the kernel. */
async function freePort(ip: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, ip, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port assigned'))));
    });
  });
}

/** A server already on the port would answer our readiness probe in place of ours: refuse up front. */
async function assertPortFree(ip: string, port: number, what: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `${what} port ${ip}:${port} is already in use (another Temporal server?): stop it or choose another port`
            : `${what} port ${ip}:${port} cannot be used: ${err.message}`,
        ),
      ),
    );
    srv.listen(port, ip, () => srv.close(() => resolve()));
  });
}

function hostPort(ip: string, port: number): string {
  // A wildcard bind is reachable on loopback; IPv6 literals need brackets in an address.
  const host = ip === '0.0.0.0' ? '127.0.0.1' : ip === '::' ? '::1' : ip;
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

class OutputTail {
  private readonly lines: string[] = [];
  private partial = '';
  constructor(
    private readonly max: number,
    private readonly file?: WriteStream,
  ) {}
  push(chunk: Buffer): void {
    this.file?.write(chunk);
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) {
      this.lines.push(line);
      if (this.lines.length > this.max) this.lines.shift();
    }
  }
  text(n = 30): string {
    const all = this.partial ? [...this.lines, this.partial] : this.lines;
    return all.slice(-n).join('\n') || '(no output)';
  }
  async close(): Promise<void> {
    const file = this.file;
    if (file) await new Promise<void>((resolve) => file.end(() => resolve()));
  }
}

interface Resolved {
  ip: string;
  port: number;
  ui: boolean;
  uiPort?: number;
  namespace: string;
  dbFile?: string;
  codecEndpoint?: string;
  logLevel: string;
}

/**
 * Starts `temporal server start-dev` with the runbooks' search attributes registered and
 * resolves once the namespace answers. The server is our child: stop() ends it, and so
 * does this process exiting. Without a CLI (and no Go to build one) it falls back to the
 * SDK's TestWorkflowEnvironment.createLocal, which downloads the CLI where internet allows.
 */
export async function startDevServer(opts: DevServerOptions = {}): Promise<DevServer> {
  const logger = opts.logger ?? silent;
  const ip = opts.ip ?? '127.0.0.1';
  const ui = opts.ui ?? true;
  const stateDir = opts.stateDir ? path.resolve(opts.stateDir) : undefined;
  if (stateDir) await mkdir(stateDir, { recursive: true });
  const base = {
    ip,
    ui,
    namespace: opts.namespace ?? 'default',
    dbFile: stateDir ? path.join(stateDir, 'temporal.db') : undefined,
    codecEndpoint: opts.codecEndpoint,
    logLevel: opts.logLevel ?? 'warn',
  };

  let cli: string | undefined;
  let buildError: Error | undefined;
  try {
    cli = await findTemporalCli({ install: opts.install ?? true, logger, onProgress: (line) => logger.info(line) });
  } catch (err) {
    if (!(err instanceof TemporalCliBuildError)) throw err;
    buildError = err;
    logger.warn({ err }, 'building the Temporal CLI failed');
  }

  const autoPorts = opts.port === 0 || opts.uiPort === 0;
  const attempts = cli && autoPorts ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const resolved: Resolved = {
      ...base,
      port: opts.port === 0 ? await freePort(ip) : (opts.port ?? 7233),
      uiPort: ui ? (opts.uiPort === 0 ? await freePort(ip) : (opts.uiPort ?? 8233)) : undefined,
    };
    if (resolved.uiPort === resolved.port) resolved.uiPort = await freePort(ip);
    if (!cli) {
      const why = buildError
        ? `building it with Go failed (${buildError.message.split('\n')[0]})`
        : (opts.install ?? true)
          ? 'Go is not installed to build it'
          : 'building it was not requested (install: false)';
      return startWithSdk(resolved, logger, why);
    }
    try {
      return await spawnDevServer(cli, resolved, opts, logger);
    } catch (err) {
      // Another process may take a port between our probe and the server's bind.
      if (!(err instanceof EarlyExitError) || attempt >= attempts) throw err;
      logger.warn({ err: err.message, attempt }, 'Temporal dev server exited during start-up; retrying on other ports');
    }
  }
}

class EarlyExitError extends Error {}

async function spawnDevServer(cli: string, r: Resolved, opts: DevServerOptions, logger: Logger): Promise<DevServer> {
  await assertPortFree(r.ip, r.port, 'Temporal frontend');
  if (r.uiPort !== undefined) await assertPortFree(r.ip, r.uiPort, 'Temporal UI');

  const args = [
    'server',
    'start-dev',
    '--ip',
    r.ip,
    '--port',
    String(r.port),
    ...(r.uiPort !== undefined ? ['--ui-port', String(r.uiPort)] : ['--headless']),
    ...(r.dbFile ? ['--db-filename', r.dbFile] : []),
    ...(r.namespace !== 'default' ? ['--namespace', r.namespace] : []),
    ...(r.codecEndpoint ? ['--ui-codec-endpoint', r.codecEndpoint] : []),
    ...SEARCH_ATTRIBUTES.flatMap((a) => ['--search-attribute', `${a.name}=${a.type}`]),
    // Hands an activity straight back to the worker that scheduled it: halves the per-step latency
    // of sequential runbook steps on the dev server (measured ~100 ms -> ~48 ms, bench/run.ts).
    '--dynamic-config-value',
    'system.enableActivityEagerExecution=true',
    '--log-level',
    r.logLevel,
    '--color',
    'never',
  ];
  // The CLI reads TEMPORAL_* client settings (address, TLS, API key); none of them concern the server it starts.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_')));
  if (opts.logFile) await mkdir(path.dirname(path.resolve(opts.logFile)), { recursive: true });
  const output = new OutputTail(200, opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined);

  const address = hostPort(r.ip, r.port);
  const uiUrl = r.uiPort !== undefined ? `http://${hostPort(r.ip, r.uiPort)}` : undefined;
  logger.info({ cli, address, uiUrl, db: r.dbFile ?? 'in-memory', namespace: r.namespace }, 'starting Temporal dev server');
  const started = Date.now();
  const child = execa(cli, args, {
    env,
    extendEnv: false,
    stdin: 'ignore',
    buffer: false,
    reject: false,
    // Kills the server when this process exits or dies of a signal (not SIGKILL: nothing can).
    cleanup: true,
    forceKillAfterDelay: 10_000,
  });
  child.stdout?.on('data', (c: Buffer) => output.push(c));
  child.stderr?.on('data', (c: Buffer) => output.push(c));
  let exit: { code?: number; signal?: string; failure?: string } | undefined;
  const finished = child.then((res) => {
    exit = { code: res.exitCode, signal: res.signal, failure: res.failed && res.exitCode === undefined ? res.shortMessage : undefined };
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (!exit) child.kill('SIGTERM');
      await finished;
      await output.close();
      logger.info({ address }, 'Temporal dev server stopped');
    })());

  try {
    await waitUntilReady({ address, namespace: r.namespace, uiUrl, timeoutMs: opts.readyTimeoutMs ?? 60_000, exited: () => exit });
  } catch (err) {
    const exitedByItself = exit !== undefined;
    await stop();
    const why = err instanceof Error ? err.message : String(err);
    const message = `Temporal dev server (${cli}) at ${address} ${why}. Server output:\n${output.text()}`;
    throw exitedByItself ? new EarlyExitError(message) : new Error(message);
  }
  const readyMs = Date.now() - started;
  logger.info({ address, uiUrl, namespace: r.namespace, readyMs, pid: child.pid }, 'Temporal dev server ready');
  return { address, namespace: r.namespace, uiUrl, pid: child.pid, readyMs, stop };
}

async function waitUntilReady(o: {
  address: string;
  namespace: string;
  uiUrl?: string;
  timeoutMs: number;
  exited: () => { code?: number; signal?: string; failure?: string } | undefined;
}): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  // No retry interceptor and short reconnect backoff: the loop below is the retry.
  const connection = Connection.lazy({
    address: o.address,
    interceptors: [],
    channelArgs: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 500 },
  });
  let last = 'no answer yet';
  try {
    for (;;) {
      const exit = o.exited();
      if (exit) {
        throw new Error(exit.failure ? `could not be started: ${exit.failure}` : `exited (code ${exit.code ?? '-'}, signal ${exit.signal ?? '-'}) before it was ready`);
      }
      if (Date.now() >= deadline) throw new Error(`was not ready after ${o.timeoutMs} ms (last probe: ${last})`);
      try {
        await connection.withDeadline(Math.min(deadline, Date.now() + 2_000), () =>
          connection.workflowService.describeNamespace({ namespace: o.namespace }),
        );
        if (o.uiUrl) {
          const res = await fetch(o.uiUrl, { signal: AbortSignal.timeout(2_000) });
          if (res.status >= 500) throw new Error(`UI answered HTTP ${res.status}`);
        }
        return;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      await sleep(100);
    }
  } finally {
    await connection.close();
  }
}

async function startWithSdk(r: Resolved, logger: Logger, whyNoCli: string): Promise<DevServer> {
  const cacheDir = temporalCliCacheDir();
  logger.warn({ cacheDir }, 'no Temporal CLI found: falling back to the SDK test environment (downloads the CLI)');
  const started = Date.now();
  try {
    const { TestWorkflowEnvironment } = await import('@temporalio/testing');
    const env = await TestWorkflowEnvironment.createLocal({
      server: {
        ip: r.ip,
        port: r.port,
        ui: r.ui,
        uiPort: r.uiPort,
        dbFilename: r.dbFile,
        namespace: r.namespace,
        searchAttributes: SEARCH_ATTRIBUTES.map((a) => defineSearchAttributeKey(a.name, SDK_TYPE[a.type])),
        log: { format: 'pretty', level: r.logLevel },
        extraArgs: r.codecEndpoint ? ['--ui-codec-endpoint', r.codecEndpoint] : [],
      },
    });
    const address = env.address;
    return {
      address,
      namespace: r.namespace,
      uiUrl: r.uiPort !== undefined ? `http://${hostPort(r.ip, r.uiPort)}` : undefined,
      readyMs: Date.now() - started,
      stop: () => env.teardown(),
    };
  } catch (err) {
    throw new Error(
      [
        `Cannot start a Temporal dev server: no \`temporal\` CLI in TEMPORAL_CLI_PATH, on PATH or in ${cacheDir}; ${whyNoCli}; ` +
          `and the SDK could not download one (${err instanceof Error ? err.message : String(err)}).`,
        'Fix one of:',
        `  - install Go ${MIN_GO}+ (https://go.dev/dl/) and run \`npx tsx scripts/temporal-install.ts\` (builds ${TEMPORAL_CLI_VERSION} into the cache)`,
        '  - download the Temporal CLI (https://github.com/temporalio/cli/releases) and set TEMPORAL_CLI_PATH=/path/to/temporal',
      ].join('\n'),
      { cause: err },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Search attributes on any cluster
// ---------------------------------------------------------------------------------------------

/**
 * Registers the runbooks' search attributes in `namespace` if missing (idempotent).
 * For clusters not started by us; the dev server gets them on its command line.
 * Returns the names it added. An attribute registered with another type is an error.
 */
export async function ensureSearchAttributes(connection: Pick<Connection, 'operatorService'>, namespace: string): Promise<string[]> {
  const wanted = SEARCH_ATTRIBUTES.map((a) => {
    const indexed = encodeSearchAttributeIndexedValueType(SDK_TYPE[a.type]);
    if (indexed === undefined) throw new Error(`search attribute ${a.name}: unknown type ${a.type}`);
    return { ...a, indexed };
  });
  const check = async () => {
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
    const missing: typeof wanted = [];
    for (const w of wanted) {
      const have = customAttributes?.[w.name];
      if (have === undefined || have === null) missing.push(w);
      else if (have !== w.indexed) {
        throw new Error(`search attribute ${w.name} already exists in namespace ${namespace} with another type (indexed type ${have}); runbooks need ${w.type}`);
      }
    }
    return missing;
  };

  const missing = await check();
  if (missing.length === 0) return [];
  try {
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((m) => [m.name, m.indexed])),
    });
  } catch (err) {
    // Someone else registered them in the meantime: fine if the types match.
    if (!(isGrpcServiceError(err) && err.code === GrpcStatus.ALREADY_EXISTS)) {
      const detail = err instanceof Error ? err.message : String(err);
      throw new Error(
        `cannot add search attributes ${missing.map((m) => `${m.name} (${m.type})`).join(', ')} to namespace ${namespace}: ${detail}` +
          ' (on Temporal Cloud add them in the namespace settings or with tcld)',
        { cause: err },
      );
    }
  }
  const still = await check();
  if (still.length > 0) throw new Error(`search attributes ${still.map((m) => m.name).join(', ')} are still missing in namespace ${namespace}`);
  return missing.map((m) => m.name);
}
