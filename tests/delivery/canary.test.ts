import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortUpdate, pauseUpdate, resumeUpdate } from '../../common/families/delivery-messages.js';
import type { CanaryDeployResult } from '../../common/families/delivery-types.js';
import { approveUpdate } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { get, measureSplit, startDeliveryBed, startLoad, type DeliveryBed } from '../fixtures/delivery-traffic.js';
import { recordHistory, temporalAddress, temporalNamespace, testClient, uniqueQueue, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { deliveryConfig, startWebhook, waitForApproval, waitForStatus, warmCanary } from './helpers.js';

let bed: DeliveryBed;
let loaded: LoadedConfig;
let webhook: Awaited<ReturnType<typeof startWebhook>>;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  bed = await startDeliveryBed();
  webhook = await startWebhook();
  env = { ...process.env, DELIVERY_WEBHOOK: webhook.url };
  loaded = await writeConfig(deliveryConfig(bed));
}, 90_000);

const workers: ChildProcess[] = [];

/** The real `runbook worker` command, as an operator runs it. */
async function spawnWorker(configPath: string, taskQueue: string): Promise<{ child: ChildProcess; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, ['bin/runbook.mjs', 'worker', '--config', configPath, '--metrics', 'off'], {
    env: { ...env, TEMPORAL_ADDRESS: temporalAddress(), TEMPORAL_NAMESPACE: temporalNamespace(), RUNBOOK_TASK_QUEUE: taskQueue, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  workers.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  for (let i = 0; i < 600 && !out.includes('"worker started"'); i++) {
    if (child.exitCode !== null) throw new Error(`worker exited early:\n${out}`);
    await sleep(100);
  }
  if (!out.includes('"worker started"')) throw new Error(`worker did not start:\n${out}`);
  return { child, exited };
}

afterAll(async () => {
  for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
  await bed?.stop();
  await webhook?.stop();
});

async function failureOf(p: Promise<unknown>): Promise<{ message: string; result: CanaryDeployResult }> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const cause = (err as WorkflowFailedError).cause;
  expect(cause).toBeInstanceOf(ApplicationFailure);
  expect((cause as ApplicationFailure).type).toBe('CanaryRolledBack');
  return { message: cause!.message, result: (cause as ApplicationFailure).details![0] as CanaryDeployResult };
}

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
          args: [{ router: 'api', requestedBy: 'alice', approveEachStep: true }],
        });
        for (const weight of [5, 25, 50]) {
          await waitForApproval(handle, `approve-${weight}`);
          const status = await waitForStatus(handle, (s) => s.phase === 'awaiting-approval');
          expect(status.weight).toBe(weight);
          expect(status.lastAnalysis?.ok).toBe(true);
          const split = await measureSplit(bed.nginx.url, 400);
          splits[weight] = split.percent('2.0.0');
          await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: `looks good at ${weight} %` }] });
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

  it('abort mid-bake: traffic back to 0 % at once, canary stopped, pause/resume answered on the way', async () => {
    await bed.startCanary();
    await warmCanary(bed);
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
      const started = Date.now();
      await handle.executeUpdate(abortUpdate, { args: [{ by: 'alice', reason: 'customer reports' }] });
      const { message, result } = await failureOf(handle.result());
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(message).toMatch(/aborted by alice: customer reports/);
      expect(result.outcome).toBe('rolled-back');
      expect(result.canaryStopped?.ok).toBe(true);
    });
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
    expect(message).toMatch(/rolled back, traffic 100 % stable: analysis failed at 5 %: error-rate = 0\.\d+ \(0\.\d+ > max 0\.005\)/);
    expect(result.failedQuery).toMatchObject({ name: 'error-rate', ok: false, max: 0.005 });
    expect(result.failedQuery!.value!).toBeGreaterThan(0.1);
    expect(result.steps.map((s) => s.weight)).toEqual([5]);
    expect(result.finalWeight).toBe(0);
    // From the failing measurement to traffic at 0 %: the runbook's target is 2 s.
    const reactionMs = Date.parse(result.trafficZeroAt!) - Date.parse(result.failedMeasurementAt!);
    expect(reactionMs).toBeLessThanOrEqual(2000);
    const split = await measureSplit(bed.nginx.url, 400);
    expect(split.byVersion).toEqual({ '1.0.0': 400 });
    await expect(get(`${bed.canary.httpUrl}/healthz`, 1000)).rejects.toThrow();
    expect(webhook.messages).toEqual([expect.objectContaining({ event: 'canary-rolled-back', router: 'api', text: expect.stringMatching(/error-rate/) })]);
    const progress = Object.fromEntries(result.progress.steps.map((s) => [s.id, s.status]));
    expect(progress).toMatchObject({ 'set-5': 'succeeded', 'analysis-5': 'failed', 'set-25': 'pending', 'rollback-traffic': 'succeeded', 'stop-canary': 'succeeded', notify: 'succeeded' });
  }, 90_000);

  it('a worker killed with SIGKILL during a bake: a new worker resumes the run and finishes it', async () => {
    await bed.startCanary();
    await warmCanary(bed);
    const load = startLoad(bed.nginx.url, 60);
    try {
      const taskQueue = uniqueQueue('delivery-crash');
      const first = await spawnWorker(loaded.path, taskQueue);
      const client = await testClient();
      const handle = await client.workflow.start('canary-deploy', {
        taskQueue,
        workflowId: `canary-crash-${Date.now()}`,
        args: [{ router: 'api', steps: [20, 60], bakeSeconds: 4, requestedBy: 'alice' }],
      });
      await waitForStatus(handle, (s) => s.phase === 'baking' && s.weight === 20);
      first.child.kill('SIGKILL');
      await first.exited;
      // Traffic stays where the run left it while no worker runs.
      expect(Math.abs((await measureSplit(bed.nginx.url, 400)).percent('2.0.0') - 20)).toBeLessThanOrEqual(5);
      const second = await spawnWorker(loaded.path, taskQueue);
      const result = (await handle.result()) as CanaryDeployResult;
      expect(result).toMatchObject({ ok: true, outcome: 'promoted', finalWeight: 60 });
      expect(result.steps.map((s) => [s.weight, s.ok])).toEqual([
        [20, true],
        [60, true],
      ]);
      second.child.kill('SIGTERM');
      await second.exited;
    } finally {
      await load.stop();
    }
    expect(Math.abs((await measureSplit(bed.nginx.url, 400)).percent('2.0.0') - 60)).toBeLessThanOrEqual(5);
  }, 120_000);
});
