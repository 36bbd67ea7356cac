import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PitrRestoreResult } from '../../common/database/types.js';
import { approveUpdate } from '../../common/messages.js';
import { pgCtl } from '../../lib/local/index.js';
import { runbookCli, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort, startPostgres, type PgServer } from '../fixtures/servers.js';
import { failureText, sql, tableDigest, waitForPending } from '../database/helpers.js';

/**
 * `runbook resume` of a pitr-restore whose WAL replay failed for a reason outside the runbook: a
 * WAL segment the recovery needs was moved out of the archive. Put back, the real CLI resumes
 * the run, which recovers to the target with the live data directory moved aside once.
 */

const APP = fileURLToPath(new URL('../database/fake-app.mjs', import.meta.url));
const isRoot = process.getuid?.() === 0;
let root: string;
let pgs: PgServer;
let appUrl: string;
let appPort: number;

const appCmd = (action: string) => [process.execPath, APP, action, root, String(appPort)];
const lines = async (file: string) => (existsSync(file) ? (await readFile(file, 'utf8')).split('\n').filter(Boolean) : []);
const preCopies = async () => (await readdir(path.dirname(pgs.dataDir))).filter((d) => d.startsWith('data.pre-pitr-'));

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'runbook-resume-pitr-'));
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
  await execa(process.execPath, appCmd('start').slice(1));
});

afterAll(async () => {
  await execa(process.execPath, appCmd('stop').slice(1)).catch(() => undefined);
  await pgs?.stop();
  await rm(root, { recursive: true, force: true });
});

/** Forces the current WAL segment into the archive, waits until it is there, and names it. */
async function archiveNow(): Promise<string> {
  const f = (await sql<{ f: string }>(appUrl, 'SELECT pg_walfile_name(pg_switch_wal()) AS f'))[0]!.f;
  for (let i = 0; i < 100 && !existsSync(path.join(root, 'wal', f)); i++) await sleep(100);
  expect(existsSync(path.join(root, 'wal', f))).toBe(true);
  return f;
}

/** The activities of `type` a run scheduled, with the attempt each ran at. */
async function scheduled(client: Client, workflowId: string, runId: string, type: string): Promise<number> {
  const events = (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
  return events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === type).length;
}

