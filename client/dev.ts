import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { createKeyFile, payloadEncryptionFromEnv } from '../lib/codec/index.js';
import { startCodecServer, type CodecServer } from '../lib/codec/server.js';
import { EXAMPLE_CONFIG_FILE, loadConfig, resolveConfigPath } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { startDevServer } from '../lib/temporal/dev-server.js';
import { DEFAULT_TEMPORAL_ADDRESS, temporalSettingsFromEnv } from '../lib/temporal/connection.js';
import { PROCEDURES } from '../common/procedures.js';
import { demoServiceAction, DEMO_SERVICES } from '../demo/env.js';
import { createRunbookWorker, installRuntime } from '../worker/main.js';
import { applySchedules, schedulesUiUrl } from './database/schedules.js';
import { defaultIdentity, startRun } from './operations.js';

export interface DevOptions {
  stateDir: string;
  port: number;
  uiPort: number;
  metricsBind: string;
  demo: boolean;
  /** The codec server the UI decodes payloads with; 0 = a free port. */
  codecPort: number;
  /** The config the worker serves; default as the CLI resolves it ($RUNBOOK_CONFIG, runbooks.yaml, the example). */
  configPath?: string;
}

/**
 * The configured key, else `<stateDir>/codec-keys.json`, generated (mode 0600) the first time.
 * Set in process.env, so the worker, the demo run and every child process use the same key.
 */
async function ensureDevKey(stateDir: string): Promise<string | undefined> {
  if (process.env.RUNBOOK_CODEC_KEY?.trim() || process.env.RUNBOOK_CODEC_KEY_FILE?.trim()) return undefined;
  const file = path.join(stateDir, 'codec-keys.json');
  if (await createKeyFile(file)) console.error(`generated a payload encryption key in ${file} (mode 0600): keep it, runs encrypted with it cannot be read without it`);
  process.env.RUNBOOK_CODEC_KEY_FILE = file;
  return file;
}

/**
 * `runbook dev` / `npm start`: a real Temporal dev server (SQLite under the state dir,
 * UI on 8233), a worker in this process, and a `stack-start` run that brings up the
 * demo environment so the first thing a user sees in the UI is a runbook at work; the
 * demo's schedules (backup, vacuum, restore drill) are applied beside it.
 * Ctrl-C stops the worker, the demo services and the server.
 */
