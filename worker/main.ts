import { fileURLToPath } from 'node:url';
import type { LogLevel, LogMetadata, Logger as SdkLogger } from '@temporalio/common';
import { bundleWorkflowCode, NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import { payloadEncryptionFromEnv, WORKER_PAYLOAD_CONVERTER_PATH, workerDataConverter, type PayloadEncryption } from '../lib/codec/index.js';
import { loadConfig, type LoadedConfig } from '../lib/config.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { connectWorker, temporalSettingsFromEnv, type TemporalSettings } from '../lib/temporal/connection.js';
import { cachedWorkflowBundle } from './bundle-cache.js';

// Next to this module: dist/workflows/index.js when compiled, the TypeScript sources under vitest.
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
export const WORKFLOWS_PATH = fileURLToPath(new URL(`../workflows/index${EXT}`, import.meta.url));
/** Summaries of activities and child runs for the UI's Event History: in every bundle, built here or by the worker. */
export const WORKFLOW_INTERCEPTOR_MODULES = [fileURLToPath(new URL(`../workflows/shared/interceptors${EXT}`, import.meta.url))];
/**
 * Evaluated once when the worker loads its bundle, then shared by every run, instead of once per
 * run: about 57 modules, ~7 ms of the worker's CPU and ~144 KB of its heap for each run it keeps
 * in memory (docs/benchmarks.md). Safe because no workflow module keeps a run's state at module
 * level (a run's own state lives in its globals, workflows/shared/run-local.ts); the SDK freezes
 * what these modules export, so a module that wrote to its exports would fail its tests.
 */
export const WORKFLOW_PRELOAD_MODULES = [WORKFLOWS_PATH, ...WORKFLOW_INTERCEPTOR_MODULES];

/** Forwards the SDK's logs (workflow `log`, activity context logs, worker internals) to pino as JSON. */
export class PinoSdkLogger implements SdkLogger {
  constructor(private readonly pino: Logger) {}
  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    const method = ({ TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' } as const)[level];
    this.pino[method](meta ?? {}, message);
  }
  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}

/**
 * Process-wide SDK runtime: JSON logs and a Prometheus endpoint carrying the SDK's
 * metrics and the runbooks' own (runbook_runs_total, runbook_run_duration, ...).
 * Call once, before any connection is made.
 */
export function installRuntime(opts: { logger: Logger; metricsBind?: string }): void {
  Runtime.install({
    logger: new PinoSdkLogger(opts.logger),
    shutdownSignals: [],
    telemetryOptions: opts.metricsBind ? { metrics: { prometheus: { bindAddress: opts.metricsBind } } } : undefined,
  });
}

/**
 * The workflow bundle for workers given `workflowBundle` (tests, benchmarks): built with the
 * failure converter of `encryption`, so failures raised in workflow code are encrypted too.
 */
export function bundleRunbookWorkflows(
  /** `shareModules: false` evaluates the modules per run, as before preloadModules: benchmarks compare the two. */
  opts: { encryption?: PayloadEncryption; logger?: SdkLogger; shareModules?: boolean } = {},
): ReturnType<typeof bundleWorkflowCode> {
  const encryption = opts.encryption ?? payloadEncryptionFromEnv();
  return bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    workflowInterceptorModules: WORKFLOW_INTERCEPTOR_MODULES,
    ...(opts.shareModules === false ? {} : { preloadModules: WORKFLOW_PRELOAD_MODULES }),
    ...(encryption.dataConverter.failureConverterPath ? { failureConverterPath: encryption.dataConverter.failureConverterPath } : {}),
    payloadConverterPath: WORKER_PAYLOAD_CONVERTER_PATH,
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
}

export interface RunbookWorkerOptions {
  loaded: LoadedConfig;
  settings: TemporalSettings;
  connection?: NativeConnection;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** Tests pass a prebuilt bundle to skip re-bundling per worker. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  identity?: string;
  /** Default: from RUNBOOK_CODEC_KEY / RUNBOOK_CODEC_KEY_FILE in process.env (not `env`, which is the activities'). */
  encryption?: PayloadEncryption;
  /** Runs kept in memory between their tasks (the SDK's default follows the heap size); see maxCachedWorkflowsFromEnv. */
  maxCachedWorkflows?: number;
}

/**
 * RUNBOOK_MAX_CACHED_WORKFLOWS: how many runs a worker keeps in memory between their workflow
 * tasks. Fewer bounds the worker's memory (about 0.25 MB a run); a run not in the cache is
 * replayed from its history at its next task, which costs CPU. Unset: the SDK's default.
 */
export function maxCachedWorkflowsFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.RUNBOOK_MAX_CACHED_WORKFLOWS?.trim();
  if (!raw) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 1_000_000) {
    throw new Error(`RUNBOOK_MAX_CACHED_WORKFLOWS must be a whole number from 0 to 1000000 (runs kept in memory), got ${JSON.stringify(raw.slice(0, 40))}`);
  }
  return n;
}

