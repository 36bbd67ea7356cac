import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigrator } from '../../activities/database/migrations.js';
import { pauseUpdate, promoteUpdate, resumeUpdate, rollbackUpdate } from '../../common/delivery/messages.js';
import type { BlueGreenResult, CanaryDeployResult, ReleaseResult } from '../../common/delivery/types.js';
import { approveUpdate, progressQuery, rejectUpdate } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { get, measureSplit, startDeliveryBed, startLoad, type DeliveryBed } from '../fixtures/delivery-traffic.js';
import { recordHistory, runbookCli, testClient, uniqueQueue, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { killWorkers, spawnWorker } from '../fixtures/worker-process.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { deliveryConfig, startWebhook, waitForApproval, waitForStatus, warmCanary } from './helpers.js';

/**
 * The traffic-moving runbooks against one test bed (real nginx, real Prometheus, stable
 * and canary demo services): blue/green first (it leaves green active), then the canary
 * runs, then a release with its migration. One bed and one bundle for all of them.
 */

let bed: DeliveryBed;
let loaded: LoadedConfig;
let webhook: Awaited<ReturnType<typeof startWebhook>>;
let env: NodeJS.ProcessEnv;
let postgres: PgServer;
let dbUrl: string;
let migrationsDir: string;

beforeAll(async () => {
  [bed, postgres] = await Promise.all([startDeliveryBed(), startPostgres()]);
  webhook = await startWebhook();
  env = { ...process.env, DELIVERY_WEBHOOK: webhook.url };
  dbUrl = await postgres.createDatabase('fulcrum');
  migrationsDir = await mkdtemp(path.join(tmpdir(), 'runbook-release-migrations-'));
  for (const f of ['001_create_policies', '002_add_feature_flags']) {
    for (const d of ['up', 'down']) await copyFile(path.resolve('demo/migrations', `${f}.${d}.sql`), path.join(migrationsDir, `${f}.${d}.sql`));
  }
  // What ships with the release: a new column the new version writes.
  await writeFile(path.join(migrationsDir, '003_add_rollout_group.up.sql'), "ALTER TABLE policies ADD COLUMN rollout_group text NOT NULL DEFAULT 'a';\n");
  await writeFile(path.join(migrationsDir, '003_add_rollout_group.down.sql'), 'ALTER TABLE policies DROP COLUMN rollout_group;\n');
  const m = createMigrator({ url: dbUrl, dir: migrationsDir, database: 'fulcrum', logger: createLogger({ component: 'test' }, 'warn') });
  await m.up({ to: '002' });
  await m.close();
  loaded = await writeConfig(deliveryConfig(bed, { databases: [{ name: 'fulcrum', url: dbUrl, migrationsDir }] }));
}, 120_000);


const runbook = runbookCli({ PATH: process.env.PATH, RUNBOOK_USER: 'alice' });


afterAll(async () => {
  killWorkers();
  await bed?.stop();
  await webhook?.stop();
  await postgres?.stop();
  if (migrationsDir) await rm(migrationsDir, { recursive: true, force: true });
});

async function failureOf(p: Promise<unknown>): Promise<{ message: string; result: CanaryDeployResult }> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const cause = (err as WorkflowFailedError).cause;
  expect(cause).toBeInstanceOf(ApplicationFailure);
  expect((cause as ApplicationFailure).type).toBe('CanaryRolledBack');
  return { message: cause!.message, result: (cause as ApplicationFailure).details![0] as CanaryDeployResult };
}

async function withDb<T>(fn: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  try {
    return await fn(db);
  } finally {
    await db.end();
  }
}

