import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acknowledgeUpdate, incidentQuery, resolvedUpdate } from '../../common/incident/messages.js';
import type { RunPlan } from '../../common/plan.js';
import type { ProcedureId } from '../../common/procedures.js';
import type { RunProgress } from '../../common/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { planRun } from '../../client/plan.js';
import { startPrometheus, type PrometheusServer } from '../fixtures/prometheus.js';
import { startNats, startPostgres, startRedis, type NatsServer, type PgServer, type RedisServer } from '../fixtures/servers.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fixtures/webhook-receiver.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { incidentTestConfig, webhookEnv } from '../incident/helpers.js';

/**
 * `runbook plan` for the incident family against real Redis, NATS, PostgreSQL and Prometheus: an
 * incident plan pages no one (the webhook receiver gets nothing), triage plans run their
 * read-only checks and list the approvals a remediation would ask for; the real runs show the
 * same steps.
 */

let receiver: WebhookReceiver;
let redis: RedisServer;
let nats: NatsServer;
let pgs: PgServer;
let prometheus: PrometheusServer;
let loaded: LoadedConfig;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  [receiver, redis, nats, pgs] = await Promise.all([startWebhookReceiver(), startRedis(), startNats(), startPostgres()]);
  prometheus = await startPrometheus({ targets: [] });
  const appUrl = await pgs.createDatabase('app');
  env = webhookEnv(receiver);
  const base = incidentTestConfig({ prometheusUrl: prometheus.url });
  loaded = await writeConfig({
    ...base,
    services: [
      { name: 'api', driver: { type: 'command', status: ['true'] } },
      { name: 'redis', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'redis', url: redis.url }] },
      { name: 'nats', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'nats', servers: nats.url }] },
    ],
    databases: [{ name: 'app', url: appUrl }],
  });
}, 60_000);

afterAll(async () => {
  await receiver?.close();
  await Promise.all([redis?.stop(), nats?.stop(), pgs?.stop(), prometheus?.stop()]);
});

function plan(client: Client, taskQueue: string, procedure: ProcedureId, input: Record<string, unknown>): Promise<RunPlan> {
  return planRun({ client, taskQueue, procedure, input: { requestedBy: 'alice', ...input }, requestedBy: 'alice', environment: 'test' });
}

const stepsOf = (x: RunPlan | RunProgress) => x.steps.map((s) => `${s.id}: ${s.title}`);

async function execute(client: Client, taskQueue: string, procedure: ProcedureId, input: Record<string, unknown>): Promise<RunProgress> {
  const r = (await client.workflow.execute(procedure, { taskQueue, workflowId: `${procedure}-${Date.now()}`, args: [{ requestedBy: 'alice', ...input }] })) as { progress: RunProgress };
  return r.progress;
}

describe('runbook plan: incident family', () => {
  it('incident: the plan loads the on-call and pages no one; the real incident (declared, acknowledged, resolved) shows the planned steps', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const input = { title: 'Checkout slow', severity: 'P3', service: 'api' };
        const p = await plan(client, taskQueue, 'incident', input);
        expect(p.refused).toBeUndefined();
        expect(p.steps[0]).toMatchObject({ id: 'plan', kind: 'checked' });
        expect(p.steps.find((s) => s.id === 'declare')).toMatchObject({ kind: 'would-do' });
        expect(p.stoppedAt?.step).toBe('declare');
        expect(receiver.received.filter((r) => JSON.stringify(r.body).includes(p.workflowId))).toEqual([]);

        const handle = await client.workflow.start('incident', { taskQueue, workflowId: `incident-${Date.now()}`, args: [{ requestedBy: 'alice', ...input }] });
        // The updates are registered once the run has declared the incident.
        for (let i = 0; i < 100 && !(await handle.query(incidentQuery).catch(() => undefined))?.declaredAt; i++) await sleep(100);
        await handle.executeUpdate(acknowledgeUpdate, { args: [{ by: 'bob' }] });
        await handle.executeUpdate(resolvedUpdate, { args: [{ by: 'bob', summary: 'a slow query', rootCause: 'missing index', impact: 'p99 1.2 s for 5 min' }] });
        const real = (await handle.result()) as { progress: RunProgress };
        expect(stepsOf(p)).toEqual(stepsOf(real.progress));
      },
      { env },
    );
  });

  it('triage plans: read-only checks run, remediations are listed with their approvals; the real triage runs show the same steps', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const keys = new Redis(redis.url);
        await keys.set('policy:stale:1', 'x');
        const redisTriage = await plan(client, taskQueue, 'redis-triage', { service: 'redis', flush: true });
        expect(redisTriage.refused).toBeUndefined();
        const flush = redisTriage.steps.find((s) => s.id === 'approve-flush');
        expect(flush?.kind).toBe('approval');
        expect(flush?.approval?.approvers).toEqual(['alice', 'bob']);
        expect(await keys.get('policy:stale:1')).toBe('x');
        keys.disconnect();

        for (const [procedure, input] of [
          ['redis-triage', { service: 'redis' }],
          ['nats-lag-triage', { service: 'nats' }],
          ['service-error-triage', { service: 'redis', database: 'app' }],
          ['latency-triage', { database: 'app' }],
        ] as const) {
          const p = await plan(client, taskQueue, procedure, input);
          expect(p.refused, procedure).toBeUndefined();
          expect(stepsOf(p), procedure).toEqual(stepsOf(await execute(client, taskQueue, procedure, input)));
        }

        const unknown = await plan(client, taskQueue, 'nats-lag-triage', { service: 'nosuch' });
        expect(unknown.refused?.message).toMatch(/nosuch/);
      },
      { env },
    );
  });
});