export async function runDev(opts: DevOptions): Promise<void> {
  const logger = createLogger({ component: 'dev' });
  const stateDir = path.resolve(opts.stateDir);
  // One state dir for everything this starts: the demo's service commands (runbooks.example.yaml
  // passes no --state-dir) and the key file read their directory from here.
  process.env.RUNBOOK_STATE_DIR = stateDir;
  const loaded = await loadConfig(opts.configPath ? path.resolve(opts.configPath) : resolveConfigPath());
  const usesDemo = path.basename(loaded.path) === EXAMPLE_CONFIG_FILE;

  const devKeyFile = await ensureDevKey(stateDir);
  const encryption = payloadEncryptionFromEnv();
  // The runtime first: the server launcher's last-resort SDK download would otherwise create a default one.
  installRuntime({ logger, metricsBind: opts.metricsBind });
  // The UI (in the browser) sends payloads here to be decoded; the server itself only ever sees ciphertext.
  const codec: CodecServer = await startCodecServer({
    codec: encryption.codec,
    port: opts.codecPort,
    corsOrigins: [`http://localhost:${opts.uiPort}`, `http://127.0.0.1:${opts.uiPort}`],
    logger,
  });
  // The worker keeps the process alive; should start-up fail after this, the codec server must not.
  codec.unref();
  console.error(`starting Temporal dev server (state in ${stateDir}) ...`);
  const server = await startDevServer({ stateDir, port: opts.port, uiPort: opts.uiPort, ui: true, logger, codecEndpoint: codec.url }).catch(async (err: unknown) => {
    await codec.close();
    throw err;
  });
  const settings = { ...temporalSettingsFromEnv(), address: server.address, namespace: server.namespace };

  const nativeConnection = await NativeConnection.connect({ address: server.address });
  const { worker } = await createRunbookWorker({ loaded, settings, connection: nativeConnection, logger });
  const running = worker.run();

  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    if (shuttingDown) {
      // A second Ctrl-C must not leave the demo services running: stopping them is under way.
      console.error(`${signal}: still stopping the demo services and Temporal ...`);
      return;
    }
    shuttingDown = true;
    console.error(`\n${signal}: stopping worker, demo services and Temporal ...`);
    try {
      worker.shutdown();
    } catch {
      // Not running any more (it failed): the services below must be stopped all the same.
    }
    await running.catch(() => undefined);
    if (usesDemo) {
      for (const svc of [...DEMO_SERVICES].reverse()) {
        const r = await demoServiceAction('stop', svc, { stateDir });
        console.error(`  ${r.output}`);
      }
    }
    await nativeConnection!.close();
    await server.stop();
    await codec.close();
    console.error('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  console.error(
    [
      '',
      `Temporal UI:      ${server.uiUrl}`,
      `Temporal address: ${server.address} (namespace ${server.namespace}, task queue ${settings.taskQueue})`,
      `Worker metrics:   http://${opts.metricsBind}/metrics`,
      `Config:           ${loaded.path}`,
      `Payload codec:    ${codec.url} (the UI's codec endpoint); ${encryption.description}`,
      // The CLI finds ./.runbook and 127.0.0.1:7233 by itself; another state dir or port must be named.
      ...(devKeyFile && stateDir !== path.resolve('.runbook') ? [`In other terminals: export RUNBOOK_STATE_DIR=${stateDir}   (the CLI then uses this key)`] : []),
      ...(server.address !== DEFAULT_TEMPORAL_ADDRESS ? [`In other terminals: export TEMPORAL_ADDRESS=${server.address}`] : []),
      // `runbook run` checks names against the config it finds: it must find this one.
      ...(loaded.path !== resolveConfigPath() ? [`In other terminals: export RUNBOOK_CONFIG=${loaded.path}`] : []),
      '',
    ].join('\n'),
  );

  if (opts.demo && usesDemo) {
    const connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection, namespace: server.namespace, dataConverter: encryption.dataConverter });
    const handle = await startRun({
      client,
      taskQueue: settings.taskQueue,
      procedure: PROCEDURES.stackStart,
      input: {},
      requestedBy: defaultIdentity(),
      environment: loaded.config.environment,
    });
    console.error(`bringing up the demo environment: ${PROCEDURES.stackStart} ${handle.workflowId}`);
    console.error(`  watch it:  ${server.uiUrl}/namespaces/${server.namespace}/workflows/${handle.workflowId}`);
    // As `runbook schedules apply` does: a second start with the same state dir changes nothing.
    try {
      const changes = await applySchedules(client, loaded.config, settings.taskQueue);
      if (changes.length > 0) {
        const ids = loaded.config.databaseOps?.schedules.map((s) => s.id).join(', ');
        console.error(`demo schedules (databaseOps.schedules: ${ids}): ${changes.map((c) => `${c.change} ${c.scheduleId}`).join(', ')}`);
        console.error(`  see them:  ${schedulesUiUrl(server.uiUrl ?? `http://localhost:${opts.uiPort}`, server.namespace)}   (or: npx runbook schedules list; run one now: npx runbook schedules trigger <id>)`);
      }
    } catch (err) {
      console.error(`applying the demo schedules failed: ${(err as Error).message} (try: npx runbook schedules apply)`);
    }
    handle
      .result()
      .then(() => {
        console.error('demo environment is up. Try:');
        console.error('  npx runbook run health-check --wait');
        console.error(`  npx runbook run stack-stop --input '{"clean":true}'   # then: npx runbook approve <id> --as bob --confirm DELETE`);
      })
      .catch((err: Error) => console.error(`stack-start failed: ${err.message} (see the UI for the step that failed)`))
      .finally(() => void connection.close());
  }
  console.error('press Ctrl-C to stop');
  await running;
}
