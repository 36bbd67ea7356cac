import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError } from '@temporalio/client';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigrator } from '../../activities/database/migrations.js';
import type { AppRollbackResult, ConfigRollbackResult } from '../../common/delivery/types.js';
import { startDemoService, type DemoService } from '../../demo/service.js';
import { createLogger } from '../../lib/logger.js';
import { createRecordingCli, type RecordingCli } from '../fixtures/recording-cli.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort, startPostgres, type PgServer } from '../fixtures/servers.js';
import { rootCause } from './helpers.js';

let dir: string;
let kubectl: RecordingCli;
let docker: RecordingCli;
let app: DemoService;
let postgres: PgServer;
let dbUrl: string;
let env: NodeJS.ProcessEnv;

const setVersion = (version: string) => fetch(`${app.httpUrl}/admin/state`, { method: 'POST', body: JSON.stringify({ version }) });

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-rollback-'));
  kubectl = await createRecordingCli('kubectl');
  docker = await createRecordingCli('docker');
  // Both stand-ins on PATH: no cluster for kubectl; containers do run here (tests/fixtures/containers.ts)
  // but the compose rollback starts with `docker pull` of the previous image, and no registry is reachable.
  env = { ...process.env, PATH: `${kubectl.dir}${path.delimiter}${docker.path}` };
  app = await startDemoService({ httpPort: await freePort(), grpcPort: 0, version: '2.0.0' });
  postgres = await startPostgres();
  dbUrl = await postgres.createDatabase('fulcrum');
  const migrator = createMigrator({ url: dbUrl, dir: path.resolve('demo/migrations'), database: 'fulcrum', logger: createLogger({ component: 'test' }, 'warn') });
  await migrator.up();
  await migrator.close();
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  await db.query("INSERT INTO feature_flags (name, enabled) VALUES ('new-feature', true), ('old-feature', false)");
  await db.end();
}, 120_000);

afterAll(async () => {
  await app?.stop();
  await postgres?.stop();
  await kubectl?.remove();
  await docker?.remove();
  await rm(dir, { recursive: true, force: true });
});

/** The "restart" of the web service: reads the env file and applies APP_VERSION to the running app, as a restart would. */
function restartFromEnvFile(envFile: string): string[] {
  const script = `
    const text = require('fs').readFileSync(${JSON.stringify(envFile)}, 'utf8');
    const version = /^APP_VERSION=(.*)$/m.exec(text)[1];
    fetch(${JSON.stringify(`${app.httpUrl}/admin/state`)}, { method: 'POST', body: JSON.stringify({ version }) }).then((r) => process.exit(r.ok ? 0 : 1));
  `;
  return [process.execPath, '-e', script];
}

async function config() {
  return writeConfig(
    {
      environment: 'test',
      services: [
        { name: 'server', driver: { type: 'kubernetes', namespace: 'fulcrum', timeoutSeconds: 30 } },
        { name: 'dashboard', driver: { type: 'compose', file: 'docker-compose.unified.yml', service: 'dashboard' } },
        {
          name: 'web',
          driver: { type: 'command', restart: restartFromEnvFile(path.join(dir, '.env')) },
          probes: [{ type: 'http', url: `${app.httpUrl}/healthz`, bodyMatch: '"version":"1.4.0"' }],
        },
      ],
      databases: [{ name: 'fulcrum', url: dbUrl }],
      approvals: { approvers: { default: ['alice', 'bob'] } },
    },
    dir,
  );
}

describe('app-rollback', () => {
  it('kubernetes: rollout undo --to-revision, then rollout status, then the version serving is verified', async () => {
    await setVersion('2.0.0');
    await kubectl.clear();
    const loaded = await config();
    const result = await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const workflowId = `app-rollback-${Date.now()}`;
        const run = client.workflow.execute('app-rollback', {
          taskQueue,
          workflowId,
          args: [{ service: 'server', revision: 5, verifyUrl: `${app.httpUrl}/api/version`, expectVersion: '1.0.0', waitTimeoutSeconds: 20 }],
        }) as Promise<AppRollbackResult>;
        // The "cluster" finishes the rollback once kubectl was asked to.
        for (let i = 0; i < 100 && !(await kubectl.calls()).some((c) => c.includes('undo')); i++) await sleep(100);
        await setVersion('1.0.0');
        const r = await run;
        await recordHistory(client, workflowId, 'app-rollback');
        return r;
      },
      { env },
    );
    expect(result).toMatchObject({ ok: true, service: 'server', servingVersion: '1.0.0' });
    expect(await kubectl.calls()).toEqual([
      ['-n', 'fulcrum', 'rollout', 'undo', 'deployment/server', '--to-revision=5'],
      ['-n', 'fulcrum', 'rollout', 'status', 'deployment/server', '--timeout=30s'],
    ]);
  });

  it('fails when the old version never comes back, naming what is served', async () => {
    await setVersion('2.0.0');
    const loaded = await config();
    const err = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('app-rollback', {
        taskQueue,
        workflowId: `app-rollback-stuck-${Date.now()}`,
        args: [{ service: 'server', verifyUrl: `${app.httpUrl}/api/version`, expectVersion: '1.0.0', waitTimeoutSeconds: 2 }],
      }), { env }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(rootCause(err)).toMatch(/does not serve version 1\.0\.0 after 2s \(last: HTTP 200, version 2\.0\.0\)/);
  });

  it('compose: pulls the previous image and runs it through an override file', async () => {
    await docker.clear();
    const loaded = await config();
    await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('app-rollback', { taskQueue, workflowId: `app-rollback-compose-${Date.now()}`, args: [{ service: 'dashboard', image: 'ghcr.io/org/dashboard:v1.0.0' }] }), { env });
    const override = path.join(dir, '.runbook', 'rollback', 'dashboard.compose.yml');
    expect(await docker.calls()).toEqual([
      ['pull', 'ghcr.io/org/dashboard:v1.0.0'],
      ['compose', '-f', path.join(dir, 'docker-compose.unified.yml'), '-f', override, 'up', '-d', 'dashboard'],
    ]);
    expect(await readFile(override, 'utf8')).toMatch(/dashboard:\n\s+image: ghcr.io\/org\/dashboard:v1.0.0/);
  });
});

