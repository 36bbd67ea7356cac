import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { execa } from 'execa';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approveUpdate } from '../../common/messages.js';
import type { RunPlan } from '../../common/plan.js';
import type { ProcedureId } from '../../common/procedures.js';
import type { RunProgress } from '../../common/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { planRun } from '../../client/plan.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort, startPostgres, type PgServer } from '../fixtures/servers.js';
import { sql, tableDigest, waitForPending } from '../database/helpers.js';

/**
 * `runbook plan` for the database family against a real PostgreSQL and a real Redis: each plan
 * changes nothing (rows, databases, backups, the Redis pid), names its approvals with who can
 * give them, and lists the steps the real run then executes.
 */

let root: string;
let pgs: PgServer;
let appUrl: string;
let redisPort: number;
let loaded: LoadedConfig;

const MIGRATIONS = {
  '001_create_policies.up.sql': 'CREATE TABLE policies (id serial PRIMARY KEY, name text NOT NULL);',
  '001_create_policies.down.sql': 'DROP TABLE policies;',
  '002_add_tenant.up.sql': 'ALTER TABLE policies ADD COLUMN tenant text;',
  '002_add_tenant.down.sql': 'ALTER TABLE policies DROP COLUMN tenant;',
};

const redisPid = async () => {
  const r = new Redis({ port: redisPort, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
  await r.connect();
  try {
    return Number(/process_id:(\d+)/.exec(await r.info('server'))![1]);
  } finally {
    r.disconnect();
  }
};

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'runbook-plan-db-'));
  const migrations = path.join(root, 'migrations');
  await mkdir(migrations);
  for (const [f, text] of Object.entries(MIGRATIONS)) await writeFile(path.join(migrations, f), text);
  pgs = await startPostgres({ settings: { autovacuum: 'off' } });
  appUrl = await pgs.createDatabase('app');
  await sql(appUrl, 'CREATE TABLE trades (id int PRIMARY KEY, v text); INSERT INTO trades SELECT g, md5(g::text) FROM generate_series(1, 500) g');

  redisPort = await freePort();
  const conf = path.join(root, 'redis.conf');
  const redisDir = path.join(root, 'redis');
  await mkdir(redisDir);
  await writeFile(
    conf,
    [`port ${redisPort}`, 'bind 127.0.0.1', `dir ${redisDir}`, 'dbfilename dump.rdb', `pidfile ${path.join(root, 'redis.pid')}`, 'daemonize yes', 'save 3600 1', 'appendonly no'].join('\n'),
  );
  await execa('redis-server', [conf]);
  for (let i = 0; i < 100 && !(await redisPid().catch(() => 0)); i++) await sleep(50);

  loaded = await writeConfig({
    environment: 'plan-db',
    services: [
      { name: 'postgres', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'postgres', url: appUrl }] },
      {
        name: 'cache',
        group: 'infra',
        driver: { type: 'command', start: ['redis-server', conf], stop: ['redis-cli', '-p', String(redisPort), 'shutdown'], status: ['redis-cli', '-p', String(redisPort), 'ping'], timeoutSeconds: 30 },
        probes: [{ type: 'redis', url: `redis://127.0.0.1:${redisPort}` }],
      },
    ],
    databases: [{ name: 'app', url: appUrl, service: 'postgres', migrationsDir: migrations }],
    approvals: { approvers: { default: ['alice', 'bob'] }, steps: { 'db-restore': { 'approve-replace': { approvers: ['bob', 'carol'] } } } },
    databaseOps: {
      backups: { repository: path.join(root, 'dumps'), verifyTables: { app: ['trades'] } },
      redis: [{ service: 'cache', snapshots: path.join(root, 'snapshots'), readyTimeoutSeconds: 30, snapshotTimeoutSeconds: 30 }],
    },
  });
});

afterAll(async () => {
  await execa('redis-cli', ['-p', String(redisPort), 'shutdown', 'nosave'], { reject: false });
  await pgs?.stop();
  await rm(root, { recursive: true, force: true });
});

function plan(client: Client, taskQueue: string, procedure: ProcedureId, input: Record<string, unknown>): Promise<RunPlan> {
  return planRun({ client, taskQueue, procedure, input: { requestedBy: 'alice', ...input }, requestedBy: 'alice', environment: 'plan-db' });
}

const stepsOf = (x: RunPlan | RunProgress) => x.steps.map((s) => `${s.id}: ${s.title}`);

function start(client: Client, taskQueue: string, procedure: ProcedureId, input: Record<string, unknown>): Promise<WorkflowHandle> {
  return client.workflow.start(procedure, { taskQueue, workflowId: `${procedure}-${Date.now()}`, args: [{ requestedBy: 'alice', ...input }] });
}

/** Runs the procedure for real, approving each step it asks for as bob (with its phrase). */
async function execute(client: Client, taskQueue: string, procedure: ProcedureId, input: Record<string, unknown>, approvals = 0): Promise<RunProgress> {
  const handle = await start(client, taskQueue, procedure, input);
  for (let i = 0; i < approvals; i++) {
    const p = await waitForPending(handle);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', step: p.step, ...(p.confirmPhrase ? { confirm: p.confirmPhrase } : {}) }] });
  }
  return ((await handle.result()) as { progress: RunProgress }).progress;
}

const databases = async () => (await sql<{ datname: string }>(appUrl, 'SELECT datname FROM pg_database ORDER BY 1')).map((r) => r.datname);
const dumps = async () => readdir(path.join(root, 'dumps')).catch(() => [] as string[]);