describe('runbook resume of a pitr-restore', () => {
  it('failed at the WAL replay (a segment moved out of the archive): put back, resumed before its approval, recovered to the target; the live data directory moved aside once, the database stopped once', async () => {
    const pgLog = path.join(root, 'pg-actions.log');
    const ctl = (...args: string[]) => pgCtl(pgs, ...args);
    // The database service's stop, counted: it is the stop that puts the live cluster out of service.
    const countedStop = ['/bin/sh', '-c', `echo stop >> ${pgLog} && exec "$0" "$@"`, ...ctl('-m', 'fast', '-w', 'stop')];
    const loaded = await writeConfig({
      environment: 'resume-pitr',
      services: [
        {
          name: 'postgres',
          group: 'infra',
          driver: { type: 'command', cwd: '/', start: ctl('-l', path.join(root, 'pg.log'), '-w', 'start'), stop: countedStop, status: ctl('status') },
          probes: [{ type: 'postgres', url: appUrl }],
        },
        { name: 'api', group: 'apps', driver: { type: 'command', start: appCmd('start'), stop: appCmd('stop'), status: appCmd('status') }, probes: [{ type: 'http', url: `http://127.0.0.1:${appPort}/` }] },
      ],
      stack: { groups: [{ name: 'infra', waitTimeoutSeconds: 60 }, { name: 'apps', waitTimeoutSeconds: 30 }], pollIntervalSeconds: 0.2 },
      databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
      approvals: { approvers: { default: ['alice', 'bob'] } },
      databaseOps: {
        pitr: [{ database: 'app', dataDir: pgs.dataDir, walArchive: path.join(root, 'wal'), baseBackups: path.join(root, 'base'), restoreDir: path.join(root, 'restore'), verifyTables: ['t1'] }],
      },
    });

    await sql(appUrl, 'CREATE TABLE t1 (id int PRIMARY KEY, note text)');
    await sql(appUrl, "INSERT INTO t1 SELECT g, 'before the base backup' FROM generate_series(1, 100) g");
    await archiveNow();

    await withWorker(loaded, async ({ client, taskQueue }) => {
      await client.workflow.execute('db-base-backup', { taskQueue, workflowId: `resume-pitr-base-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice' }] });
      // Rows only the WAL after the base backup holds, then the moment to recover to, then the damage.
      await sql(appUrl, "INSERT INTO t1 SELECT g, 'from the WAL' FROM generate_series(101, 150) g");
      const needed = await archiveNow();
      await sleep(1100);
      const target = (await sql<{ t: Date }>(appUrl, 'SELECT clock_timestamp() AS t'))[0]!.t.toISOString();
      const digestAtTarget = await tableDigest(appUrl, 't1');
      await sleep(1100);
      await sql(appUrl, "UPDATE t1 SET note = 'damaged'; INSERT INTO t1 SELECT g, 'after the target' FROM generate_series(151, 200) g");
      await archiveNow();
      // The outside cause: someone moves a segment the replay needs out of the archive.
      const aside = path.join(root, `${needed}.moved`);
      await rename(path.join(root, 'wal', needed), aside);

      const workflowId = `resume-pitr-${Date.now()}`;
      const handle = await client.workflow.start('pitr-restore', { taskQueue, workflowId, args: [{ database: 'app', targetTime: target, requestedBy: 'alice', waitTimeoutSeconds: 60 }] });
      await waitForPending(handle);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'RESTORE', step: 'approve-restore' }] });
      const err = await handle.result().catch((e: unknown) => e);
      expect(failureText(err)).toMatch(
        /the recovering server stopped before the target: the archive \(\S+\/wal\) lacks a WAL segment between the base backup and the target; put it back, then resume this run \(runbook resume\): [\s\S]*recovery ended before configured recovery target was reached/,
      );
      // The failed run never touched the live cluster and brought the app back on it.
      expect(await lines(path.join(root, 'actions.log'))).toEqual(['start', 'stop', 'start']);
      expect(await lines(pgLog)).toEqual([]);
      expect(await preCopies()).toEqual([]);
      expect(await sql(appUrl, 'SELECT count(*)::int AS n FROM t1')).toEqual([{ n: 200 }]);
      expect(await readdir(path.join(root, 'restore')).catch(() => [])).toEqual([]);

      await rename(aside, path.join(root, 'wal', needed));
      const run = runbookCli({ RUNBOOK_TASK_QUEUE: taskQueue, RUNBOOK_USER: 'alice' });
      const r = await run('resume', workflowId, '--as', 'carol');
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/from step Replay WAL to the target and promote \(recover\): it failed with /);
      expect(r.stdout).toMatch(/moved before the approval request of step approve-restore/);
      expect(r.stdout).toMatch(/moved before child workflow db-lock--resume-pitr--app/);
      expect(r.stdout).toMatch(/startRecovery: copies the base backup into a scratch data directory/);
      expect(r.stdout).toMatch(/waitRecovered: polls the scratch cluster/);
      expect(r.stdout).toMatch(/stopRecovered: stops and removes only the scratch cluster/);
      expect(r.stdout).toContain(`runbook approve ${workflowId} --as <name> --confirm RESTORE --step approve-restore`);
      const runId = /new run (\S+)/.exec(r.stdout)![1]!;
      const resumed = client.workflow.getHandle(workflowId, runId);

      // A restore is destructive: the resumed run asks again, and stops nothing until answered.
      expect(await waitForPending(resumed)).toMatchObject({ step: 'approve-restore', confirmPhrase: 'RESTORE' });
      expect(await lines(path.join(root, 'actions.log'))).toEqual(['start', 'stop', 'start']);
      const ok = await run('approve', workflowId, '--as', 'bob', '--confirm', 'RESTORE');
      expect(ok.exitCode, ok.stderr).toBe(0);
      expect(await waitForPending(resumed, 120_000)).toMatchObject({ step: 'approve-cleanup', confirmPhrase: 'DELETE' });
      expect(await preCopies()).toHaveLength(1);
      await resumed.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', step: 'approve-cleanup' }] });
      const result = (await resumed.result()) as PitrRestoreResult;
      expect(result.ok).toBe(true);
      expect(result.counts).toEqual({ t1: 150 });
      expect(Date.parse(result.recoveredTo!)).toBeLessThanOrEqual(Date.parse(target));
      // The live service runs the recovered cluster: the table exactly as it was at the target.
      expect(await tableDigest(appUrl, 't1')).toBe(digestAtTarget);

      // Each destructive action once: the database stopped and its data directory moved aside by
      // the resumed run only. The app was stopped once per approved attempt: the failed run had
      // brought it back on the untouched cluster, so the resumed run stopped it again.
      expect(await lines(pgLog)).toEqual(['stop']);
      expect(await scheduled(client, workflowId, handle.firstExecutionRunId, 'switchDataDir')).toBe(0);
      expect(await scheduled(client, workflowId, runId, 'switchDataDir')).toBe(1);
      expect(await lines(path.join(root, 'actions.log'))).toEqual(['start', 'stop', 'start', 'stop', 'start']);
      expect(result.oldDataDirRemoved).toBe(true);
      expect(await preCopies()).toEqual([]);
      expect(result.approvals.map((a) => `${a.step}:${a.by}`)).toEqual(['approve-restore:bob', 'approve-cleanup:bob']);
    });
  }, 180_000);
});
