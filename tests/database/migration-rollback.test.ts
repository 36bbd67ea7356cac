import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigrator } from '../../activities/database/migrations.js';
import type { DbMigrationRollbackResult } from '../../common/database/types.js';
import { approveUpdate, progressQuery, rejectUpdate } from '../../common/messages.js';
import { execa } from 'execa';
import type { LoadedConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { createRecordingCli, type RecordingCli } from '../fixtures/recording-cli.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort, startPostgres, type PgServer } from '../fixtures/servers.js';
import { failureText, pgConfigService, sql, waitForPending } from './helpers.js';

let pgs: PgServer;
let appUrl: string;
let brokenUrl: string;
let tmp: string;
let http: number;
let loaded: LoadedConfig;

const MIGRATIONS: Record<string, string> = {
  '001_create_policies.up.sql': 'CREATE TABLE policies (id serial PRIMARY KEY, name text NOT NULL);',
  '001_create_policies.down.sql': 'DROP TABLE policies;',
  '002_add_tenant.up.sql': 'ALTER TABLE policies ADD COLUMN tenant text;',
  '002_add_tenant.down.sql': 'ALTER TABLE policies DROP COLUMN tenant;',
  '003_add_flags.up.sql': 'CREATE TABLE feature_flags (name text PRIMARY KEY, enabled boolean NOT NULL DEFAULT false);',
  '003_add_flags.down.sql': 'DROP TABLE feature_flags;',
};

async function migrationsDir(name: string, files: Record<string, string>): Promise<string> {
  const dir = path.join(tmp, name);
  await mkdir(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) await writeFile(path.join(dir, f), text);
  return dir;
}

async function migrateUp(url: string, dir: string): Promise<void> {
  const m = createMigrator({ url, dir, database: 'test', logger: createLogger({ component: 'test' }, 'warn') });
  try {
    await m.up();
  } finally {
    await m.close();
  }
}

const FAKE_APP = fileURLToPath(new URL('./fake-app.mjs', import.meta.url));
const apiCmd = (action: string) => [process.execPath, FAKE_APP, action, tmp, String(http)];
const apiRunning = async () => (await execa(process.execPath, [FAKE_APP, 'status', tmp, String(http)], { reject: false })).exitCode === 0;
const versions = async (url: string) => (await sql<{ version: string }>(url, 'SELECT version FROM schema_migrations ORDER BY version')).map((r) => r.version);

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'runbook-rollback-'));
  pgs = await startPostgres({ settings: { autovacuum: 'off' } });
  appUrl = await pgs.createDatabase('app');
  brokenUrl = await pgs.createDatabase('broken');
  const appDir = await migrationsDir('app', MIGRATIONS);
  const { ['003_add_flags.down.sql']: _missing, ...withoutDown } = MIGRATIONS;
  const brokenDir = await migrationsDir('broken', withoutDown);
  await migrateUp(appUrl, appDir);
  await migrateUp(brokenUrl, brokenDir);
  await sql(appUrl, `INSERT INTO policies(name, tenant) VALUES ('p1', 't1'), ('p2', 't2')`);
  http = await freePort();
  loaded = await writeConfig({
    environment: 'rbtest',
    services: [
      pgConfigService(pgs.url),
      {
        name: 'api',
        group: 'apps',
        driver: { type: 'command', start: apiCmd('start'), stop: apiCmd('stop'), status: apiCmd('status') },
        probes: [{ type: 'http', url: `http://127.0.0.1:${http}/healthz` }],
      },
    ],
    stack: { groups: [{ name: 'infra', waitTimeoutSeconds: 30 }, { name: 'apps', waitTimeoutSeconds: 30 }], pollIntervalSeconds: 0.2 },
    databases: [
      { name: 'app', url: appUrl, service: 'postgres', migrationsDir: appDir },
      { name: 'broken', url: brokenUrl, service: 'postgres', migrationsDir: brokenDir },
    ],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: { backups: { repository: path.join(tmp, 'backups'), verifyTables: { app: ['policies'] } } },
  });
  await execa(process.execPath, apiCmd('start').slice(1));
});

