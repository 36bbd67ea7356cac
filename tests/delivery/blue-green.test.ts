import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rollbackUpdate } from '../../common/families/delivery-messages.js';
import type { BlueGreenResult } from '../../common/families/delivery-types.js';
import { approveUpdate, progressQuery } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { measureSplit, startDeliveryBed, startLoad, type DeliveryBed } from '../fixtures/delivery-traffic.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { deliveryConfig, waitForApproval } from './helpers.js';

let bed: DeliveryBed;
let loaded: LoadedConfig;

beforeAll(async () => {
  bed = await startDeliveryBed();
  loaded = await writeConfig(deliveryConfig(bed));
}, 90_000);

afterAll(async () => {
  await bed?.stop();
});

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
        const own = await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice' }] }).catch((e: unknown) => e);
        expect((own as WorkflowUpdateFailedError).cause?.message).toMatch(/two-person rule/);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob' }] });
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
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob' }] });
      const r = (await handle.result()) as BlueGreenResult;
      await recordHistory(client, workflowId, 'blue-green-switch');
      return r;
    });
    expect(result).toMatchObject({ ok: true, from: 'blue', to: 'green', switched: true, rolledBack: false });
    expect(result.progress.steps.find((s) => s.id === 'scale-down')).toMatchObject({ status: 'skipped' });
    expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '2.0.0': 400 });
  }, 60_000);
});
