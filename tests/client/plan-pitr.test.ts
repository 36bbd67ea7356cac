import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approveUpdate } from '../../common/messages.js';
import type { RunPlan } from '../../common/plan.js';
import type { ProcedureId } from '../../common/procedures.js';
import type { RunProgress } from '../../common/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { pgCtl } from '../../lib/local/index.js';
import { planRun } from '../../client/plan.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort, startPostgres, type PgServer } from '../fixtures/servers.js';
import { sql, waitForPending } from '../database/helpers.js';

/**
 * `runbook plan` for point-in-time recovery on a real WAL-archiving PostgreSQL: db-base-backup,
 * restore-drill and pitr-restore plans change nothing; a target outside the recoverable window
 * is refused by the plan, naming targetTime; the real pitr-restore executes the planned steps.
 */

const FAKE_APP = fileURLToPath(new URL('../database/fake-app.mjs', import.meta.url));

let root: string;
let pgs: PgServer;
let appUrl: string;
let appPort: number;
let loaded: LoadedConfig;

const appCmd = (action: string) => [process.execPath, FAKE_APP, action, root, String(appPort)];
const count = async (table: string) => Number((await sql<{ n: string }>(appUrl, `SELECT count(*) AS n FROM ${table}`))[0]!.n);
const appUp = async () => (await execa(process.execPath, appCmd('status').slice(1), { reject: false })).exitCode === 0;
const pgUp = async () => {
  const status = pgCtl(pgs, 'status');
  return (await execa(status[0]!, status.slice(1), { reject: false })).exitCode === 0;
};

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'runbook-plan-pitr-'));
  await mkdir(path.join(root, 'wal'));
  if (process.getuid?.() === 0) {
    const uid = Number((await execa('id', ['-u', 'postgres'])).stdout);
    const gid = Number((await execa('id', ['-g', 'postgres'])).stdout);
    for (const d of [root, path.join(root, 'wal')]) await chown(d, uid, gid);
  }
  await chmod(root, 0o755);
  pgs = await startPostgres({ settings: { autovacuum: 'off', archive_mode: 'on', archive_command: `cp %p ${root}/wal/%f` } });
  appUrl = await pgs.createDatabase('app');
  appPort = await freePort();
  const ctl = (...args: string[]) => pgCtl(pgs, ...args);
  loaded = await writeConfig({
    environment: 'plan-pitr',
    services: [
      {
        name: 'postgres',
        group: 'infra',
        driver: { type: 'command', cwd: '/', start: ctl('-l', path.join(root, 'pg.log'), '-w', 'start'), stop: ctl('-m', 'fast', '-w', 'stop'), status: ctl('status') },
        probes: [{ type: 'postgres', url: appUrl }],
      },
      { name: 'api', group: 'apps', driver: { type: 'command', start: appCmd('start'), stop: appCmd('stop'), status: appCmd('status') }, probes: [{ type: 'http', url: `http://127.0.0.1:${appPort}/` }] },
    ],
    stack: { groups: [{ name: 'infra', waitTimeoutSeconds: 60 }, { name: 'apps', waitTimeoutSeconds: 30 }], pollIntervalSeconds: 0.2 },
    databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
    approvals: { approvers: { default: ['alice', 'bob'] }, steps: { 'pitr-restore': { 'approve-cleanup': { approvers: ['carol', 'dave'] } } } },
    databaseOps: {
      backups: { repository: path.join(root, 'dumps'), verifyTables: { app: ['t1'] } },
      pitr: [{ database: 'app', dataDir: pgs.dataDir, walArchive: path.join(root, 'wal'), baseBackups: path.join(root, 'base'), restoreDir: path.join(root, 'restore'), verifyTables: ['t1'] }],
    },
  });
  await execa(process.execPath, appCmd('start').slice(1));
  await sql(appUrl, 'CREATE TABLE t1 (id int PRIMARY KEY); INSERT INTO t1 SELECT generate_series(1, 100)');
  await archiveNow();
});

afterAll(async () => {
  await execa(process.execPath, appCmd('stop').slice(1)).catch(() => undefined);
  await pgs?.stop();
  await rm(root, { recursive: true, force: true });
});

async function archiveNow(): Promise<void> {
  const f = (await sql<{ f: string }>(appUrl, 'SELECT pg_walfile_name(pg_switch_wal()) AS f'))[0]!.f;
  for (let i = 0; i < 100 && !existsSync(path.join(root, 'wal', f)); i++) await sleep(100);
}

function plan(client: Client, taskQueue: string, procedure: ProcedureId, input: Record<string, unknown>): Promise<RunPlan> {
  return planRun({ client, taskQueue, procedure, input: { requestedBy: 'alice', ...input }, requestedBy: 'alice', environment: 'plan-pitr' });
}

const stepsOf = (x: RunPlan | RunProgress) => x.steps.map((s) => `${s.id}: ${s.title}`);
const dirs = async (d: string) => (existsSync(d) ? (await readdir(d)).sort() : []);