afterAll(async () => {
  await execa(process.execPath, apiCmd('stop').slice(1)).catch(() => undefined);
  await pgs?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe('db-migration-rollback (Fulcrum 8.2)', () => {
  it('a missing down file fails the run before anything is stopped', async () => {
    const err = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow
        .execute('db-migration-rollback', { taskQueue, workflowId: `rb-missing-${Date.now()}`, args: [{ database: 'broken', requestedBy: 'alice' }] })
        .catch((e: unknown) => e),
    );
    expect(failureText(err)).toMatch(/cannot roll back 003_add_flags: .*003_add_flags\.down\.sql is missing/);
    expect(await apiRunning()).toBe(true);
    expect(await versions(brokenUrl)).toEqual(['001', '002', '003']);
  });

  it('rejected: nothing is stopped, backed up or rolled back while it waits or after', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('db-migration-rollback', {
        taskQueue,
        workflowId: `rb-reject-${Date.now()}`,
        args: [{ database: 'app', steps: 1, requestedBy: 'alice' }],
      });
      const pending = await waitForPending(handle);
      expect(pending).toMatchObject({ step: 'approve-rollback', confirmPhrase: 'ROLLBACK' });
      expect(pending.summary).toContain('DROP TABLE feature_flags;');
      expect(pending.summary).toMatch(/On approval: stop api, take and verify a backup/);
      // The apps keep serving while the humans decide.
      expect(await apiRunning()).toBe(true);
      await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', comment: 'not now', step: 'approve-rollback' }] });
      const err = await handle.result().catch((e: unknown) => e);
      expect(failureText(err)).toMatch(/rejected by bob: not now; nothing was stopped, backed up or rolled back/);
      const steps = (await handle.query(progressQuery)).steps;
      expect(steps.map((s) => s.id).slice(0, 4)).toEqual(['plan', 'identify', 'approve-rollback', 'stop-apps']);
      for (const id of ['stop-apps', 'backup', 'rollback']) expect(steps.find((s) => s.id === id)?.status).toBe('pending');
    });
    expect(await apiRunning()).toBe(true);
    expect(await versions(appUrl)).toEqual(['001', '002', '003']);
    expect(existsSync(path.join(tmp, 'backups', 'app')) ? await readdir(path.join(tmp, 'backups', 'app')) : []).toEqual([]);
  });

  it('approved: backup, down migrations applied, schema_migrations verified, apps healthy; a concurrent destructive run is refused', async () => {
    const r = await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('db-migration-rollback', {
        taskQueue,
        workflowId: `rb-approve-${Date.now()}`,
        args: [{ database: 'app', to: '001', requestedBy: 'alice' }],
      });
      const pending = await waitForPending(handle);
      expect(pending.summary).toMatch(/Roll back 2 migration\(s\) of app, leaving it at version 001/);
      // One destructive runbook per database: a second one fails at once with the lock's name.
      const busy = await client.workflow
        .execute('db-vacuum', { taskQueue, workflowId: `vacuum-busy-${Date.now()}`, args: [{ database: 'app', full: true, tables: ['policies'], requestedBy: 'alice' }] })
        .catch((e: unknown) => e);
      expect(failureText(busy)).toMatch(/database app is busy: another destructive runbook holds its lock \(workflow db-lock--rbtest--app/);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'ROLLBACK', step: 'approve-rollback' }] });
      const res = (await handle.result()) as DbMigrationRollbackResult;
      await recordHistory(client, handle.workflowId, 'db-migration-rollback');
      return res;
    });
    expect(r.ok).toBe(true);
    expect(r.rolledBack.map((m) => m.version)).toEqual(['003', '002']);
    expect(Object.keys(r.downSql).sort()).toEqual(['002', '003']);
    expect(r.remaining).toEqual(['001']);
    expect(r.stopped.map((s) => s.service)).toEqual(['api']);
    expect(r.started.map((s) => s.service)).toEqual(['api']);
    // A command driver without a rollback command restarts what is deployed, and says so.
    expect(r.appRestarts).toEqual([
      { service: 'api', version: 'deployed', how: 'start', commands: [r.started[0]!.command], note: 'services.api.driver.rollback is not set: started as deployed' },
    ]);
    expect(r.health?.ok).toBe(true);
    expect(existsSync(path.join(tmp, 'backups', 'app', r.backupId, 'manifest.json'))).toBe(true);
    expect(await versions(appUrl)).toEqual(['001']);
    const cols = await sql<{ column_name: string }>(appUrl, `SELECT column_name FROM information_schema.columns WHERE table_name = 'policies' ORDER BY 1`);
    expect(cols.map((c) => c.column_name)).toEqual(['id', 'name']);
    expect(await sql(appUrl, `SELECT to_regclass('feature_flags') AS r`)).toEqual([{ r: null }]);
    expect(await apiRunning()).toBe(true);
  });
});

