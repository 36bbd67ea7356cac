import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection, type TLSConfig } from '@temporalio/client';
import { execa } from 'execa';
import { assertPortFree, freePort } from '../local/ports.js';
import { silentLogger, type Logger } from '../logger.js';
import { findTemporalCli, TEMPORAL_CLI_FIXES, temporalCliCacheDir, TemporalCliBuildError } from './install.js';
import { searchAttributeArgs, searchAttributeKeys } from './search-attributes.js';
import { devServerSettingArgs } from './server-settings.js';

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
  /** Port of the server's Prometheus `/metrics`; 0 = a free port; default: one the CLI picks and does not report. */
  metricsPort?: number;
}

export interface DevServer {
  /** host:port of the frontend, what TEMPORAL_ADDRESS takes. */
  address: string;
  namespace: string;
  uiUrl?: string;
  /** The server's Prometheus endpoint, when `metricsPort` was given. */
  metricsUrl?: string;
  pid?: number;
  /** Time from spawn to the namespace answering. */
  readyMs: number;
  stop(): Promise<void>;
}


export function hostPort(ip: string, port: number): string {
  // A wildcard bind is reachable on loopback; IPv6 literals need brackets in an address.
  const host = ip === '0.0.0.0' ? '127.0.0.1' : ip === '::' ? '::1' : ip;
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The last `max` lines of a server's output (and all of it to `file`), for error messages. */
export class OutputTail {
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

/** What one start-up attempt runs with: options resolved, ports chosen. */
export interface DevServerLaunch {
  ip: string;
  port: number;
  ui: boolean;
  uiPort?: number;
  metricsPort?: number;
  namespace: string;
  dbFile?: string;
  codecEndpoint?: string;
  logLevel: string;
}

/** The `temporal server start-dev` command line, without the executable. */
export function devServerArgs(r: DevServerLaunch): string[] {
  return [
    'server',
    'start-dev',
    '--ip',
    r.ip,
    '--port',
    String(r.port),
    ...(r.uiPort !== undefined ? ['--ui-port', String(r.uiPort)] : ['--headless']),
    ...(r.metricsPort !== undefined ? ['--metrics-port', String(r.metricsPort)] : []),
    ...(r.dbFile ? ['--db-filename', r.dbFile] : []),
    ...(r.namespace !== 'default' ? ['--namespace', r.namespace] : []),
    ...(r.codecEndpoint ? ['--ui-codec-endpoint', r.codecEndpoint] : []),
    ...searchAttributeArgs(),
    ...devServerSettingArgs({ dbFile: r.dbFile }),
    '--log-level',
    r.logLevel,
    '--color',
    'never',
  ];
}

/**
 * Starts `temporal server start-dev` with the runbooks' search attributes registered and
 * resolves once the namespace answers. The server is our child: stop() ends it, and so
 * does this process exiting. Without a CLI (and no Go to build one) it falls back to the
 * SDK's TestWorkflowEnvironment.createLocal, which downloads the CLI where internet allows.
 */
export async function startDevServer(opts: DevServerOptions = {}): Promise<DevServer> {
  const logger = opts.logger ?? silentLogger;
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

  const autoPorts = opts.port === 0 || opts.uiPort === 0 || opts.metricsPort === 0;
  const attempts = cli && autoPorts ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const resolved: DevServerLaunch = {
      ...base,
      port: opts.port === 0 ? await freePort(ip) : (opts.port ?? 7233),
      uiPort: ui ? (opts.uiPort === 0 ? await freePort(ip) : (opts.uiPort ?? 8233)) : undefined,
      metricsPort: opts.metricsPort === 0 ? await freePort(ip) : opts.metricsPort,
    };
    if (resolved.uiPort === resolved.port) resolved.uiPort = await freePort(ip);
    while (resolved.metricsPort !== undefined && opts.metricsPort === 0 && [resolved.port, resolved.uiPort].includes(resolved.metricsPort)) {
      resolved.metricsPort = await freePort(ip);
    }
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

async function spawnDevServer(cli: string, r: DevServerLaunch, opts: DevServerOptions, logger: Logger): Promise<DevServer> {
  await assertPortFree(r.ip, r.port, 'Temporal frontend', 'another Temporal server? stop it or choose another port');
  if (r.uiPort !== undefined) await assertPortFree(r.ip, r.uiPort, 'Temporal UI', 'another Temporal server? stop it or choose another port');

  const args = devServerArgs(r);
  // The CLI reads TEMPORAL_* client settings (address, TLS, API key); none of them concern the server it starts.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_')));
  if (opts.logFile) await mkdir(path.dirname(path.resolve(opts.logFile)), { recursive: true });
  const output = new OutputTail(200, opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined);

  const address = hostPort(r.ip, r.port);
  const uiUrl = r.uiPort !== undefined ? `http://${hostPort(r.ip, r.uiPort)}` : undefined;
  const metricsUrl = r.metricsPort !== undefined ? `http://${hostPort(r.ip, r.metricsPort)}/metrics` : undefined;
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
  return { address, namespace: r.namespace, uiUrl, metricsUrl, pid: child.pid, readyMs, stop };
}

/** Resolves once `namespace` answers at `address` (and the UI, if given); throws when the server exits or the time is up. */
export async function waitUntilReady(o: {
  address: string;
  namespace: string;
  uiUrl?: string;
  timeoutMs: number;
  tls?: TLSConfig;
  exited: () => { code?: number; signal?: string; failure?: string } | undefined;
}): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  // No retry interceptor and short reconnect backoff: the loop below is the retry.
  const connection = Connection.lazy({
    address: o.address,
    interceptors: [],
    ...(o.tls ? { tls: o.tls } : {}),
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

async function startWithSdk(r: DevServerLaunch, logger: Logger, whyNoCli: string): Promise<DevServer> {
  const cacheDir = temporalCliCacheDir();
  logger.warn({ cacheDir }, 'no Temporal CLI found: falling back to the SDK test environment (downloads the CLI)');
  const started = Date.now();
  try {
    // A dev dependency: `npm ci --omit=dev` (the Docker image) leaves it out.
    const { TestWorkflowEnvironment } = await import('@temporalio/testing').catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'ERR_MODULE_NOT_FOUND' ? new Error('@temporalio/testing, a dev dependency, is not installed') : err;
    });
    const env = await TestWorkflowEnvironment.createLocal({
      server: {
        ip: r.ip,
        port: r.port,
        ui: r.ui,
        uiPort: r.uiPort,
        dbFilename: r.dbFile,
        namespace: r.namespace,
        searchAttributes: searchAttributeKeys(),
        log: { format: 'pretty', level: r.logLevel },
        extraArgs: [
          ...(r.codecEndpoint ? ['--ui-codec-endpoint', r.codecEndpoint] : []),
          ...(r.metricsPort !== undefined ? ['--metrics-port', String(r.metricsPort)] : []),
          ...devServerSettingArgs({ dbFile: r.dbFile }),
        ],
      },
    });
    const address = env.address;
    return {
      address,
      namespace: r.namespace,
      uiUrl: r.uiPort !== undefined ? `http://${hostPort(r.ip, r.uiPort)}` : undefined,
      metricsUrl: r.metricsPort !== undefined ? `http://${hostPort(r.ip, r.metricsPort)}/metrics` : undefined,
      readyMs: Date.now() - started,
      stop: () => env.teardown(),
    };
  } catch (err) {
    throw new Error(
      [
        `Cannot start a Temporal dev server: no \`temporal\` CLI in TEMPORAL_CLI_PATH, on PATH or in ${cacheDir}; ${whyNoCli}; ` +
          `and the SDK could not download one (${err instanceof Error ? err.message : String(err)}).`,
        'Fix one of:',
        ...TEMPORAL_CLI_FIXES.map((fix) => `  - ${fix}`),
      ].join('\n'),
      { cause: err },
    );
  }
}