async function appliedVersions(): Promise<string[]> {
  return (await withDb((db) => db.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version'))).rows.map((r) => r.version);
}

async function columnExists(): Promise<boolean> {
  const r = await withDb((db) => db.query("SELECT 1 FROM information_schema.columns WHERE table_name = 'policies' AND column_name = 'rollout_group'"));
  return r.rowCount === 1;
}

describe('blue-green-switch through real nginx (blue = 1.0.0, green = 2.0.0)', () => {
  it('dryRun shows what would change and changes nothing', async () => {
    const result = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('blue-green-switch', {
        taskQueue,
        workflowId: `bg-dry-${Date.now()}`,
        args: [{ router: 'api', to: 'green', dryRun: true, requestedBy: 'alice' }],
      }),
    ) as BlueGreenResult;
    expect(result).toMatchObject({ ok: true, dryRun: true, from: 'blue', to: 'green', switched: false });
    expect(result.plan.join('\n')).toMatch(/upstream api: 0 % .*, 100 % .*\n.*nginx -p .* -t -q\n.*nginx -p .* -s reload\nkeep blue for 2s/);
    expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '1.0.0': 400 });
  });

  it('the switch waits for approve-switch: blue serves everything meanwhile, and after a reject', async () => {
    const greenPid = bed.canary.pid();
    const err = await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('blue-green-switch', {
        taskQueue,
        workflowId: `bg-reject-${Date.now()}`,
        args: [{ router: 'api', to: 'green', skipAnalysis: true, requestedBy: 'alice' }],
      });
      const pending = await waitForApproval(handle, 'approve-switch');
      expect(pending).toMatchObject({ destructive: true });
      expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '1.0.0': 400 });
      await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', step: 'approve-switch', comment: 'not today' }] });
      return handle.result().catch((e: unknown) => e);
    });
    expect((err as WorkflowFailedError).cause?.message).toMatch(/step approve-switch rejected by bob: not today; nothing was switched/);
    expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '1.0.0': 400 });
    // Green was not scaled down either: the same process still runs, ready for the next attempt.
    expect(bed.canary.running()).toBe(true);
    expect(bed.canary.pid()).toBe(greenPid);
  });

  it('switch to green after the preview check and an approval; rollback switches back at once', async () => {
    // Smoke traffic on the preview color, so it has metrics to check.
    const smoke = startLoad(bed.canary.httpUrl, 30);
    await sleep(2500);
    try {
      await withWorker(loaded, async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('blue-green-switch', {
          taskQueue,
          workflowId: `bg-rollback-${Date.now()}`,
          args: [{ router: 'api', to: 'green', scaleDownDelaySeconds: 120, requestedBy: 'alice' }],
        });
        const early = await handle.executeUpdate(rollbackUpdate, { args: [{ by: 'alice' }] }).catch((e: unknown) => e);
        expect(early).toBeInstanceOf(WorkflowUpdateFailedError);
        expect((early as WorkflowUpdateFailedError).cause?.message).toMatch(/nothing has been switched yet/);
        const pending = await waitForApproval(handle, 'approve-switch');
        expect(pending.summary).toMatch(/from blue to green/);
        const own = await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice', step: 'approve-switch' }] }).catch((e: unknown) => e);
        expect((own as WorkflowUpdateFailedError).cause?.message).toMatch(/two-person rule/);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', step: 'approve-switch' }] });
        for (let i = 0; i < 100; i++) {
          const p = await handle.query(progressQuery);
          if (p.steps.find((s) => s.id === 'keep-old')?.status === 'running') break;
          await sleep(100);
        }
        expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '2.0.0': 400 });
        const started = Date.now();
        await handle.executeUpdate(rollbackUpdate, { args: [{ by: 'alice', reason: 'checkout errors' }] });
        const err = await handle.result().catch((e: unknown) => e);
        expect(Date.now() - started).toBeLessThan(5000);
        expect(err).toBeInstanceOf(WorkflowFailedError);
        const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
        expect(cause.type).toBe('SwitchRolledBack');
        expect(cause.message).toMatch(/rolled back by alice: checkout errors; blue serves all traffic/);
        const result = cause.details![0] as BlueGreenResult;
        expect(result.previewCheck?.analysis?.ok).toBe(true);
      });
    } finally {
      await smoke.stop();
    }
    expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '1.0.0': 400 });
  }, 60_000);

  it('switch to green sticks after the scale-down delay; the preview must be healthy first', async () => {
    await bed.setCanary({ healthy: false });
    const refused = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('blue-green-switch', { taskQueue, workflowId: `bg-unhealthy-${Date.now()}`, args: [{ router: 'api', to: 'green', skipAnalysis: true }] }),
    ).catch((e: unknown) => e);
    expect(((refused as WorkflowFailedError).cause as ApplicationFailure).message).toMatch(/green is not ready, nothing was switched: .*HTTP 503/);
    await bed.setCanary({ healthy: true });

    const result = await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `bg-switch-${Date.now()}`;
      const handle = await client.workflow.start('blue-green-switch', {
        taskQueue,
        workflowId,
        args: [{ router: 'api', to: 'green', skipAnalysis: true, scaleDownDelaySeconds: 1, requestedBy: 'alice' }],
      });
      await waitForApproval(handle, 'approve-switch');
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', step: 'approve-switch' }] });
      const r = (await handle.result()) as BlueGreenResult;
      await recordHistory(client, workflowId, 'blue-green-switch');
      return r;
    });
    expect(result).toMatchObject({ ok: true, from: 'blue', to: 'green', switched: true, rolledBack: false });
    expect(result.progress.steps.find((s) => s.id === 'scale-down')).toMatchObject({ status: 'skipped' });
    expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '2.0.0': 400 });
  }, 60_000);
});

