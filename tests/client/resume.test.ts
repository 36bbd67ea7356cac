import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigrator } from '../../activities/database/migrations.js';
import type { DbMigrationRollbackResult } from '../../common/database/types.js';
import { approveUpdate, rejectUpdate } from '../../common/messages.js';
import type { StackStartResult } from '../../common/stack/types.js';
import { createLogger } from '../../lib/logger.js';
import { runbookCli, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort, startPostgres, type PgServer } from '../fixtures/servers.js';
import { failureText, pgConfigService, sql, waitForPending } from '../database/helpers.js';

/**
 * `runbook resume` end to end: a real worker, the run's dev server, a real PostgreSQL and an app
 * whose health the test turns on and off. A run fails at a step for a reason outside the
 * runbook, the cause is fixed, the real CLI resumes it, and the run finishes with each
 * destructive action done once.
 */

const APP = fileURLToPath(new URL('../database/fake-app.mjs', import.meta.url));
let tmp: string;
let pgs: PgServer;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'runbook-resume-'));
  pgs = await startPostgres();
});

afterAll(async () => {
  for (const d of await readdir(tmp).catch(() => [])) {
    for (const f of await readdir(path.join(tmp, d)).catch(() => [])) {
      const m = /^fake-app-(\d+)\.pid$/.exec(f);
      if (m) await execa(process.execPath, [APP, 'stop', path.join(tmp, d), m[1]!, 'gated'], { reject: false });
    }
  }
  await pgs?.stop();
  await rm(tmp, { recursive: true, force: true });
});

/** An app service in its own folder: its driver commands, its health URL, and what it did. */
async function app(name: string) {
  const dir = path.join(tmp, name);
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const cmd = (action: string) => [process.execPath, APP, action, dir, String(port), 'gated'];
  return {
    dir,
    service: { name: 'api', group: 'apps', driver: { type: 'command', start: cmd('start'), stop: cmd('stop'), status: cmd('status') }, probes: [{ type: 'http', url: `http://127.0.0.1:${port}/healthz` }] },
    ready: (on: boolean) => (on ? writeFile(path.join(dir, 'ready'), 'ok') : rm(path.join(dir, 'ready'), { force: true })),
    start: () => execa(process.execPath, cmd('start').slice(1)),
    actions: async () => (existsSync(path.join(dir, 'actions.log')) ? (await readFile(path.join(dir, 'actions.log'), 'utf8')).split('\n').filter(Boolean) : []),
  };
}

const cli = (taskQueue: string) => runbookCli({ RUNBOOK_TASK_QUEUE: taskQueue, RUNBOOK_USER: 'alice' });

/** The reset the server recorded at the start of the resumed run: its reason and who asked. */
async function resetRecord(client: Client, workflowId: string, runId: string) {
  const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  const e = history.events?.find((x) => x.workflowTaskFailedEventAttributes?.cause === temporal.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW);
  return e?.workflowTaskFailedEventAttributes;
}