describe('db-migration-rollback without app services', () => {
  it('stops no other service (the database service is not an app)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'runbook-rollback-noapps-'));
    const url = await pgs.createDatabase('noapps');
    await migrateUp(url, path.join(tmp, 'app'));
    const log = path.join(dir, 'postgres-actions');
    const record = (action: string) => [process.execPath, '-e', `require('fs').appendFileSync(${JSON.stringify(log)}, ${JSON.stringify(`${action}\n`)})`];
    const cfg = await writeConfig(
      {
        environment: 'rbnoapps',
        services: [{ name: 'postgres', group: 'infra', driver: { type: 'command', start: record('start'), stop: record('stop'), status: ['true'] } }],
        stack: { groups: [{ name: 'infra', waitTimeoutSeconds: 30 }, { name: 'apps', waitTimeoutSeconds: 30 }] },
        databases: [{ name: 'noapps', url, service: 'postgres', migrationsDir: path.join(tmp, 'app') }],
        approvals: { approvers: { default: ['alice', 'bob'] } },
        databaseOps: { backups: { repository: path.join(dir, 'backups') } },
      },
      dir,
    );
    const r = await withWorker(cfg, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('db-migration-rollback', { taskQueue, workflowId: `rb-noapps-${Date.now()}`, args: [{ database: 'noapps', requestedBy: 'alice' }] });
      await waitForPending(handle);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'ROLLBACK', step: 'approve-rollback' }] });
      return (await handle.result()) as DbMigrationRollbackResult;
    });
    expect(r.ok).toBe(true);
    expect(r.remaining).toEqual(['001', '002']);
    expect(r.stopped).toEqual([]);
    expect(r.appRestarts).toEqual([]);
    expect(existsSync(log)).toBe(false);
    await rm(dir, { recursive: true, force: true });
  });
});