describe('canary-deploy through real nginx, gated by real Prometheus', () => {
  it('a good canary reaches 100 %, and the measured split follows every step', async () => {
    await bed.setCanary({ errorRate: 0, latencyMs: 0 });
    await warmCanary(bed);
    const load = startLoad(bed.nginx.url, 60);
    const splits: Record<number, number> = {};
    try {
      await withWorker(loaded, async ({ client, taskQueue }) => {
        const workflowId = `canary-good-${Date.now()}`;
        const handle = await client.workflow.start('canary-deploy', {
          taskQueue,
          workflowId,
          args: [{ router: 'api', requestedBy: 'alice', approveEachStep: true, bakeSeconds: 1 }],
        });
        for (const weight of [5, 25, 50]) {
          await waitForApproval(handle, `approve-${weight}`);
          const status = await waitForStatus(handle, (s) => s.phase === 'awaiting-approval');
          expect(status.weight).toBe(weight);
          expect(status.lastAnalysis?.ok).toBe(true);
          const split = await measureSplit(bed.nginx.url, 400);
          splits[weight] = split.percent('2.0.0');
          await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: `looks good at ${weight} %`, step: `approve-${weight}` }] });
        }
        const result = (await handle.result()) as CanaryDeployResult;
        await recordHistory(client, workflowId, 'canary-deploy');
        expect(result).toMatchObject({ ok: true, outcome: 'promoted', finalWeight: 100, notified: true });
        expect(result.steps.map((s) => [s.weight, s.ok, s.measurements.length])).toEqual([
          [5, true, 2],
          [25, true, 2],
          [50, true, 2],
          [100, true, 2],
        ]);
        expect(result.steps[0]!.measurements[0]!.results.map((r) => r.name)).toEqual(['error-rate', 'p99-latency']);
        expect(result.approvals.map((a) => [a.step, a.decision, a.by])).toEqual([
          ['approve-5', 'approved', 'bob'],
          ['approve-25', 'approved', 'bob'],
          ['approve-50', 'approved', 'bob'],
        ]);
        const steps = Object.fromEntries(result.progress.steps.map((s) => [s.id, s]));
        expect(steps['set-25']!.detail).toMatch(/^25 % on canary \(was 5 %\)/);
        expect(steps['analysis-50']!.detail).toMatch(/2\/2 passed; last: error-rate 0, p99-latency/);
      }, { env });
    } finally {
      await load.stop();
    }
    splits[100] = (await measureSplit(bed.nginx.url, 400)).percent('2.0.0');
    for (const [weight, measured] of Object.entries(splits)) {
      expect(Math.abs(measured - Number(weight)), `measured ${measured} % at weight ${weight}`).toBeLessThanOrEqual(5);
    }
    expect(webhook.messages.at(-1)).toMatchObject({ event: 'canary-promoted', router: 'api', environment: 'test' });
  }, 120_000);

  it('promote skips the bake; abort mid-bake: traffic back to 0 % at once, canary stopped; pause/resume answered on the way', async () => {
    await bed.startCanary();
    await warmCanary(bed);
    const load = startLoad(bed.nginx.url, 60);
    try {
      await withWorker(loaded, async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('canary-deploy', {
          taskQueue,
          workflowId: `canary-abort-${Date.now()}`,
          args: [{ router: 'api', requestedBy: 'alice', steps: [10, 50], bakeSeconds: 600 }],
        });
        await waitForStatus(handle, (s) => s.phase === 'baking' && s.weight === 10);
        expect(Math.abs((await measureSplit(bed.nginx.url, 400)).percent('2.0.0') - 10)).toBeLessThanOrEqual(5);
        expect((await handle.executeUpdate(pauseUpdate, { args: [{ by: 'alice' }] })).paused).toBe(true);
        expect((await handle.executeUpdate(resumeUpdate, { args: [{ by: 'alice' }] })).paused).toBe(false);
        const refused = await handle.executeUpdate(resumeUpdate, { args: [{ by: 'alice' }] }).catch((e: unknown) => e);
        expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
        expect((refused as WorkflowUpdateFailedError).cause?.message).toMatch(/not paused/);
        // promote cuts the 600 s bake short; the analysis still runs before 50 %.
        await handle.executeUpdate(promoteUpdate, { args: [{ by: 'alice' }] });
        const at50 = await waitForStatus(handle, (s) => s.phase === 'baking' && s.weight === 50, 20_000);
        expect(at50.lastAnalysis?.ok).toBe(true);
        // What an operator types: the CLI shows the weight, then aborts.
        const status = await runbook('delivery', 'status', handle.workflowId);
        expect(status.stdout).toMatch(/^router api: 50 % on canary, baking; steps 10 → \[50\]\nlast analysis .*: passed\n {2}✓ error-rate = 0 /);
        const started = Date.now();
        const abort = await runbook('delivery', 'abort', handle.workflowId, '--reason', 'customer reports');
        expect(abort.exitCode, abort.stderr).toBe(0);
        const { message, result } = await failureOf(handle.result());
        expect(Date.now() - started).toBeLessThan(10_000);
        expect(message).toMatch(/aborted by alice: customer reports/);
        expect(result.outcome).toBe('rolled-back');
        expect(result.canaryStopped?.ok).toBe(true);
      });
    } finally {
      await load.stop();
    }
    const split = await measureSplit(bed.nginx.url, 400);
    expect(split.byVersion).toEqual({ '1.0.0': 400 });
    await expect(get(`${bed.canary.httpUrl}/healthz`, 1000)).rejects.toThrow();
  }, 90_000);

  it('a bad canary (50 % errors) is rolled back automatically; the result names the query and value', async () => {
    await bed.startCanary();
    await bed.setCanary({ errorRate: 0.5 });
    await warmCanary(bed);
    webhook.messages.length = 0;
    const load = startLoad(bed.nginx.url, 60);
    let result: CanaryDeployResult;
    let message: string;
    try {
      ({ message, result } = await withWorker(
        loaded,
        async ({ client, taskQueue }) => {
          const workflowId = `canary-bad-${Date.now()}`;
          const p = client.workflow.execute('canary-deploy', { taskQueue, workflowId, args: [{ router: 'api', requestedBy: 'alice' }] });
          const f = await failureOf(p);
          await recordHistory(client, workflowId, 'canary-deploy-rolled-back');
          return f;
        },
        { env },
      ));
    } finally {
      await load.stop();
    }
    expect(message, JSON.stringify(result.steps)).toMatch(/rolled back, traffic 100 % stable: analysis failed at 5 %: error-rate = [\d.]+ \([\d.]+ > max 0\.005\) from \(sum\(rate\(http_requests_total\{job="api-canary",code=~"5\.\."\}/);
    expect(result.failedQuery).toMatchObject({ name: 'error-rate', ok: false, max: 0.005 });
    // Over the gate's maximum; how far over depends on how much healthy warm-up traffic is still in the rate window.
    expect(result.failedQuery!.value!).toBeGreaterThan(0.005);
    expect(result.steps.map((s) => s.weight)).toEqual([5]);
    expect(result.finalWeight).toBe(0);
    // The reaction time (failing measurement -> traffic at 0 %, target 2 s) is measured by bench/delivery.ts.
    expect(Date.parse(result.trafficZeroAt!)).toBeGreaterThanOrEqual(Date.parse(result.failedMeasurementAt!));
    const split = await measureSplit(bed.nginx.url, 400);
    expect(split.byVersion).toEqual({ '1.0.0': 400 });
    await expect(get(`${bed.canary.httpUrl}/healthz`, 1000)).rejects.toThrow();
    expect(webhook.messages).toEqual([expect.objectContaining({ event: 'canary-rolled-back', router: 'api', text: expect.stringMatching(/error-rate/) })]);
    const progress = Object.fromEntries(result.progress.steps.map((s) => [s.id, s.status]));
    expect(progress).toMatchObject({ 'set-5': 'succeeded', 'analysis-5': 'failed', 'set-25': 'pending', 'rollback-traffic': 'succeeded', 'stop-canary': 'succeeded', notify: 'succeeded' });
  }, 90_000);

  it('approveEachStep: nothing moves while approve-<weight> waits; a reject keeps the next weight from ever being set and rolls back to 0 %, canary stopped', async () => {
    await bed.startCanary();
    await warmCanary(bed);
    expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '1.0.0': 400 });
    webhook.messages.length = 0;
    const expectCanaryShare = async (weight: number) => {
      const measured = (await measureSplit(bed.nginx.url, 400)).percent('2.0.0');
      expect(Math.abs(measured - weight), `measured ${measured} % while waiting at ${weight} %`).toBeLessThanOrEqual(5);
    };
    const load = startLoad(bed.nginx.url, 60);
    let failure: Awaited<ReturnType<typeof failureOf>>;
    try {
      failure = await withWorker(loaded, async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('canary-deploy', {
          taskQueue,
          workflowId: `canary-reject-${Date.now()}`,
          // No metric gate: this test is about the approvals, and the error rate the bad canary of the
          // test before leaves in Prometheus's 5 s window would fail the analysis of the first step.
          args: [{ router: 'api', requestedBy: 'alice', steps: [10, 30, 60], approveEachStep: true, bakeSeconds: 1, skipAnalysis: true }],
        });
        await waitForApproval(handle, 'approve-10');
        await expectCanaryShare(10);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', step: 'approve-10' }] });
        const pending = await waitForApproval(handle, 'approve-30');
        expect(pending.summary).toMatch(/is at 30 %.*Approve to go to 60 %, reject to roll back to 0 %/);
        // Waiting longer than a bake and an analysis take: the weight stays at 30 %, 60 % is never set.
        await expectCanaryShare(30);
        await sleep(3000);
        await expectCanaryShare(30);
        expect(await waitForStatus(handle, (s) => s.phase === 'awaiting-approval')).toMatchObject({ weight: 30 });
        expect((await handle.query(progressQuery)).steps.find((st) => st.id === 'set-60')).toMatchObject({ status: 'pending' });
        await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', step: 'approve-30', comment: 'latency looks off' }] });
        return failureOf(handle.result());
      }, { env });
    } finally {
      await load.stop();
    }
    const { message, result } = failure;
    expect(message).toMatch(/going to 60 % rejected by bob: latency looks off/);
    expect(result).toMatchObject({ outcome: 'rolled-back', finalWeight: 0, canaryStopped: { ok: true } });
    expect(result.steps.map((s) => s.weight)).toEqual([10, 30]);
    expect(result.approvals.map((a) => [a.step, a.decision, a.by])).toEqual([
      ['approve-10', 'approved', 'bob'],
      ['approve-30', 'rejected', 'bob'],
    ]);
    const steps = Object.fromEntries(result.progress.steps.map((s) => [s.id, s]));
    expect(steps['set-60']!.status).toBe('pending');
    expect(steps['rollback-traffic']!).toMatchObject({ status: 'succeeded', detail: expect.stringMatching(/^0 % on canary \(was 30 %\)/) });
    expect(steps['stop-canary']!.status).toBe('succeeded');
    // As documented: all traffic back on stable, the canary stopped, people told.
    expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '1.0.0': 400 });
    await expect(get(`${bed.canary.httpUrl}/healthz`, 1000)).rejects.toThrow();
    expect(webhook.messages).toEqual([expect.objectContaining({ event: 'canary-rolled-back', router: 'api' })]);
  }, 120_000);

  it('a worker killed with SIGKILL during a bake: a new worker resumes the run and finishes it', async () => {
    await bed.startCanary();
    await warmCanary(bed);
    const load = startLoad(bed.nginx.url, 60);
    try {
      const taskQueue = uniqueQueue('delivery-crash');
      const first = await spawnWorker(loaded.path, taskQueue, { env });
      const client = await testClient();
      const handle = await client.workflow.start('canary-deploy', {
        taskQueue,
        workflowId: `canary-crash-${Date.now()}`,
        args: [{ router: 'api', steps: [20, 60], bakeSeconds: 4, requestedBy: 'alice' }],
      });
      await waitForStatus(handle, (s) => s.phase === 'baking' && s.weight === 20);
      // The UI's current details and `runbook status` show the live weight while the bake runs.
      const live = await handle.query(progressQuery);
      expect(live.steps.find((st) => st.id === 'bake-20')).toMatchObject({ status: 'running', detail: expect.stringMatching(/^20 % on the canary, baking 4s/) });
      first.child.kill('SIGKILL');
      await first.exited;
      // Traffic stays where the run left it while no worker runs.
      expect(Math.abs((await measureSplit(bed.nginx.url, 400)).percent('2.0.0') - 20)).toBeLessThanOrEqual(5);
      // A new worker on the same task queue picks the run up where the history left it.
      const result = (await withWorker(loaded, () => handle.result(), { env, taskQueue })) as CanaryDeployResult;
      expect(result).toMatchObject({ ok: true, outcome: 'promoted', finalWeight: 60 });
      expect(result.steps.map((s) => [s.weight, s.ok])).toEqual([
        [20, true],
        [60, true],
      ]);
    } finally {
      await load.stop();
    }
    expect(Math.abs((await measureSplit(bed.nginx.url, 400)).percent('2.0.0') - 60)).toBeLessThanOrEqual(5);
  }, 120_000);
});

