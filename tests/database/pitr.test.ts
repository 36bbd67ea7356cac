import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { WorkflowHandle } from '@temporalio/client';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbBaseBackupResult, PitrRestoreResult, RestoreDrillResult } from '../../common/database/types.js';
import { approveUpdate, pendingApprovalQuery, rejectUpdate } from '../../common/messages.js';
import { RestoreDrillRpoSeconds, RestoreDrillRtoSeconds } from '../../common/search-attributes.js';
import type { LoadedConfig } from '../../lib/config.js';
import { pgCtl } from '../../lib/local/index.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort, startPostgres, type PgServer } from '../fixtures/servers.js';
import { failureText, sql, tableDigest, waitForPending } from './helpers.js';

const FAKE_APP = fileURLToPath(new URL('./fake-app.mjs', import.meta.url));
const isRoot = process.getuid?.() === 0;

let root: string;
let pgs: PgServer;
let appUrl: string;
let appPort: number;
let loaded: LoadedConfig;
let hook: http.Server;
const hookBodies: unknown[] = [];

const appCmd = (action: string) => [process.execPath, FAKE_APP, action, root, String(appPort)];
const count = async (table: string) => Number((await sql<{ n: string }>(appUrl, `SELECT count(*) AS n FROM ${table}`))[0]!.n);
const appUp = async () => (await execa(process.execPath, appCmd('status').slice(1), { reject: false })).exitCode === 0;
const pgUp = async () => {
  const status = pgCtl(pgs, 'status');
  return (await execa(status[0]!, status.slice(1), { reject: false })).exitCode === 0;
};
/** The copies of the live data directory a PITR switch kept beside it. */
const preCopies = async () => (await readdir(path.dirname(pgs.dataDir))).filter((d) => d.startsWith('data.pre-pitr-')).sort();

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'runbook-pitr-'));
  await mkdir(path.join(root, 'wal'));
  if (isRoot) {
    const uid = Number((await execa('id', ['-u', 'postgres'])).stdout);
    const gid = Number((await execa('id', ['-g', 'postgres'])).stdout);
    for (const d of [root, path.join(root, 'wal')]) await chown(d, uid, gid);
  }
  await chmod(root, 0o755);
  pgs = await startPostgres({ settings: { autovacuum: 'off', archive_mode: 'on', archive_command: `cp %p ${root}/wal/%f` } });
  appUrl = await pgs.createDatabase('app');
  appPort = await freePort();
  hook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      hookBodies.push(JSON.parse(body));
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  const ctl = (...args: string[]) => pgCtl(pgs, ...args);
  loaded = await writeConfig({
    environment: 'pitrtest',
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
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: {
      backups: { repository: path.join(root, 'dumps'), verifyTables: { app: ['t1'] } },
      pitr: [{ database: 'app', dataDir: pgs.dataDir, walArchive: path.join(root, 'wal'), baseBackups: path.join(root, 'base'), restoreDir: path.join(root, 'restore'), verifyTables: ['t1', 't2'] }],
      disasterRecovery: { rpoSeconds: 0.001, notifyUrl: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/dr` },
    },
  });
  await execa(process.execPath, appCmd('start').slice(1));
});

afterAll(async () => {
  await execa(process.execPath, appCmd('stop').slice(1)).catch(() => undefined);
  await pgs?.stop();
  hook?.close();
  await rm(root, { recursive: true, force: true });
});

/** Forces the current WAL segment into the archive and waits until it is there. */
async function archiveNow(): Promise<void> {
  const f = (await sql<{ f: string }>(appUrl, 'SELECT pg_walfile_name(pg_switch_wal()) AS f'))[0]!.f;
  for (let i = 0; i < 100 && !existsSync(path.join(root, 'wal', f)); i++) await sleep(100);
  expect(existsSync(path.join(root, 'wal', f))).toBe(true);
}

/** Approves approve-restore and waits until the recovered cluster is live and approve-cleanup is pending. */
async function untilCleanupGate(handle: WorkflowHandle) {
  expect(await waitForPending(handle)).toMatchObject({ step: 'approve-restore', confirmPhrase: 'RESTORE' });
  await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'RESTORE', step: 'approve-restore' }] });
  const pending = await waitForPending(handle, 120_000);
  expect(pending).toMatchObject({ step: 'approve-cleanup', confirmPhrase: 'DELETE', destructive: true });
  return pending;
}

describe('point-in-time recovery on a WAL-archiving cluster', () => {
  let T: string;

  it('db-base-backup takes a pg_basebackup and checks the archiver', async () => {
    await sql(appUrl, 'CREATE TABLE t1 (id int PRIMARY KEY); CREATE TABLE t2 (id int PRIMARY KEY)');
    await sql(appUrl, 'INSERT INTO t1 SELECT generate_series(1, 100); INSERT INTO t2 SELECT generate_series(1, 10)');
    await archiveNow();
    const r = await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `db-base-backup-${Date.now()}`;
      const res = (await client.workflow.execute('db-base-backup', { taskQueue, workflowId, args: [{ database: 'app', requestedBy: 'alice' }] })) as DbBaseBackupResult;
      await recordHistory(client, workflowId, 'db-base-backup');
      return res;
    });
    expect(r.archive.archivedCount).toBeGreaterThan(0);
    expect(r.archive.failedCount).toBe(0);
    expect(r.backup.startLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(existsSync(path.join(root, 'base', r.backup.id, 'data', 'backup_label'))).toBe(true);
  });

  it('refuses a target outside the recoverable window before anything stops', async () => {
    await sql(appUrl, 'INSERT INTO t1 SELECT generate_series(101, 150)');
    await sleep(1100);
    T = (await sql<{ t: Date }>(appUrl, 'SELECT clock_timestamp() AS t'))[0]!.t.toISOString();
    await sleep(1100);
    await sql(appUrl, 'INSERT INTO t1 SELECT generate_series(151, 200)');
    await sql(appUrl, 'DROP TABLE t2');
    await archiveNow();

    await withWorker(loaded, async ({ client, taskQueue }) => {
      for (const [targetTime, why] of [
        [new Date(Date.now() + 3600_000).toISOString(), /is after the last archived WAL .*never silently restores to "latest"; nothing was touched/],
        [new Date(Date.now() - 3600_000).toISOString(), /is before the oldest usable base backup .*nothing was touched/],
      ] as const) {
        const handle = await client.workflow.start('pitr-restore', { taskQueue, workflowId: `pitr-refused-${Date.now()}`, args: [{ database: 'app', targetTime, requestedBy: 'alice' }] });
        expect(failureText(await handle.result().catch((e: unknown) => e))).toMatch(why);
        expect(await handle.query(pendingApprovalQuery)).toBeNull();
      }
    });
    expect((await execa(process.execPath, appCmd('status').slice(1), { reject: false })).exitCode).toBe(0);
    expect(await count('t1')).toBe(200);
  });

  it('pitr-restore waits for approve-restore before stopping anything; a reject leaves the live cluster and the apps as they were', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('pitr-restore', { taskQueue, workflowId: `pitr-reject-${Date.now()}`, args: [{ database: 'app', targetTime: T, requestedBy: 'alice' }] });
      expect(await waitForPending(handle)).toMatchObject({ step: 'approve-restore', confirmPhrase: 'RESTORE', destructive: true });
      expect([await appUp(), await pgUp(), await count('t1')]).toEqual([true, true, 200]);
      await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', step: 'approve-restore', comment: 'wrong target' }] });
      expect(failureText(await handle.result().catch((e: unknown) => e))).toMatch(/rejected by bob: wrong target; nothing was stopped or restored/);
    });
    expect([await appUp(), await pgUp(), await count('t1')]).toEqual([true, true, 200]);
    expect(existsSync(path.join(root, 'restore')) ? await readdir(path.join(root, 'restore')) : []).toEqual([]);
    expect((await readdir(path.dirname(pgs.dataDir))).some((d) => d.startsWith('data.pre-pitr-'))).toBe(false);
  });

  it('pitr-restore to T: exactly the state at T, old data directory removed after the final approval', async () => {
    const r = await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('pitr-restore', { taskQueue, workflowId: `pitr-restore-${Date.now()}`, args: [{ database: 'app', targetTime: T, requestedBy: 'alice' }] });
      await untilCleanupGate(handle);
      // Before the final approval the old data directory is still there.
      expect((await readdir(path.dirname(pgs.dataDir))).some((d) => d.startsWith('data.pre-pitr-'))).toBe(true);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', step: 'approve-cleanup' }] });
      const res = (await handle.result()) as PitrRestoreResult;
      await recordHistory(client, handle.workflowId, 'pitr-restore');
      return res;
    });
    expect(r.ok).toBe(true);
    expect(r.counts).toEqual({ t1: 150, t2: 10 });
    expect(r.oldDataDirRemoved).toBe(true);
    expect(Date.parse(r.recoveredTo!)).toBeLessThanOrEqual(Date.parse(T));
    // The live service now runs the recovered cluster: the rows of T, and the dropped table is back.
    expect(await count('t1')).toBe(150);
    expect(await count('t2')).toBe(10);
    expect((await readdir(path.dirname(pgs.dataDir))).some((d) => d.startsWith('data.pre-pitr-'))).toBe(false);
    expect((await execa(process.execPath, appCmd('status').slice(1), { reject: false })).exitCode).toBe(0);
  }, 180_000);

  it('pitr-restore: a reject of approve-cleanup keeps the old data directory on disk and the recovered cluster running', async () => {
    await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('db-base-backup', { taskQueue, workflowId: `pitr-keep-base-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice' }] }),
    );
    await sleep(1100);
    const atTarget = { t1: await count('t1'), t2: await count('t2'), digest: await tableDigest(appUrl, 't1') };
    const target = (await sql<{ t: Date }>(appUrl, 'SELECT clock_timestamp() AS t'))[0]!.t.toISOString();
    await sleep(1100);
    // Rows after the target: the recovered cluster leaves them behind, only the kept old data directory has them.
    await sql(appUrl, 'INSERT INTO t1 SELECT generate_series(1001, 1020)');
    await archiveNow();
    const copiesBefore = await preCopies();
    let kept: string[] = [];
    const r = await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('pitr-restore', { taskQueue, workflowId: `pitr-keep-${Date.now()}`, args: [{ database: 'app', targetTime: target, requestedBy: 'alice' }] });
      const pending = await untilCleanupGate(handle);
      // While it waits: the recovered cluster serves the rows of the target, the apps run, the old data directory is on disk.
      kept = (await preCopies()).filter((d) => !copiesBefore.includes(d));
      expect(kept).toHaveLength(1);
      expect(pending.summary).toContain(path.join(path.dirname(pgs.dataDir), kept[0]!));
      expect([await appUp(), await pgUp(), await count('t1'), await count('t2')]).toEqual([true, true, atTarget.t1, atTarget.t2]);
      await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', step: 'approve-cleanup', comment: 'keep it for the audit' }] });
      return (await handle.result()) as PitrRestoreResult;
    });
    expect(r).toMatchObject({ ok: true, oldDataDirRemoved: false, counts: { t1: atTarget.t1, t2: atTarget.t2 } });
    expect(r.approvals.map((a) => [a.step, a.decision, a.by])).toEqual([
      ['approve-restore', 'approved', 'bob'],
      ['approve-cleanup', 'rejected', 'bob'],
    ]);
    expect(r.progress.steps.find((s) => s.id === 'cleanup')).toMatchObject({ status: 'skipped', detail: expect.stringMatching(/^kept .*data\.pre-pitr-.* \(rejected\)$/) });
    // After the reject: the old data directory is still a whole cluster on disk...
    expect(r.oldDataDir).toBe(path.join(path.dirname(pgs.dataDir), kept[0]!));
    expect(await preCopies()).toEqual([...copiesBefore, ...kept].sort());
    for (const f of ['PG_VERSION', 'global/pg_control', 'base']) expect(existsSync(path.join(r.oldDataDir!, f)), f).toBe(true);
    // ...and the recovered cluster stays the live one, with exactly the rows of the target.
    expect([await appUp(), await pgUp(), await count('t1'), await count('t2')]).toEqual([true, true, atTarget.t1, atTarget.t2]);
    expect(await tableDigest(appUrl, 't1')).toBe(atTarget.digest);
  }, 180_000);

  it('restore-drill restores both kinds into scratch, measures RTO/RPO, notifies when over the objectives, cleans up', async () => {
    await sql(appUrl, 'INSERT INTO t1 SELECT generate_series(151, 160)');
    const r = await withWorker(loaded, async ({ client, taskQueue }) => {
      await client.workflow.execute('db-backup', { taskQueue, workflowId: `drill-backup-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice' }] });
      await client.workflow.execute('db-base-backup', { taskQueue, workflowId: `drill-base-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice' }] });
      await archiveNow();
      const workflowId = `restore-drill-${Date.now()}`;
      const res = (await client.workflow.execute('restore-drill', { taskQueue, workflowId, args: [{ database: 'app', requestedBy: 'alice' }] })) as RestoreDrillResult;
      await recordHistory(client, workflowId, 'restore-drill');
      // RTO and RPO are search attributes of the run, as measured...
      const described = await client.workflow.getHandle(workflowId).describe();
      expect(described.typedSearchAttributes.get(RestoreDrillRtoSeconds)).toBe(res.rtoSeconds);
      expect(described.typedSearchAttributes.get(RestoreDrillRpoSeconds)).toBe(res.rpoSeconds);
      // ...and a visibility query finds the drill by them (visibility lags: poll).
      const query = `WorkflowId = '${workflowId}' AND RestoreDrillRtoSeconds >= 0 AND RestoreDrillRpoSeconds >= 0`;
      let found: string[] = [];
      for (let i = 0; i < 100 && found.length === 0; i++) {
        if (i > 0) await sleep(100);
        found = [];
        for await (const w of client.workflow.list({ query })) found.push(w.workflowId);
      }
      expect(found).toEqual([workflowId]);
      const missed: string[] = [];
      for await (const w of client.workflow.list({ query: `WorkflowId = '${workflowId}' AND RestoreDrillRtoSeconds > ${res.rtoSeconds}` })) missed.push(w.workflowId);
      expect(missed).toEqual([]);
      return res;
    });
    expect(r.logical?.counts).toEqual([{ table: 't1', expected: 160, actual: 160 }]);
    expect(r.pitr?.counts).toEqual({ t1: 160, t2: 10 });
    expect(r.rtoSeconds).toBeGreaterThan(0);
    expect(r.rpoSeconds).toBeGreaterThan(0);
    expect(r.withinObjectives).toBe(false);
    expect(r.notified).toBe(true);
    expect(hookBodies).toEqual([expect.objectContaining({ subject: 'restore drill of app missed its DR objectives' })]);
    expect(await readdir(path.join(root, 'restore'))).toEqual([]);
    const dbs = await sql<{ datname: string }>(appUrl, `SELECT datname FROM pg_database WHERE datname LIKE 'app_drill_%'`);
    expect(dbs).toEqual([]);
  }, 120_000);
});