describe('db-migration-rollback restarts the apps at their previous version (Fulcrum 8.2 step 5)', () => {
  let kubectl: RecordingCli;
  let docker: RecordingCli;
  let env: NodeJS.ProcessEnv;
  let prevUrl: string;
  let workerPort: number;
  let dir: string;
  const marker = () => path.join(dir, 'worker-version');
  const workerCmd = (action: string) => [process.execPath, FAKE_APP, action, dir, String(workerPort)];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'runbook-rollback-prev-'));
    prevUrl = await pgs.createDatabase('prev');
    await migrateUp(prevUrl, path.join(tmp, 'app'));
    workerPort = await freePort();
    kubectl = await createRecordingCli('kubectl');
    docker = await createRecordingCli('docker');
    // The compose service `dashboard` is running; `events` is not. A stand-in rather than the real
    // engine (tests/fixtures/containers.ts): going back to a previous image is a `docker pull` from
    // a registry, and nothing can be pulled on this machine.
    await docker.respond([
      { when: ['ps', 'dashboard'], stdout: '0123456789ab\n' },
      { when: ['inspect', '0123456789ab'], stdout: '{"name":"/rbprev_dashboard_1","id":"0123456789ab","state":{"Status":"running","Running":true}}\n' },
    ]);
    env = { ...process.env, PATH: `${kubectl.dir}${path.delimiter}${docker.path}` };
    await execa(process.execPath, workerCmd('start').slice(1));
  });

  afterAll(async () => {
    await execa(process.execPath, workerCmd('stop').slice(1)).catch(() => undefined);
    await kubectl?.remove();
    await docker?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  async function config() {
    // The worker's rollback command stands for "start the previous release": it records that it ran, then starts the app.
    const rollback = [
      process.execPath,
      '-e',
      `require('fs').writeFileSync(${JSON.stringify(marker())}, 'previous'); require('child_process').execFileSync(process.execPath, ${JSON.stringify(workerCmd('start').slice(1))})`,
    ];
    return writeConfig(
      {
        environment: 'rbprev',
        services: [
          pgConfigService(pgs.url),
          { name: 'server', group: 'apps', driver: { type: 'kubernetes', namespace: 'fulcrum', replicas: 2, timeoutSeconds: 30 } },
          { name: 'dashboard', group: 'apps', driver: { type: 'compose', file: 'docker-compose.unified.yml' } },
          { name: 'events', group: 'apps', driver: { type: 'compose', file: 'docker-compose.unified.yml' } },
          {
            name: 'worker',
            group: 'apps',
            driver: { type: 'command', start: workerCmd('start'), stop: workerCmd('stop'), status: workerCmd('status'), rollback },
            probes: [{ type: 'http', url: `http://127.0.0.1:${workerPort}/` }],
          },
        ],
        stack: { groups: [{ name: 'infra', waitTimeoutSeconds: 30 }, { name: 'apps', waitTimeoutSeconds: 30 }], pollIntervalSeconds: 0.2 },
        databases: [{ name: 'prev', url: prevUrl, service: 'postgres', migrationsDir: path.join(tmp, 'app') }],
        approvals: { approvers: { default: ['alice', 'bob'] } },
        databaseOps: { backups: { repository: path.join(dir, 'backups') } },
      },
      dir,
    );
  }

  it('previousImages for a service that cannot take one is refused before anything stops', async () => {
    await kubectl.clear();
    await docker.clear();
    const loadedPrev = await config();
    const err = await withWorker(
      loadedPrev,
      ({ client, taskQueue }) =>
        client.workflow
          .execute('db-migration-rollback', { taskQueue, workflowId: `rb-prev-bad-${Date.now()}`, args: [{ database: 'prev', previousImages: { server: 'ghcr.io/org/server:1.0' }, requestedBy: 'alice' }] })
          .catch((e: unknown) => e),
      { env },
    );
    expect(failureText(err)).toMatch(/previousImages\.server: server uses the kubernetes driver; only compose services take an image/);
    expect(await kubectl.calls()).toEqual([]);
    expect(await docker.calls()).toEqual([]);
  });

  it('kubernetes: rollout undo then scale up; compose: the previous image; command: its rollback command; the result says which', async () => {
    await kubectl.clear();
    await docker.clear();
    await rm(marker(), { force: true });
    const loadedPrev = await config();
    const r = await withWorker(
      loadedPrev,
      async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('db-migration-rollback', {
          taskQueue,
          workflowId: `rb-prev-${Date.now()}`,
          args: [{ database: 'prev', steps: 1, previousImages: { dashboard: 'ghcr.io/org/dashboard:1.4.2' }, requestedBy: 'alice' }],
        });
        await waitForPending(handle);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'ROLLBACK', step: 'approve-rollback' }] });
        const res = (await handle.result()) as DbMigrationRollbackResult;
        await recordHistory(client, handle.workflowId, 'db-migration-rollback-previous-version');
        return res;
      },
      { env },
    );
    expect(r.ok).toBe(true);
    expect(r.remaining).toEqual(['001', '002']);
    expect(await kubectl.calls()).toEqual([
      ['-n', 'fulcrum', 'get', 'deployment/server', '-o', 'json'],
      ['-n', 'fulcrum', 'scale', 'deployment/server', '--replicas=0'],
      ['-n', 'fulcrum', 'rollout', 'undo', 'deployment/server'],
      ['-n', 'fulcrum', 'rollout', 'status', 'deployment/server', '--timeout=30s'],
      ['-n', 'fulcrum', 'scale', 'deployment/server', '--replicas=2'],
    ]);
    const composeFile = path.join(dir, 'docker-compose.unified.yml');
    const override = path.join(dir, '.runbook', 'rollback', 'dashboard.compose.yml');
    expect(await docker.calls()).toEqual([
      ['compose', '-f', composeFile, 'ps', '-a', '-q', 'dashboard'],
      ['inspect', '--format', expect.any(String), '0123456789ab'],
      ['compose', '-f', composeFile, 'stop', 'dashboard'],
      ['compose', '-f', composeFile, 'ps', '-a', '-q', 'events'],
      ['pull', 'ghcr.io/org/dashboard:1.4.2'],
      ['compose', '-f', composeFile, '-f', override, 'up', '-d', 'dashboard'],
      ['compose', '-f', composeFile, 'ps', '-a', '-q', 'events'],
      ['compose', '-f', composeFile, 'up', '-d', 'events'],
    ]);
    expect(await readFile(override, 'utf8')).toMatch(/dashboard:\n\s+image: ghcr.io\/org\/dashboard:1.4.2/);
    expect(await readFile(marker(), 'utf8')).toBe('previous');
    expect(r.appRestarts.map(({ service, version, how, note }) => ({ service, version, how, ...(note ? { note } : {}) }))).toEqual([
      { service: 'server', version: 'previous', how: 'rollout-undo' },
      { service: 'dashboard', version: 'previous', how: 'previous-image' },
      { service: 'events', version: 'deployed', how: 'start', note: 'no previousImages.events given: started the image the compose file names' },
      { service: 'worker', version: 'previous', how: 'rollback-command' },
    ]);
    expect(r.appRestarts[0]!.commands).toEqual([
      'kubectl -n fulcrum rollout undo deployment/server',
      'kubectl -n fulcrum rollout status deployment/server --timeout=30s',
      'kubectl -n fulcrum scale deployment/server --replicas=2',
    ]);
    expect((await execa(process.execPath, workerCmd('status').slice(1), { reject: false })).exitCode).toBe(0);
  });
});
