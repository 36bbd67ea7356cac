import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { payloadEncryptionFromEnv } from '../lib/codec/index.js';
import { startCodecServer } from '../lib/codec/server.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { startDevServer } from '../lib/temporal/dev-server.js';
import { startTemporalCluster } from '../lib/temporal/cluster.js';
import { findTemporalCli } from '../lib/temporal/install.js';
import { findVersitygw } from '../lib/local/versitygw.js';
import { buildContainerImages, containerEngineMissing } from './fixtures/containers.js';
import { useTestCodecKeys } from './fixtures/test-codec.js';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalNamespace: string;
    temporalUiUrl: string;
    /** The codec server the test UI uses (test key): it encodes what the UI sends, decodes what it shows. */
    codecEndpoint: string;
    /** Where the first test file leaves the workflow bundle for the others (tests/fixtures/runbook-worker.ts). */
    workflowBundleDir: string;
  }
}

/**
 * One Temporal dev server for the whole run: in memory, free ports, UI on (browser
 * tests use it). Its output goes to tests/artifacts/temporal-dev-server.log for CI.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const logger = createLogger({ component: 'test-temporal' }, process.env.TEST_LOG_LEVEL ?? 'warn');
  // Found or built up front so a first-time build shows its progress instead of a silent wait.
  await findTemporalCli({ install: true, logger, onProgress: (line) => process.stderr.write(`${line}\n`) });
  // The S3-compatible server of the object-storage tests, built the same way (cached after the first time).
  await findVersitygw({ install: true, onProgress: (line) => process.stderr.write(`${line}\n`) });
  // The real-container tests' images (tests/fixtures/containers.ts), where Podman is there: built
  // once per change of what they are built from, found in Podman's store afterwards.
  if (!containerEngineMissing()) await buildContainerImages({ onProgress: (line) => process.stderr.write(`${line}\n`) });
  useTestCodecKeys();
  // Where the first test file leaves the workflow bundle for the others; removed with the servers, or at once if they fail to start.
  const bundleDir = await mkdtemp(path.join(tmpdir(), 'runbook-test-bundle-'));
  project.provide('workflowBundleDir', bundleDir);
  const removeBundles = () => rm(bundleDir, { recursive: true, force: true });
  const stop = await startServers(project, logger).catch(async (err: unknown) => {
    await removeBundles();
    throw err;
  });
  return async () => {
    await stop();
    await removeBundles();
  };
}

/** The codec server and the run's Temporal (a dev server, or the cluster with RUNBOOK_TEST_TEMPORAL=cluster); returns what stops them. */
async function startServers(project: TestProject, logger: Logger): Promise<() => Promise<void>> {
  // Before the server: the UI is started with its address. The UI's origin is allowed once known.
  const codec = await startCodecServer({ codec: payloadEncryptionFromEnv().codec, port: 0, corsOrigins: [], logger });
  if (process.env.RUNBOOK_TEST_TEMPORAL === 'cluster') return startCluster(project, logger, codec);
  const server = await startDevServer({
    codecEndpoint: codec.url,
    port: 0,
    uiPort: 0,
    ui: true,
    readyTimeoutMs: 60_000,
    logFile: path.resolve('tests/artifacts/temporal-dev-server.log'),
    logger,
  });
  process.stderr.write(`Temporal dev server for tests: ${server.address}, UI ${server.uiUrl} (ready in ${server.readyMs} ms)\n`);
  project.provide('temporalAddress', server.address);
  project.provide('temporalNamespace', server.namespace);
  project.provide('temporalUiUrl', server.uiUrl ?? '');
  if (server.uiUrl) {
    const ui = new URL(server.uiUrl);
    for (const host of ['127.0.0.1', 'localhost']) codec.allowOrigin(`${ui.protocol}//${host}:${ui.port}`);
  }
  project.provide('codecEndpoint', codec.url);
  return async () => {
    await server.stop();
    await codec.close();
  };
}

/**
 * RUNBOOK_TEST_TEMPORAL=cluster (`npm run test:cluster`): the run's Temporal is temporal-server
 * on its own PostgreSQL (lib/temporal/cluster.ts), as production runs it, instead of the dev
 * server; no UI. Its output goes to tests/artifacts/temporal-cluster.log.
 */
async function startCluster(project: TestProject, logger: Logger, codec: { url: string; close(): Promise<void> }): Promise<() => Promise<void>> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'runbook-test-cluster-'));
  const cluster = await startTemporalCluster({
    dataDir,
    port: 0,
    ephemeral: true,
    logFile: path.resolve('tests/artifacts/temporal-cluster.log'),
    logger,
    onProgress: (line) => process.stderr.write(`${line}\n`),
  }).catch(async (err: unknown) => {
    await codec.close();
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  });
  process.stderr.write(`Temporal cluster for tests: ${cluster.address} on ${cluster.postgresUrl} (ready in ${cluster.readyMs} ms)\n`);
  project.provide('temporalAddress', cluster.address);
  project.provide('temporalNamespace', cluster.namespace);
  project.provide('temporalUiUrl', '');
  project.provide('codecEndpoint', codec.url);
  return async () => {
    await cluster.stop();
    await codec.close();
    await rm(dataDir, { recursive: true, force: true });
  };
}
