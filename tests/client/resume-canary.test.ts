import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CanaryDeployResult } from '../../common/delivery/types.js';
import { get, measureSplit, startDeliveryBed, startLoad, waitUntil, type DeliveryBed } from '../fixtures/delivery-traffic.js';
import { runbookCli, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { failureText } from '../database/helpers.js';
import { deliveryConfig, startWebhook, waitForStatus, warmCanary } from '../delivery/helpers.js';

/**
 * `runbook resume` of a canary-deploy whose router went down at 50 %: real nginx in front of the
 * stable and canary demo services, real Prometheus for the analysis. nginx is restarted, the real
 * CLI resumes the run from the failed weight change, and the canary finishes 50 -> 100 with each
 * weight applied by nginx once.
 */

let bed: DeliveryBed;
let webhook: Awaited<ReturnType<typeof startWebhook>>;
let restarted: ChildProcess | undefined;

beforeAll(async () => {
  [bed, webhook] = await Promise.all([startDeliveryBed(), startWebhook()]);
  await warmCanary(bed);
}, 120_000);

afterAll(async () => {
  if (restarted && restarted.exitCode === null) {
    const exited = new Promise((resolve) => restarted!.once('exit', resolve));
    restarted.kill('SIGQUIT');
    await exited;
  }
  await bed?.stop();
  await webhook?.stop();
});

/** The weight of every upstream file nginx was reloaded with: the router writes its marker only after a reload took. */
function appliedWeights(): { weights: number[]; close(): void } {
  const weights: number[] = [];
  const marker = `.${path.basename(bed.nginx.upstreamFile)}.applied`;
  const watcher = watch(path.dirname(bed.nginx.upstreamFile), (event, name) => {
    if (event !== 'rename' || name !== marker) return;
    void readFile(path.join(path.dirname(bed.nginx.upstreamFile), marker), 'utf8').then(
      (text) => weights.push(Number(/# canary-weight: (\d+)/.exec(text)?.[1] ?? NaN)),
      () => undefined,
    );
  });
  return { weights, close: () => watcher.close() };
}

async function setTrafficRuns(client: Client, workflowId: string, runId: string) {
  const events = (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
  const ids = new Set(events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'setTrafficWeight').map((e) => String(e.eventId)));
  const ended = (pick: (e: (typeof events)[number]) => { scheduledEventId?: unknown } | null | undefined) =>
    events.filter((e) => pick(e) && ids.has(String(pick(e)!.scheduledEventId))).length;
  return { scheduled: ids.size, completed: ended((e) => e.activityTaskCompletedEventAttributes), failed: ended((e) => e.activityTaskFailedEventAttributes) };
}

describe('runbook resume of a canary-deploy', () => {
  it('failed at 50 % (nginx down): restarted, resumed from the weight change, finishes 50 -> 100 with each weight applied once', async () => {
    // Traffic straight to both versions, so the analysis has data whatever nginx does.
    const loads = [startLoad(bed.stable.httpUrl, 20), startLoad(bed.canary.httpUrl, 20)];
    const applied = appliedWeights();
    try {
      const loaded = await writeConfig(deliveryConfig(bed, { analysis: { intervalSeconds: 1, count: 2, window: '5s' } }));
      await withWorker(
        loaded,
        async ({ client, taskQueue }) => {
          const workflowId = `resume-canary-${Date.now()}`;
          const handle = await client.workflow.start('canary-deploy', { taskQueue, workflowId, args: [{ router: 'api', requestedBy: 'alice', steps: [25, 50, 100], bakeSeconds: 3 }] });
          await waitForStatus(handle, (s) => s.phase === 'baking' && s.weight === 25, 60_000);
          expect(applied.weights).toEqual([25]);

          // The outside cause: the nginx master stops while the canary bakes at 25 %.
          const master = Number((await readFile(bed.nginx.pidFile, 'utf8')).trim());
          process.kill(master, 'SIGQUIT');
          await waitUntil('nginx stopped', async () => !existsSync(bed.nginx.pidFile), 15_000);

          const err = await handle.result().catch((e: unknown) => e);
          expect(failureText(err)).toMatch(/nginx reload for router api/);
          const { runId: failedRunId } = await handle.describe();
          expect(await setTrafficRuns(client, workflowId, failedRunId)).toEqual({ scheduled: 3, completed: 1, failed: 2 });
          // The rollback could not reach nginx either: the canary was not stopped, nothing more applied.
          expect(bed.canary.running()).toBe(true);
          expect(applied.weights).toEqual([25]);

          // Fixed: nginx started again on its files. It serves what the upstream file says, which
          // the rollback's attempt left at 0 %: all traffic on stable.
          restarted = spawn('nginx', ['-p', bed.nginx.prefix, '-c', bed.nginx.configPath], { stdio: 'ignore' });
          await waitUntil('nginx restarted', async () => (await get(`${bed.nginx.url}/api/ping`)).status === 200, 15_000);

          const run = runbookCli({ RUNBOOK_TASK_QUEUE: taskQueue, RUNBOOK_USER: 'alice' });
          const r = await run('resume', workflowId, '--as', 'carol');
          expect(r.exitCode, r.stderr).toBe(0);
          expect(r.stdout).toMatch(/from step Route 50 % of traffic to the canary \(set-50\): it failed with /);
          expect(r.stdout).toMatch(/the workflow task \(event \d+\) that scheduled activity setTrafficWeight of step set-50/);
          expect(r.stdout).toMatch(/runs again \(each checked safe to repeat\):\n\s+setTrafficWeight: sets an absolute weight/);
          expect(r.stdout).not.toMatch(/fresh approval/);
          const runId = /new run (\S+)/.exec(r.stdout)![1]!;

          const result = (await client.workflow.getHandle(workflowId, runId).result()) as CanaryDeployResult;
          expect(result).toMatchObject({ ok: true, outcome: 'promoted', finalWeight: 100 });
          expect(result.steps.map((s) => [s.weight, s.ok])).toEqual([
            [25, true],
            [50, true],
            [100, true],
          ]);
          expect(result.progress.steps.find((s) => s.id === 'set-50')?.detail).toMatch(/^50 % on canary \(was 0 %\), \d+ ms$/);
          await sleep(200);
          // Each weight applied by nginx once: 25 by the failed run, 50 and 100 by the resumed one.
          expect(applied.weights).toEqual([25, 50, 100]);
          // The resumed run kept the 25 % change and ran each later one once, at its first attempt.
          expect(await setTrafficRuns(client, workflowId, runId)).toEqual({ scheduled: 3, completed: 3, failed: 0 });
          const split = await measureSplit(bed.nginx.url, 100);
          expect(split.percent('2.0.0')).toBe(100);
        },
        { env: { ...process.env, DELIVERY_WEBHOOK: webhook.url } },
      );
    } finally {
      applied.close();
      await Promise.all(loads.map((l) => l.stop()));
    }
  }, 120_000);

  it('refused after a rollback: the analysis failed at 50 %, traffic went back to 0 % and the canary was stopped', async () => {
    const loads = [startLoad(bed.stable.httpUrl, 20), startLoad(bed.canary.httpUrl, 20)];
    try {
      await bed.setCanary({ errorRate: 0.5 });
      const loaded = await writeConfig(deliveryConfig(bed, { analysis: { intervalSeconds: 1, count: 2, window: '5s' } }));
      await withWorker(
        loaded,
        async ({ client, taskQueue }) => {
          const workflowId = `resume-canary-rolled-back-${Date.now()}`;
          const handle = await client.workflow.start('canary-deploy', { taskQueue, workflowId, args: [{ router: 'api', requestedBy: 'alice', steps: [50, 100], bakeSeconds: 1 }] });
          expect(failureText(await handle.result().catch((e: unknown) => e))).toMatch(/rolled back, traffic 100 % stable: analysis failed at 50 %: error-rate/);
          expect(bed.canary.running()).toBe(false);

          const r = await runbookCli({ RUNBOOK_TASK_QUEUE: taskQueue, RUNBOOK_USER: 'alice' })('resume', workflowId, '--as', 'carol');
          expect(r.exitCode).toBe(1);
          expect(r.stderr).toMatch(
            new RegExp(`run ${workflowId} cannot be resumed from step analysis-50: after it failed the run went on and did rollback-traffic \\(Roll back: all traffic to stable \\(0 %\\)\\), stop-canary \\(.*\\), notify \\(Notify\\)`),
          );
          expect(r.stderr).toMatch(/start a new run \(runbook run canary-deploy\)/);
          expect((await handle.describe()).runId).toBe(handle.firstExecutionRunId);
          expect(await readFile(bed.nginx.upstreamFile, 'utf8')).toContain('# canary-weight: 0');
        },
        { env: { ...process.env, DELIVERY_WEBHOOK: webhook.url } },
      );
    } finally {
      await Promise.all(loads.map((l) => l.stop()));
    }
  }, 60_000);
});