describe('release: migration forward + canary in one run', () => {
  it('a failing canary: traffic back first, then the migration rollback waits for an approval', async () => {
    await bed.setCanary({ errorRate: 0.5 });
    await warmCanary(bed);
    const load = startLoad(bed.nginx.url, 60);
    let err: unknown;
    try {
      err = await withWorker(loaded, async ({ client, taskQueue }) => {
        const workflowId = `release-${Date.now()}`;
        const handle = await client.workflow.start('release', {
          taskQueue,
          workflowId,
          args: [{ router: 'api', database: 'fulcrum', steps: [5, 50, 100], requestedBy: 'alice' }],
        });
        const pending = await waitForApproval(handle, 'approve-migration-rollback');
        // Before anyone answers: users are already off the canary, the schema is untouched.
        expect(pending).toMatchObject({ destructive: true, confirmPhrase: 'ROLLBACK' });
        expect(pending.summary).toMatch(/error-rate.*Roll back migrations 003 of database fulcrum/s);
        expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '1.0.0': 400 });
        expect(await appliedVersions()).toEqual(['001', '002', '003']);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'ROLLBACK', step: 'approve-migration-rollback' }] });
        const e = await handle.result().catch((x: unknown) => x);
        await recordHistory(client, workflowId, 'release');
        return e;
      });
    } finally {
      await load.stop();
    }
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    expect(cause.type).toBe('ReleaseRolledBack');
    expect(cause.message).toMatch(/traffic 100 % stable .*error-rate.*; migrations 003 rolled back/);
    const result = cause.details![0] as ReleaseResult;
    expect(result.migration.applied.map((m) => m.version)).toEqual(['003']);
    expect(result.migrationRolledBack?.applied.map((m) => m.version)).toEqual(['003']);
    const order = result.progress.steps.map((s) => s.id);
    expect(order.indexOf('rollback-traffic')).toBeLessThan(order.indexOf('approve-migration-rollback'));
    expect(await appliedVersions()).toEqual(['001', '002']);
    expect(await columnExists()).toBe(false);
  }, 90_000);

  it('a reject of approve-migration-rollback leaves the migrations applied, the table they created with its rows, and traffic 100 % on stable', async () => {
    // This release also creates a table: a reject must keep it and what was written to it.
    await writeFile(path.join(migrationsDir, '004_create_rollout_audit.up.sql'), 'CREATE TABLE rollout_audit (id serial PRIMARY KEY, note text NOT NULL);\n');
    await writeFile(path.join(migrationsDir, '004_create_rollout_audit.down.sql'), 'DROP TABLE rollout_audit;\n');
    await bed.startCanary();
    await bed.setCanary({ errorRate: 0.5 });
    await warmCanary(bed);
    const auditRows = async () => (await withDb((db) => db.query<{ note: string }>('SELECT note FROM rollout_audit ORDER BY id'))).rows.map((r) => r.note);
    const schema = async () => ({ versions: await appliedVersions(), column: await columnExists(), audit: await auditRows() });
    const load = startLoad(bed.nginx.url, 60);
    let err: unknown;
    try {
      err = await withWorker(loaded, async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('release', {
          taskQueue,
          workflowId: `release-keep-${Date.now()}`,
          args: [{ router: 'api', database: 'fulcrum', steps: [5, 50, 100], requestedBy: 'alice' }],
        });
        const pending = await waitForApproval(handle, 'approve-migration-rollback');
        expect(pending.summary).toMatch(/Roll back migrations 003, 004 of database fulcrum/);
        // The new version wrote to the new table before the canary was rolled back.
        await withDb((db) => db.query("INSERT INTO rollout_audit (note) VALUES ('written by 2.0.0')"));
        expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '1.0.0': 400 });
        expect(await schema()).toEqual({ versions: ['001', '002', '003', '004'], column: true, audit: ['written by 2.0.0'] });
        await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', step: 'approve-migration-rollback', comment: 'keep the data, fix forward' }] });
        return handle.result().catch((x: unknown) => x);
      }, { env });
    } finally {
      await load.stop();
    }
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    expect(cause.type).toBe('ReleaseRolledBack');
    expect(cause.message).toMatch(/traffic 100 % stable .*error-rate.*; migrations 003, 004 left applied \(rejected\)$/);
    const result = cause.details![0] as ReleaseResult;
    expect(result.migration.applied.map((m) => m.version)).toEqual(['003', '004']);
    expect(result.migrationRolledBack).toBeUndefined();
    expect(result.progress.steps.find((s) => s.id === 'migration-rollback')).toMatchObject({ status: 'skipped', detail: expect.stringMatching(/^not approved \(rejected by bob\): migrations 003, 004 stay applied/) });
    // After the reject: no down SQL ran, users stay on stable, the canary is stopped.
    expect(await schema()).toEqual({ versions: ['001', '002', '003', '004'], column: true, audit: ['written by 2.0.0'] });
    expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '1.0.0': 400 });
    await expect(get(`${bed.canary.httpUrl}/healthz`, 1000)).rejects.toThrow();
  }, 90_000);
});