describe('runbook plan: point-in-time recovery', () => {
  it('db-base-backup and restore-drill: the plans take and restore nothing; the real runs execute the planned steps', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const base = await plan(client, taskQueue, 'db-base-backup', { database: 'app' });
      expect(base.refused).toBeUndefined();
      expect(base.stoppedAt?.activity).toMatch(/^baseBackup app/);
      expect(await dirs(path.join(root, 'base'))).toEqual([]);
      const real = (await client.workflow.execute('db-base-backup', { taskQueue, workflowId: `base-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice' }] })) as { progress: RunProgress };
      expect(stepsOf(base)).toEqual(stepsOf(real.progress));

      // The drill restores the latest logical backup too: take one, so the real drill has both sources.
      await client.workflow.execute('db-backup', { taskQueue, workflowId: `backup-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice' }] });
      await archiveNow();
      const drill = await plan(client, taskQueue, 'restore-drill', { database: 'app' });
      expect(drill.refused).toBeUndefined();
      expect(drill.stoppedAt?.activity).toMatch(/^restoreInto app/);
      expect(await dirs(path.join(root, 'restore'))).toEqual([]);
      expect(await sql(appUrl, "SELECT datname FROM pg_database WHERE datname LIKE 'app_drill_%'")).toEqual([]);
      const realDrill = (await client.workflow.execute('restore-drill', { taskQueue, workflowId: `drill-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice' }] })) as { progress: RunProgress };
      expect(realDrill.progress.steps.map((s) => [s.id, s.status])).toEqual([
        ['plan', 'succeeded'],
        ['logical', 'succeeded'],
        ['pitr', 'succeeded'],
        ['cleanup', 'succeeded'],
        ['objectives', 'succeeded'],
      ]);
      expect(stepsOf(drill)).toEqual(stepsOf(realDrill.progress));
    });
  }, 120_000);

  it('pitr-restore: a target outside the window is refused naming targetTime; one inside lists both approvals and who gives them, nothing stops; the real recovery executes the planned steps', async () => {
    await sql(appUrl, 'INSERT INTO t1 SELECT generate_series(101, 150)');
    await sleep(1100);
    const T = (await sql<{ t: Date }>(appUrl, 'SELECT clock_timestamp() AS t'))[0]!.t.toISOString();
    await sleep(1100);
    await sql(appUrl, 'INSERT INTO t1 SELECT generate_series(151, 200)');
    await archiveNow();

    await withWorker(loaded, async ({ client, taskQueue }) => {
      const future = await plan(client, taskQueue, 'pitr-restore', { database: 'app', targetTime: new Date(Date.now() + 3600_000).toISOString() });
      expect(future.refused?.message).toMatch(/^targetTime .* is after the last archived WAL/);
      const past = await plan(client, taskQueue, 'pitr-restore', { database: 'app', targetTime: new Date(Date.now() - 3600_000).toISOString() });
      expect(past.refused?.message).toMatch(/^targetTime .* is before the oldest usable base backup/);

      const p = await plan(client, taskQueue, 'pitr-restore', { database: 'app', targetTime: T });
      expect(p.refused).toBeUndefined();
      expect(p.steps.find((s) => s.id === 'window')?.kind).toBe('checked');
      expect(p.steps.find((s) => s.id === 'approve-restore')).toMatchObject({
        kind: 'approval',
        approval: { approvers: ['alice', 'bob'], destructive: true, confirmPhrase: 'RESTORE' },
      });
      expect(p.steps.flatMap((s) => s.touches)).toContain('would take the lock db-lock--plan-pitr--app');
      expect(p.steps.find((s) => s.id === 'approve-cleanup')?.approval?.approvers).toEqual(['carol', 'dave']);
      expect(p.steps.find((s) => s.id === 'stop-apps')).toMatchObject({ kind: 'would-do', detail: 'would run serviceAction stop api' });
      expect([await appUp(), await pgUp(), await count('t1')]).toEqual([true, true, 200]);
      expect(await dirs(path.join(root, 'restore'))).toEqual([]);

      const handle = await client.workflow.start('pitr-restore', { taskQueue, workflowId: `pitr-${Date.now()}`, args: [{ database: 'app', targetTime: T, requestedBy: 'alice' }] });
      expect(await waitForPending(handle)).toMatchObject({ step: 'approve-restore' });
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'RESTORE', step: 'approve-restore' }] });
      const cleanup = await waitForPending(handle, 120_000);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'carol', step: 'approve-cleanup', ...(cleanup.confirmPhrase ? { confirm: cleanup.confirmPhrase } : {}) }] });
      const real = (await handle.result()) as { progress: RunProgress };
      expect(stepsOf(p)).toEqual(stepsOf(real.progress));
      expect(await count('t1')).toBe(150);
    });
  }, 180_000);
});