describe('runbook plan: database family', () => {
  it('db-backup, then db-restore with replace: the plans change nothing, name the approval and its approvers, and match the real runs', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const backup = await plan(client, taskQueue, 'db-backup', { database: 'app' });
      expect(backup.refused).toBeUndefined();
      expect(backup.stoppedAt?.activity).toBe('dumpDatabase app');
      expect(await dumps()).toEqual([]);
      expect(stepsOf(backup)).toEqual(stepsOf(await execute(client, taskQueue, 'db-backup', { database: 'app' })));

      const before = { digest: await tableDigest(appUrl, 'trades'), dbs: await databases(), dumps: await dumps() };
      const restore = await plan(client, taskQueue, 'db-restore', { database: 'app', replace: true });
      expect(restore.refused).toBeUndefined();
      expect(restore.steps.map((s) => [s.id, s.kind])).toEqual([
        ['plan', 'checked'],
        ['choose', 'checked'],
        ['restore', 'would-do'],
        ['verify', 'would-do'],
        ['approve-replace', 'approval'],
        ['swap', 'would-do'],
      ]);
      expect(restore.steps.find((s) => s.id === 'choose')!.detail).toMatch(/checksum verified/);
      expect(restore.steps.find((s) => s.id === 'restore')!.detail).toBe('would run restoreInto app');
      expect(restore.steps.find((s) => s.id === 'approve-replace')!.approval).toMatchObject({ approvers: ['bob', 'carol'], quorum: 1 });
      expect({ digest: await tableDigest(appUrl, 'trades'), dbs: await databases(), dumps: await dumps() }).toEqual(before);

      await sql(appUrl, 'DELETE FROM trades WHERE id > 250');
      const real = await execute(client, taskQueue, 'db-restore', { database: 'app', replace: true }, 1);
      expect(stepsOf(restore)).toEqual(stepsOf(real));
      expect((await sql<{ n: string }>(appUrl, 'SELECT count(*) AS n FROM trades'))[0]!.n).toBe('500');
    });
  });

  it('db-vacuum, db-triage, db-migrate, db-migration-rollback: plans against the real database, steps as the real runs show them', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const vacuum = await plan(client, taskQueue, 'db-vacuum', { database: 'app', deadTuplesThreshold: 0 });
      expect(vacuum.refused).toBeUndefined();
      expect(stepsOf(vacuum)).toEqual(stepsOf(await execute(client, taskQueue, 'db-vacuum', { database: 'app', deadTuplesThreshold: 0 })));

      const triage = await plan(client, taskQueue, 'db-triage', { database: 'app' });
      expect(triage.refused).toBeUndefined();
      expect(stepsOf(triage)).toEqual(stepsOf(await execute(client, taskQueue, 'db-triage', { database: 'app' })));

      const migrate = await plan(client, taskQueue, 'db-migrate', { database: 'app', mode: 'apply' });
      expect(migrate.refused).toBeUndefined();
      const approve = migrate.steps.find((s) => s.id === 'approve-migrate');
      expect(approve?.kind).toBe('approval');
      expect(approve?.approval?.approvers).toEqual(['alice', 'bob']);
      expect(await sql(appUrl, "SELECT 1 FROM pg_tables WHERE tablename = 'policies'")).toEqual([]);
      expect(stepsOf(migrate)).toEqual(stepsOf(await execute(client, taskQueue, 'db-migrate', { database: 'app', mode: 'apply' }, 1)));

      const rollback = await plan(client, taskQueue, 'db-migration-rollback', { database: 'app', services: [] });
      expect(rollback.refused).toBeUndefined();
      expect(rollback.steps.find((s) => s.id === 'approve-rollback')?.kind).toBe('approval');
      expect((await sql<{ version: string }>(appUrl, 'SELECT version FROM schema_migrations ORDER BY 1')).map((r) => r.version)).toEqual(['001', '002']);
      expect(stepsOf(rollback)).toEqual(stepsOf(await execute(client, taskQueue, 'db-migration-rollback', { database: 'app', services: [] }, 1)));
      expect((await sql<{ version: string }>(appUrl, 'SELECT version FROM schema_migrations ORDER BY 1')).map((r) => r.version)).toEqual(['001']);
    });
  });

  it('redis-snapshot and redis-restore: plans leave Redis running with the same pid, the real runs show the planned steps; an unknown service is refused naming the field', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const pid = await redisPid();
      const snap = await plan(client, taskQueue, 'redis-snapshot', { service: 'cache' });
      expect(snap.refused).toBeUndefined();
      expect(await readdir(path.join(root, 'snapshots')).catch(() => [])).toEqual([]);
      expect(stepsOf(snap)).toEqual(stepsOf(await execute(client, taskQueue, 'redis-snapshot', { service: 'cache' })));

      const restore = await plan(client, taskQueue, 'redis-restore', { service: 'cache' });
      expect(restore.refused).toBeUndefined();
      const approve = restore.steps.find((s) => s.id === 'approve-restore')!;
      expect(approve.approval).toMatchObject({ approvers: ['alice', 'bob'], destructive: true, confirmPhrase: 'RESTORE' });
      expect(restore.stoppedAt?.activity).toMatch(/^serviceAction stop cache|^wait/);
      expect(await redisPid()).toBe(pid);
      expect(stepsOf(restore)).toEqual(stepsOf(await execute(client, taskQueue, 'redis-restore', { service: 'cache' }, 1)));
      expect(await redisPid()).not.toBe(pid);

      const unknown = await plan(client, taskQueue, 'redis-restore', { service: 'nosuch' });
      expect(unknown.refused?.message).toMatch(/service.*nosuch|nosuch.*service/);
    });
  });
});
