import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { incidentQuery, timelineQuery } from '../../common/incident/messages.js';
import type { IncidentResult } from '../../common/incident/types.js';
import { incidentFromAlert, incidentWorkflowId, startIntake, type IntakeServer } from '../../client/incident/intake.js';
import type { LoadedConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { startAlertmanager, type AlertmanagerServer } from '../fixtures/alertmanager.js';
import { startRedis, type RedisServer } from '../fixtures/servers.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fixtures/webhook-receiver.js';
import { recordHistory, testClient, uniqueQueue, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { incidentTestConfig, webhookEnv } from './helpers.js';

const SECRET = 'intake-secret-3f2a';
let receiver: WebhookReceiver;
let redis: RedisServer;
let loaded: LoadedConfig;
let intake: IntakeServer;
let alertmanager: AlertmanagerServer;
const taskQueue = uniqueQueue('intake');

beforeAll(async () => {
  [receiver, redis] = await Promise.all([startWebhookReceiver(), startRedis({ maxmemory: '64mb', maxmemoryPolicy: 'noeviction' })]);
  loaded = await writeConfig(
    incidentTestConfig(
      {
        severities: { P0: { response: 60 }, P1: { response: 60 }, P2: { response: 60 }, P3: { response: 60 } },
        ackTimeout: 60,
        intake: { alertToTriage: [{ match: { alertname: 'RedisMemoryHigh' }, procedure: 'redis-triage', input: { service: 'redis' } }] },
      },
      {
        services: [
          { name: 'api', driver: { type: 'command', status: ['true'] } },
          { name: 'redis', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'redis', url: redis.url }] },
        ],
      },
    ),
  );
  intake = await startIntake({ client: await testClient(), taskQueue, config: loaded.config, secret: SECRET, logger: createLogger({}, 'warn') });
  alertmanager = await startAlertmanager({ webhookUrl: `${intake.url}/alertmanager`, bearer: SECRET });
}, 60_000);

afterAll(async () => {
  await alertmanager?.stop();
  await intake?.close();
  await receiver?.close();
  await redis?.stop();
});

describe('alert intake', () => {
  it('refuses a request without the shared secret', async () => {
    const body = JSON.stringify({ version: '4', groupKey: 'x', status: 'firing', alerts: [] });
    expect((await fetch(`${intake.url}/alertmanager`, { method: 'POST', body })).status).toBe(401);
    expect((await fetch(`${intake.url}/alertmanager`, { method: 'POST', body, headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const bad = await fetch(`${intake.url}/alertmanager`, { method: 'POST', body: '{"alerts": 1}', headers: { authorization: `Bearer ${SECRET}` } });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/groupKey: required/);
  });

  it('maps labels to severity and triage, one workflow id per group key', () => {
    const p = { version: '4', groupKey: '{}:{alertname="RedisMemoryHigh"}', status: 'firing' as const, commonLabels: { alertname: 'RedisMemoryHigh', severity: 'critical', service: 'redis' }, alerts: [] };
    const r = incidentFromAlert(loaded.config, p);
    expect(r.input).toMatchObject({ severity: 'P0', triage: 'redis-triage', triageInput: { service: 'redis' }, title: 'RedisMemoryHigh on redis', service: 'redis' });
    expect(r.workflowId).toBe(incidentWorkflowId('test', p.groupKey));
    expect(incidentFromAlert(loaded.config, { ...p, commonLabels: { alertname: 'Other', severity: 'warning' } }).input).toMatchObject({ severity: 'P2' });
    expect(incidentFromAlert(loaded.config, { ...p, commonLabels: { alertname: 'Other', severity: 'warning' } }).input.triage).toBeUndefined();
  });

  it('a real Alertmanager firing opens one incident with its triage child; resolving the alert marks it mitigated', async () => {
    await withWorker(
      loaded,
      async ({ client }) => {
        const labels = { alertname: 'RedisMemoryHigh', severity: 'critical', service: 'redis', instance: `redis-${Date.now()}` };
        const pushedAt = Date.now();
        await alertmanager.pushAlerts([{ labels, annotations: { summary: 'Redis memory above 90 %' }, startsAt: new Date().toISOString() }]);
        const page = await receiver.waitFor((r) => r.body.event === 'page' && String(r.body.title).startsWith('RedisMemoryHigh'), 30_000);
        const workflowId = String(page.body.incidentId);
        expect(workflowId).toMatch(/^incident--test--[0-9a-f]{16}$/);
        expect(page.at - pushedAt).toBeLessThan(10_000);
        const handle = client.workflow.getHandle(workflowId);
        expect(await handle.query(incidentQuery)).toMatchObject({ severity: 'P0', title: 'RedisMemoryHigh on redis' });

        // The triage child ran against the real Redis and is attached to the timeline.
        let tl = await handle.query(timelineQuery);
        for (let i = 0; i < 100 && !tl.some((e) => e.kind === 'triage-finished'); i++) {
          await new Promise((r) => setTimeout(r, 200));
          tl = await handle.query(timelineQuery);
        }
        const started = tl.find((e) => e.kind === 'triage-started')!;
        expect(started.data?.workflowId).toBe(`${workflowId}--redis-triage`);
        expect(tl.find((e) => e.kind === 'triage-finished')!.text).toMatch(/maxmemory-policy: noeviction, should be allkeys-lru/);

        // Alertmanager resolves the group: the same incident is marked mitigated, no second incident.
        await alertmanager.pushAlerts([{ labels, annotations: { summary: 'Redis memory above 90 %' }, startsAt: new Date(pushedAt).toISOString(), endsAt: new Date(Date.now() - 1000).toISOString() }]);
        let state = await handle.query(incidentQuery);
        for (let i = 0; i < 150 && state.status !== 'mitigated'; i++) {
          await new Promise((r) => setTimeout(r, 200));
          state = await handle.query(incidentQuery);
        }
        expect(state.status).toBe('mitigated');
        tl = await handle.query(timelineQuery);
        expect(tl.find((e) => e.kind === 'mitigated')).toMatchObject({ by: 'alertmanager' });
        expect(receiver.received.filter((r) => r.body.event === 'page' && r.body.incidentId !== workflowId && String(r.body.title).startsWith('RedisMemoryHigh'))).toHaveLength(0);

        await handle.signal('resolved', { by: 'alice', summary: 'Set allkeys-lru' });
        // A P0 resolves once its verification (the smoke checks) has answered.
        for (let i = 0; i < 100 && state.status !== 'resolved'; i++) {
          await new Promise((r) => setTimeout(r, 100));
          state = await handle.query(incidentQuery);
        }
        await handle.signal('postmortem-complete', { by: 'alice' });
        const result = (await handle.result()) as IncidentResult;
        expect(result.state.status).toBe('resolved');
        await recordHistory(client, `${workflowId}--redis-triage`, 'redis-triage');
      },
      { env: webhookEnv(receiver), taskQueue },
    );
  }, 90_000);
});
