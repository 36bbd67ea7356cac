import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbTriageResult, DbVacuumResult } from '../../common/database/types.js';
import { approveUpdate, pendingApprovalQuery, rejectUpdate } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { failureText, pgConfigService, sql, waitForPending } from './helpers.js';

let pgs: PgServer;
let appUrl: string;
const config = (lock: Record<string, unknown>) => ({
  environment: 'mainttest',
  services: [pgConfigService(pgs.url)],
  databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
  approvals: { approvers: { default: ['alice', 'bob'] } },
  databaseOps: { lock, vacuum: { deadTuplesThreshold: 1000, deadRatioThreshold: 0.5 } },
});
let loaded: LoadedConfig;
let waiting: LoadedConfig;

beforeAll(async () => {
  pgs = await startPostgres({ settings: { autovacuum: 'off', shared_preload_libraries: 'pg_stat_statements', max_connections: '20' } });
  appUrl = await pgs.createDatabase('app');
  loaded = await writeConfig(config({ mode: 'fail' }));
  waiting = await writeConfig(config({ mode: 'wait', pollSeconds: 0.5, waitTimeoutSeconds: 60 }));
});

afterAll(async () => {
  await pgs?.stop();
});

async function bloat(): Promise<void> {
  await sql(appUrl, 'DROP TABLE IF EXISTS "Bloated Table"; DROP TABLE IF EXISTS clean');
  await sql(appUrl, `CREATE TABLE "Bloated Table" (id int PRIMARY KEY, payload text)`);
  await sql(appUrl, `INSERT INTO "Bloated Table" SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g`);
  await sql(appUrl, `CREATE TABLE clean (id int PRIMARY KEY)`);
  await sql(appUrl, `INSERT INTO clean SELECT generate_series(1, 100)`);
  await sql(appUrl, `DELETE FROM "Bloated Table" WHERE id > 5000`);
  await sql(appUrl, `SELECT pg_stat_force_next_flush()`);
}

const sizeOf = async (t: string) => Number((await sql<{ s: string }>(appUrl, `SELECT pg_total_relation_size($1) AS s`, [t]))[0]!.s);

describe('db-vacuum (Fulcrum 4, AlphaPulse 3.4)', () => {
  it('reports bloat, VACUUM ANALYZEs only tables over the threshold (quoted identifiers), reindexes concurrently', async () => {
    await bloat();
    const r = await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `db-vacuum-${Date.now()}`;
      const res = (await client.workflow.execute('db-vacuum', { taskQueue, workflowId, args: [{ database: 'app', reindex: true, requestedBy: 'alice' }] })) as DbVacuumResult;
      await recordHistory(client, workflowId, 'db-vacuum');
      return res;
    });
    const before = r.before.find((t) => t.table === 'Bloated Table')!;
    expect(before.deadTuples).toBe(15000);
    expect(before.lastVacuum).toBeNull();
    expect(r.vacuumed).toEqual(['Bloated Table']);
    expect(r.reindexed).toEqual(['Bloated Table']);
    expect(r.vacuumedFull).toEqual([]);
    const after = r.after.find((t) => t.table === 'Bloated Table')!;
    expect(after.deadTuples).toBe(0);
    expect(after.lastVacuum).not.toBeNull();
    expect(r.after.find((t) => t.table === 'clean')?.lastVacuum).toBeNull();
  });

  it('VACUUM FULL waits for approval and the database lock; a second one waits its turn (lock mode wait)', async () => {
    await bloat();
    const sizeBefore = await sizeOf('"Bloated Table"');
    await withWorker(waiting, async ({ client, taskQueue }) => {
      const first = await client.workflow.start('db-vacuum', {
        taskQueue,
        workflowId: `db-vacuum-full-${Date.now()}`,
        args: [{ database: 'app', full: true, requestedBy: 'alice' }],
      });
      const pending = await waitForPending(first);
      expect(pending).toMatchObject({ step: 'approve-full', confirmPhrase: 'VACUUM FULL', destructive: true });
      expect(pending.summary).toMatch(/VACUUM FULL Bloated Table in app: .*ACCESS EXCLUSIVE lock/);
      const second = await client.workflow.start('db-vacuum', {
        taskQueue,
        workflowId: `db-vacuum-full-2-${Date.now()}`,
        args: [{ database: 'app', full: true, tables: ['clean'], requestedBy: 'alice' }],
      });
      await sleep(2000);
      // Still waiting for the lock, so not yet asking anyone.
      expect(await second.query(pendingApprovalQuery)).toBeNull();
      await first.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'VACUUM FULL', step: 'approve-full' }] });
      const r = (await first.result()) as DbVacuumResult;
      await recordHistory(client, first.workflowId, 'db-vacuum-full');
      expect(r.vacuumedFull).toEqual(['Bloated Table']);
      // The first released the lock: the second now asks for its own approval.
      expect((await waitForPending(second)).step).toBe('approve-full');
      await second.executeUpdate(rejectUpdate, { args: [{ by: 'bob', comment: 'one is enough', step: 'approve-full' }] });
      expect(failureText(await second.result().catch((e: unknown) => e))).toMatch(/rejected by bob: one is enough; no VACUUM FULL was run/);
    });
    expect(await sizeOf('"Bloated Table"')).toBeLessThan(sizeBefore / 2);
  });
});