export async function createRunbookWorker(opts: RunbookWorkerOptions): Promise<{ worker: Worker; connection: NativeConnection; ownsConnection: boolean }> {
  const encryption = opts.encryption ?? payloadEncryptionFromEnv();
  if (encryption.keyring) {
    opts.logger.info({ keyId: encryption.keyring.currentId, keyIds: encryption.keyring.ids, keySource: encryption.keyring.source }, encryption.description);
  } else {
    opts.logger.warn(encryption.description);
  }
  const connection = opts.connection ?? (await connectWorker(opts.settings));
  const workflowBundle = opts.workflowBundle ?? (await cachedWorkflowBundle(encryption, opts.logger));
  const activities = createActivities({
    config: opts.loaded.config,
    configDir: opts.loaded.dir,
    env: opts.env ?? process.env,
    logger: opts.logger,
  });
  const worker = await Worker.create({
    connection,
    namespace: opts.settings.namespace,
    taskQueue: opts.settings.taskQueue,
    activities,
    // With a workflowsPath the bundler also takes the failure converter from here.
    dataConverter: workerDataConverter(encryption),
    // A prebuilt bundle carries its interceptors (bundleRunbookWorkflows); the worker warns if given them again.
    ...(workflowBundle ? { workflowBundle } : { workflowsPath: WORKFLOWS_PATH, interceptors: { workflowModules: WORKFLOW_INTERCEPTOR_MODULES }, bundlerOptions: { preloadModules: WORKFLOW_PRELOAD_MODULES } }),
    ...(opts.identity ? { identity: opts.identity } : {}),
    ...(opts.maxCachedWorkflows !== undefined ? { maxCachedWorkflows: opts.maxCachedWorkflows } : {}),
    // Let a running activity finish its current command before the worker exits on SIGTERM.
    shutdownGraceTime: '20 seconds',
    // A worker killed without shutdown leaves its cached runs on its sticky queue; move them
    // to another worker after 2 s instead of the default 10 s, so timers fire on time.
    stickyQueueScheduleToStartTimeout: '2 seconds',
  });
  return { worker, connection, ownsConnection: !opts.connection };
}

/** `runbook worker`: validate config, connect, serve until SIGTERM/SIGINT, then drain. */
export async function runWorker(opts: { configPath?: string; metricsBind?: string; logger?: Logger } = {}): Promise<void> {
  const logger = opts.logger ?? createLogger({ component: 'worker' });
  const loaded = await loadConfig(opts.configPath);
  const settings = temporalSettingsFromEnv();
  const maxCachedWorkflows = maxCachedWorkflowsFromEnv();
  installRuntime({ logger, metricsBind: opts.metricsBind });
  const { worker, connection } = await createRunbookWorker({ loaded, settings, logger, maxCachedWorkflows });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing in-flight tasks');
    worker.shutdown();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  logger.info(
    { address: settings.address, namespace: settings.namespace, taskQueue: settings.taskQueue, config: loaded.path, metrics: opts.metricsBind },
    'worker started',
  );
  try {
    await worker.run();
  } finally {
    await connection.close();
    logger.info('worker stopped');
  }
}
