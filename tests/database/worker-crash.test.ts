import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbRestoreResult } from '../../common/database/types.js';
import { approveUpdate, progressQuery } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { testClient, uniqueQueue, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { spawnWorker, type WorkerProcess } from '../fixtures/worker-process.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { pgConfigService, sql, tableDigest, waitForPending } from './helpers.js';


let pgs: PgServer;
let appUrl: string;
let repo: string;
let loaded: LoadedConfig;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  pgs = await startPostgres({ settings: { autovacuum: 'off' } });
  appUrl = await pgs.createDatabase('app');
  // Big enough that pg_restore is still running when the worker is killed.
  await sql(appUrl, `CREATE TABLE events AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 300000) g`);
  await sql(appUrl, `ALTER TABLE events ADD PRIMARY KEY (id)`);
  repo = await mkdtemp(path.join(tmpdir(), 'runbook-crash-'));
  loaded = await writeConfig({
    environment: 'crashtest',
    services: [pgConfigService(pgs.url)],
    databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: { backups: { repository: repo, verifyTables: { app: ['events'] } } },
  });
  await withWorker(loaded, ({ client, taskQueue }) =>
    client.workflow.execute('db-backup', { taskQueue, workflowId: `crash-backup-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice' }] }),
  );
});

afterAll(async () => {
  for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  await pgs?.stop();
  await rm(repo, { recursive: true, force: true });
});

describe('a worker killed with SIGKILL during db-restore', () => {
  it('a new worker finishes the run; the database is replaced exactly once', async () => {
    const original = await tableDigest(appUrl, 'events');
    await sql(appUrl, 'DELETE FROM events WHERE id > 1000');
    const taskQueue = uniqueQueue('db-crash');
    const first = await spawnWorker(loaded.path, taskQueue);
    workers.push(first);
    const client = await testClient();
    const handle = await client.workflow.start('db-restore', {
      taskQueue,
      workflowId: `db-restore-crash-${Date.now()}`,
      args: [{ database: 'app', replace: true, requestedBy: 'alice' }],
    });
    let step: string | undefined;
    for (let i = 0; i < 600 && step !== 'restore'; i++) {
      step = (await handle.query(progressQuery)).currentStep;
      if (step !== 'restore') await sleep(25);
    }
    expect(step).toBe('restore');
    first.child.kill('SIGKILL');
    expect(await first.exited).toBeNull();

    const second = await spawnWorker(loaded.path, taskQueue);
    workers.push(second);
    await waitForPending(handle, 60_000);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'REPLACE', step: 'approve-replace' }] });
    const r = (await handle.result()) as DbRestoreResult;
    expect(r.counts).toEqual([{ table: 'events', expected: 300000, actual: 300000 }]);
    expect(await tableDigest(appUrl, 'events')).toBe(original);
    const kept = await sql<{ n: string }>(appUrl.replace(/\/app$/, `/${r.keptAs}`), 'SELECT count(*) AS n FROM events');
    expect(kept[0]!.n).toBe('1000');

    // The history: the restore activity ran again on the new worker, the replacement only once.
    const history = await handle.fetchHistory();
    const scheduled = (name: string) =>
      (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === name).length;
    const restoreAttempts = (history.events ?? [])
      .filter((e) => e.activityTaskStartedEventAttributes)
      .map((e) => e.activityTaskStartedEventAttributes!.attempt ?? 1);
    expect(scheduled('swapDatabases')).toBe(1);
    expect(Math.max(...restoreAttempts)).toBeGreaterThanOrEqual(2);
    const leftovers = await sql<{ datname: string }>(appUrl, `SELECT datname FROM pg_database WHERE datname LIKE 'app%' ORDER BY 1`);
    expect(leftovers.map((d) => d.datname)).toEqual(['app', r.keptAs]);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 120_000);
});