describe('config-rollback', () => {
  it('env-file: restores the backup, keeps the replaced file, restarts, and the service serves the old value', async () => {
    await writeFile(path.join(dir, '.env'), 'APP_VERSION=1.5.0-broken\nLOG_LEVEL=debug\n');
    await writeFile(path.join(dir, '.env.backup'), 'APP_VERSION=1.4.0\nLOG_LEVEL=info\n');
    await setVersion('1.5.0-broken');
    const loaded = await config();
    const result = await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `config-rollback-${Date.now()}`;
      const r = (await client.workflow.execute('config-rollback', { taskQueue, workflowId, args: [{ kind: 'env-file', envFile: '.env', service: 'web', waitTimeoutSeconds: 10 }] })) as ConfigRollbackResult;
      await recordHistory(client, workflowId, 'config-rollback');
      return r;
    });
    expect(result.ok).toBe(true);
    expect(await readFile(path.join(dir, '.env'), 'utf8')).toBe('APP_VERSION=1.4.0\nLOG_LEVEL=info\n');
    const kept = (await readdir(dir)).filter((f) => f.startsWith('.env.rolled-back-'));
    expect(kept).toHaveLength(1);
    expect(await readFile(path.join(dir, kept[0]!), 'utf8')).toMatch(/1\.5\.0-broken/);
    expect(((await (await fetch(`${app.httpUrl}/healthz`)).json()) as { version: string }).version).toBe('1.4.0');
    expect(result.progress.steps.map((s) => [s.id, s.status])).toEqual([
      ['plan', 'succeeded'],
      ['restore', 'succeeded'],
      ['restart', 'succeeded'],
      ['wait', 'succeeded'],
    ]);
  });

  it('feature-flag: UPDATE feature_flags SET enabled = false, verified in PostgreSQL', async () => {
    const loaded = await config();
    const result = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('config-rollback', { taskQueue, workflowId: `flag-${Date.now()}`, args: [{ kind: 'feature-flag', database: 'fulcrum', flag: 'new-feature' }] }),
    ) as ConfigRollbackResult;
    expect(result.detail).toBe('new-feature disabled');
    const db = new pg.Client({ connectionString: dbUrl });
    await db.connect();
    const rows = (await db.query('SELECT name, enabled FROM feature_flags ORDER BY name')).rows;
    await db.end();
    expect(rows).toEqual([
      { name: 'new-feature', enabled: false },
      { name: 'old-feature', enabled: false },
    ]);
    const missing = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('config-rollback', { taskQueue, workflowId: `flag-missing-${Date.now()}`, args: [{ kind: 'feature-flag', database: 'fulcrum', flag: 'nope' }] }),
    ).catch((e: unknown) => e);
    expect(rootCause(missing)).toMatch(/flag: no feature flag named "nope" in fulcrum.feature_flags/);
  });

  it('configmap: kubectl apply of the previous manifest, then rollout restart and status', async () => {
    await kubectl.clear();
    await mkdir(path.join(dir, 'infra'), { recursive: true });
    const loaded = await config();
    await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('config-rollback', {
        taskQueue,
        workflowId: `configmap-${Date.now()}`,
        args: [{ kind: 'configmap', manifest: 'infra/fulcrum-config-v1.yaml', service: 'server' }],
      }), { env });
    expect(await kubectl.calls()).toEqual([
      ['-n', 'fulcrum', 'apply', '-f', path.join(dir, 'infra/fulcrum-config-v1.yaml')],
      ['-n', 'fulcrum', 'rollout', 'restart', 'deployment/server'],
      ['-n', 'fulcrum', 'rollout', 'status', 'deployment/server', '--timeout=30s'],
    ]);
  });

  it('a missing field for the kind is refused, naming the field', async () => {
    const loaded = await config();
    const err = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('config-rollback', { taskQueue, workflowId: `cfg-bad-${Date.now()}`, args: [{ kind: 'feature-flag', database: 'fulcrum' }] }),
    ).catch((e: unknown) => e);
    expect((err as WorkflowFailedError).cause?.message).toMatch(/flag: required for kind feature-flag/);
  });
});