describe('db-triage (Fulcrum 3.2, AlphaPulse 2.1)', () => {
  it('reports connections, long and blocked queries, top statements; terminates idle connections and a blocker after approvals', async () => {
    await sql(appUrl, 'CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, balance int)');
    await sql(appUrl, 'INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100) g ON CONFLICT DO NOTHING');
    const idle: pg.Client[] = [];
    for (let i = 0; i < 14; i++) {
      const c = new pg.Client({ connectionString: appUrl });
      c.on('error', () => undefined);
      await c.connect();
      await c.query('SELECT 1');
      idle.push(c);
    }
    const blocker = new pg.Client({ connectionString: appUrl });
    blocker.on('error', () => undefined);
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE');
    const blockerPid = (await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const waiter = new pg.Client({ connectionString: appUrl });
    waiter.on('error', () => undefined);
    await waiter.connect();
    const waiterPid = (await waiter.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const blockedQuery = waiter.query('SELECT count(*) FROM accounts');
    await sleep(1500);

    const r = await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('db-triage', {
        taskQueue,
        workflowId: `db-triage-${Date.now()}`,
        args: [{ database: 'app', longQuerySeconds: 1, terminateIdleOlderThanMinutes: 0.01, terminatePids: [blockerPid], requestedBy: 'alice' }],
      });
      const idleApproval = await waitForPending(handle);
      expect(idleApproval.step).toBe('approve-idle');
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', step: 'approve-idle' }] });
      const pidApproval = await waitForPending(handle);
      expect(pidApproval).toMatchObject({ step: 'approve-pids' });
      expect(pidApproval.summary).toContain(`Terminate PID ${blockerPid}`);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', step: 'approve-pids' }] });
      const res = (await handle.result()) as DbTriageResult;
      await recordHistory(client, handle.workflowId, 'db-triage');
      return res;
    });
    const { report } = r;
    expect(report.maxConnections).toBe(20);
    expect(report.connectionsPercent).toBeGreaterThan(80);
    expect(r.ok).toBe(false);
    expect(report.findings).toEqual(expect.arrayContaining([expect.objectContaining({ severity: 'P1', check: 'connections' })]));
    expect(report.blocked).toEqual([expect.objectContaining({ blockedPid: waiterPid, blockingPid: blockerPid })]);
    expect(report.longRunning.map((q) => q.pid)).toContain(waiterPid);
    expect(report.topStatements?.length).toBeGreaterThan(0);
    expect(report.idleOlderThan.length).toBeGreaterThanOrEqual(14);
    const terminatedIdle = r.actions.filter((a) => a.action === 'terminate' && a.pid !== blockerPid && a.done);
    expect(terminatedIdle.length).toBeGreaterThanOrEqual(14);
    expect(r.actions).toContainEqual({ pid: blockerPid, action: 'terminate', done: true });
    // The blocker is gone, so the waiting query finished.
    expect((await blockedQuery).rows[0]).toEqual({ count: '100' });
    const left = await sql<{ n: string }>(appUrl, `SELECT count(*) AS n FROM pg_stat_activity WHERE pid = ANY($1::int[])`, [[blockerPid]]);
    expect(left[0]!.n).toBe('0');
    await waiter.end();
    for (const c of [...idle, blocker]) await c.end().catch(() => undefined);
  });
});
