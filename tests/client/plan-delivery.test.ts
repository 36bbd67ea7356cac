import { readFile } from 'node:fs/promises';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunPlan } from '../../common/plan.js';
import type { ProcedureId } from '../../common/procedures.js';
import type { RunProgress } from '../../common/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { planRun } from '../../client/plan.js';
import { measureSplit, startDeliveryBed, type DeliveryBed } from '../fixtures/delivery-traffic.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { deliveryConfig, startWebhook } from '../delivery/helpers.js';

/**
 * `runbook plan` for the delivery family through real nginx and Prometheus: a plan moves no
 * traffic (the upstream file and the measured split stay as they were), names the approvals,
 * and lists the steps the real canary then executes.
 */

let bed: DeliveryBed;
let postgres: PgServer;
let loaded: LoadedConfig;
let webhook: Awaited<ReturnType<typeof startWebhook>>;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  [bed, postgres] = await Promise.all([startDeliveryBed(), startPostgres()]);
  webhook = await startWebhook();
  env = { ...process.env, DELIVERY_WEBHOOK: webhook.url };
  const dbUrl = await postgres.createDatabase('fulcrum');
  loaded = await writeConfig(
    deliveryConfig(bed, {
      databases: [{ name: 'fulcrum', url: dbUrl }],
      services: [{ name: 'dashboard', driver: { type: 'compose', file: 'docker-compose.unified.yml', service: 'dashboard' } }],
    }),
  );
}, 120_000);

afterAll(async () => {
  await bed?.stop();
  await webhook?.stop();
  await postgres?.stop();
});

function plan(client: Client, taskQueue: string, procedure: ProcedureId, input: Record<string, unknown>): Promise<RunPlan> {
  return planRun({ client, taskQueue, procedure, input: { requestedBy: 'alice', ...input }, requestedBy: 'alice', environment: 'test' });
}

const stepsOf = (x: RunPlan | RunProgress) => x.steps.map((s) => `${s.id}: ${s.title}`);
const upstream = () => readFile(bed.nginx.upstreamFile, 'utf8');

describe('runbook plan: delivery family', () => {
  it('canary-deploy: the plan reads the router and moves no traffic; the real canary executes the planned steps', async () => {
    const input = { router: 'api', steps: [50], bakeSeconds: 1, skipAnalysis: true };
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const before = await upstream();
        const p = await plan(client, taskQueue, 'canary-deploy', input);
        expect(p.refused).toBeUndefined();
        expect(p.stoppedAt?.activity).toMatch(/^setTrafficWeight api/);
        expect(p.steps.find((s) => s.id === 'set-50')?.kind).toBe('would-do');
        expect(await upstream()).toBe(before);
        expect((await measureSplit(bed.nginx.url, 100)).byVersion).toEqual({ '1.0.0': 100 });

        const real = (await client.workflow.execute('canary-deploy', { taskQueue, workflowId: `canary-${Date.now()}`, args: [{ requestedBy: 'alice', ...input }] })) as { progress: RunProgress };
        expect(stepsOf(p)).toEqual(stepsOf(real.progress));
      },
      { env },
    );
  });

  it('blue-green-switch, release, app-rollback, config-rollback: plans with their approvals; nothing moves', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const before = await upstream();
        const bg = await plan(client, taskQueue, 'blue-green-switch', { router: 'api', to: 'blue', skipAnalysis: true });
        expect(bg.refused).toBeUndefined();
        expect(bg.steps.find((s) => s.id === 'approve-switch')).toMatchObject({ kind: 'approval', approval: { approvers: ['alice', 'bob'] } });

        const release = await plan(client, taskQueue, 'release', { router: 'api', database: 'fulcrum', steps: [50], bakeSeconds: 1 });
        expect(release.refused).toBeUndefined();
        expect(release.steps.length).toBeGreaterThan(1);

        const app = await plan(client, taskQueue, 'app-rollback', { service: 'dashboard', image: 'ghcr.io/org/dashboard:v1.0.0' });
        expect(app.refused).toBeUndefined();
        expect(app.stoppedAt?.activity).toMatch(/dashboard/);

        const flag = await plan(client, taskQueue, 'config-rollback', { kind: 'feature-flag', database: 'fulcrum', flag: 'new-checkout' });
        expect(flag.refused).toBeUndefined();
        expect(flag.stoppedAt?.activity).toMatch(/^disableFeatureFlag/);

        const unknown = await plan(client, taskQueue, 'canary-deploy', { router: 'nosuch' });
        expect(unknown.refused?.message).toMatch(/router/);
        expect(unknown.refused?.message).toMatch(/nosuch/);
        expect(await upstream()).toBe(before);
      },
      { env },
    );
  });
});