describe('runbook resume', () => {
  it('stack-start failed at the app health wait: made healthy, resumed from the wait, the app started once; a completed run is refused', async () => {
    const a = await app('stack');
    const loaded = await writeConfig({
      environment: 'resume-stack',
      services: [a.service],
      stack: { groups: [{ name: 'apps', waitTimeoutSeconds: 2 }], pollIntervalSeconds: 0.2 },
      preflight: { ports: [], minDiskGb: 0, minMemoryGb: 0, files: ['needed.env'] },
      approvals: { approvers: { default: ['alice', 'bob'] } },
    }, a.dir);
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `resume-stack-${Date.now()}`;
      const handle = await client.workflow.start('stack-start', { taskQueue, workflowId, args: [{ skipPreflight: true, requestedBy: 'alice' }] });
      const err = await handle.result().catch((e: unknown) => e);
      expect(failureText(err)).toMatch(/not healthy after 2s: api/);
      expect(await a.actions()).toEqual(['start']);

      await a.ready(true);
      const run = cli(taskQueue);
      const dry = await run('resume', workflowId, '--as', 'carol', '--dry-run');
      expect(dry.exitCode, dry.stderr).toBe(0);
      expect(dry.stdout).toMatch(/would resume .*nothing was changed/);
      const r = await run('resume', workflowId, '--as', 'carol');
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/from step Wait for apps to be healthy \(2s\) \(wait-apps\): it failed with not healthy after 2s/);
      expect(r.stdout).toMatch(/runs again \(each checked safe to repeat\):\n\s+waitHealthy: polls the probes/);
      expect(r.stdout).not.toMatch(/serviceAction|fresh approval/);
      const runId = /new run (\S+)/.exec(r.stdout)![1]!;

      const result = (await client.workflow.getHandle(workflowId, runId).result()) as StackStartResult;
      expect(result.ok).toBe(true);
      // The start step is not repeated: the app was started once, by the failed run.
      expect(await a.actions()).toEqual(['start']);
      expect(result.progress.steps.map((s) => `${s.id}:${s.status}`)).toEqual(['plan:succeeded', 'preflight:skipped', 'start-apps:succeeded', 'wait-apps:succeeded', 'health:succeeded']);
      const reset = await resetRecord(client, workflowId, runId);
      expect(reset?.failure?.message).toMatch(/runbook resume by carol: from step wait-apps \(waitHealthy failed/);

      const again = await run('resume', workflowId, '--as', 'carol');
      expect(again.exitCode).toBe(1);
      expect(again.stderr).toMatch(new RegExp(`run ${workflowId} completed at \\S+: only a failed run can be resumed; nothing was changed`));

      // A step that fails on what its activity returned (preflight: a file is missing) runs again whole.
      const preflightId = `resume-preflight-${Date.now()}`;
      const pre = await client.workflow.start('stack-start', { taskQueue, workflowId: preflightId, args: [{ requestedBy: 'alice' }] });
      expect(failureText(await pre.result().catch((e: unknown) => e))).toMatch(/preflight failed, nothing was started: file needed.env: missing/);
      await writeFile(path.join(a.dir, 'needed.env'), 'X=1\n');
      const p = await run('resume', preflightId, '--as', 'carol');
      expect(p.exitCode, p.stderr).toBe(0);
      expect(p.stdout).toMatch(/the first of step preflight, which failed on what its activities returned/);
      expect(p.stdout).toMatch(/preflight: checks ports, files and docker/);
      const second = (await client.workflow.getHandle(preflightId, /new run (\S+)/.exec(p.stdout)![1]!).result()) as StackStartResult;
      expect(second.ok).toBe(true);
      expect(second.progress.steps.find((s) => s.id === 'start-apps')?.detail).toMatch(/already healthy: api/);
      expect(await a.actions()).toEqual(['start']);
    });
  });

  it('db-migration-rollback failed after the down migrations: resumed before its approval, asked again, the down SQL applied once; a running run is refused', async () => {
    const a = await app('rollback');
    const url = await pgs.createDatabase('app');
    const migrations = path.join(a.dir, 'migrations');
    await mkdir(migrations);
    // The down migration leaves a trace outside the migrations: applying it twice would show.
    const files: Record<string, string> = {
      '001_create_policies.up.sql': 'CREATE TABLE policies (id serial PRIMARY KEY, name text NOT NULL);',
      '001_create_policies.down.sql': 'DROP TABLE policies;',
      '002_add_flags.up.sql': 'CREATE TABLE feature_flags (name text PRIMARY KEY);',
      '002_add_flags.down.sql': "DROP TABLE feature_flags; INSERT INTO down_log(version) VALUES ('002');",
    };
    for (const [f, text] of Object.entries(files)) await writeFile(path.join(migrations, f), text);
    await sql(url, 'CREATE TABLE down_log (version text, at timestamptz DEFAULT now())');
    const m = createMigrator({ url, dir: migrations, database: 'app', logger: createLogger({ component: 'test' }, 'warn') });
    await m.up().finally(() => m.close());
    await a.ready(true);
    await a.start();
    const loaded = await writeConfig({
      environment: 'resume-rollback',
      services: [pgConfigService(pgs.url), a.service],
      stack: { groups: [{ name: 'infra', waitTimeoutSeconds: 10 }, { name: 'apps', waitTimeoutSeconds: 10 }], pollIntervalSeconds: 0.2 },
      databases: [{ name: 'app', url, service: 'postgres', migrationsDir: migrations }],
      approvals: { approvers: { default: ['alice', 'bob'] } },
      databaseOps: { backups: { repository: path.join(a.dir, 'backups') } },
    }, a.dir);
    const downLog = async () => (await sql<{ version: string }>(url, 'SELECT version FROM down_log')).map((r) => r.version);
    const backups = async () => readdir(path.join(a.dir, 'backups', 'app')).catch(() => [] as string[]);

    await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `resume-rollback-${Date.now()}`;
      const handle = await client.workflow.start('db-migration-rollback', {
        taskQueue,
        workflowId,
        args: [{ database: 'app', steps: 1, appVersion: 'current', waitTimeoutSeconds: 2, requestedBy: 'alice' }],
      });
      await waitForPending(handle);
      // The app comes back after the rollback but is not healthy yet: the run fails at start-apps.
      await a.ready(false);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'ROLLBACK', step: 'approve-rollback' }] });
      const err = await handle.result().catch((e: unknown) => e);
      expect(failureText(err)).toMatch(/not healthy after 2s: api/);
      expect(await downLog()).toEqual(['002']);
      expect(await a.actions()).toEqual(['start', 'stop', 'start']);
      expect(await backups()).toHaveLength(1);

      await a.ready(true);
      const run = cli(taskQueue);
      const r = await run('resume', workflowId, '--as', 'carol');
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/from step Restart application services \(start-apps\)/);
      expect(r.stdout).toMatch(/moved before the approval request of step approve-rollback/);
      expect(r.stdout).toMatch(/moved before child workflow db-lock--resume-rollback--app/);
      expect(r.stdout).toMatch(/rollbackMigrations: rolls back only the migrations newer than the target/);
      expect(r.stdout).toMatch(/a fresh approval of step approve-rollback is needed/);
      expect(r.stdout).toContain(`runbook approve ${workflowId} --as <name> --confirm ROLLBACK --step approve-rollback`);
      const runId = /new run (\S+)/.exec(r.stdout)![1]!;
      const resumed = client.workflow.getHandle(workflowId, runId);

      // The old approval does not count: the run waits, and nothing is stopped, backed up or rolled back meanwhile.
      const pending = await waitForPending(resumed);
      expect(pending).toMatchObject({ step: 'approve-rollback', confirmPhrase: 'ROLLBACK' });
      const busy = await run('resume', workflowId, '--as', 'carol');
      expect(busy.exitCode).toBe(1);
      expect(busy.stderr).toMatch(new RegExp(`run ${workflowId} is running \\(run ${runId}\\): only a failed run can be resumed`));
      expect(await a.actions()).toEqual(['start', 'stop', 'start']);
      expect(await backups()).toHaveLength(1);

      const ok = await run('approve', workflowId, '--as', 'bob', '--confirm', 'ROLLBACK');
      expect(ok.exitCode, ok.stderr).toBe(0);
      const result = (await resumed.result()) as DbMigrationRollbackResult;
      expect(result.ok).toBe(true);
      expect(result.remaining).toEqual(['001']);
      // The down SQL ran once in all: the resumed rollback step found 002 already rolled back.
      expect(await downLog()).toEqual(['002']);
      expect(result.progress.steps.find((s) => s.id === 'rollback')?.detail).toBe('rolled back (already done)');
      expect(result.approvals.map((x) => `${x.step}:${x.decision}:${x.by}`)).toEqual(['approve-rollback:approved:bob']);
      expect(Date.parse(result.approvals[0]!.at)).toBeGreaterThan(Date.parse(pending.requestedAt) - 1);
      // Behind the fresh approval the apps were stopped and started again, and a new backup taken.
      expect(await a.actions()).toEqual(['start', 'stop', 'start', 'stop', 'start']);
      expect(await backups()).toHaveLength(2);
      expect((await resetRecord(client, workflowId, runId))?.failure?.message).toMatch(/runbook resume by carol: from step start-apps .*approval of approve-rollback to be given again/);
    });
  });

  it('refused: a step that would repeat an unchecked activity, and a run that failed on an answer rather than a step', async () => {
    const a = await app('stop');
    const loaded = await writeConfig({
      environment: 'resume-stop',
      services: [{ ...a.service, driver: { ...a.service.driver, clean: [process.execPath, '-e', 'process.exit(1)'] } }],
      stack: { groups: [{ name: 'apps', waitTimeoutSeconds: 5 }], pollIntervalSeconds: 0.2 },
      approvals: { approvers: { default: ['alice', 'bob'] } },
    }, a.dir);
    await a.start();
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const run = cli(taskQueue);
      // Deleting data is not on the list of activities checked safe to repeat.
      const failedId = `resume-clean-${Date.now()}`;
      const failed = await client.workflow.start('stack-stop', { taskQueue, workflowId: failedId, args: [{ clean: true, requestedBy: 'alice' }] });
      await waitForPending(failed);
      await failed.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', step: 'approve-delete' }] });
      expect(failureText(await failed.result().catch((e: unknown) => e))).toMatch(/exit|code 1|failed/i);
      const r = await run('resume', failedId, '--as', 'carol');
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`run ${failedId} cannot be resumed from step delete-data: it would run cleanServices again, which is not known to be safe to repeat`));
      const { runId } = await failed.describe();
      expect(runId).toBe(failed.firstExecutionRunId);

      // A rejected approval is an answer: nothing to resume.
      const rejectedId = `resume-reject-${Date.now()}`;
      const rejected = await client.workflow.start('stack-stop', { taskQueue, workflowId: rejectedId, args: [{ clean: true, requestedBy: 'alice' }] });
      await waitForPending(rejected);
      await rejected.executeUpdate(rejectUpdate, { args: [{ by: 'bob', comment: 'not today', step: 'approve-delete' }] });
      await rejected.result().catch(() => undefined);
      const n = await run('resume', rejectedId, '--as', 'carol');
      expect(n.exitCode).toBe(1);
      expect(n.stderr).toMatch(/did not fail in a step: step approve-delete rejected by bob .*A resume cannot change an answer: start a new run \(runbook run stack-stop\)/);
    });
  });
});
