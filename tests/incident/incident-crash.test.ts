import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { incidentQuery, resolvedUpdate } from '../../common/incident/messages.js';
import type { IncidentResult } from '../../common/incident/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fixtures/webhook-receiver.js';
import { testClient, uniqueQueue, writeConfig } from '../fixtures/runbook-worker.js';
import { spawnWorker, type WorkerProcess } from '../fixtures/worker-process.js';
import { incidentTestConfig, PAGER_TOKEN_PATH, webhookEnv } from './helpers.js';


let receiver: WebhookReceiver;
let loaded: LoadedConfig;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  loaded = await writeConfig(
    incidentTestConfig({
      severities: { P0: { response: 15 }, P1: { response: 60 }, P2: { response: 60 }, P3: { response: 60 } },
      ackTimeout: 60,
      escalation: { l3After: 60, l4After: 120, contacts: { L2: ['tess-techlead'] } },
      postmortem: { requiredFor: [] },
    }),
  );
});

afterAll(async () => {
  for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  await receiver?.close();
});

describe('incident across a worker crash', () => {
  it('a worker killed with SIGKILL during the escalation wait: a new worker escalates on time', async () => {
    const taskQueue = uniqueQueue('incident-crash');
    const env = webhookEnv(receiver);
    const first = await spawnWorker(loaded.path, taskQueue, { env });
    workers.push(first);
    const client = await testClient();
    const workflowId = `incident-crash-${Date.now()}`;
    const handle = await client.workflow.start('incident', { taskQueue, workflowId, args: [{ title: 'Database unavailable', severity: 'P0', requestedBy: 'alice' }] });
    const mine = (r: { body: Record<string, unknown> }) => r.body.incidentId === workflowId;
    await receiver.waitFor((r) => r.path === PAGER_TOKEN_PATH && mine(r) && r.body.event === 'page');
    const started = Date.parse((await handle.query(incidentQuery)).declaredAt);

    // Wait until the run is idle on its escalation timer (no workflow task or notification in flight).
    for (let i = 0; i < 100; i++) {
      const raw = (await handle.describe()).raw;
      if (!raw.pendingWorkflowTask && (raw.pendingActivities ?? []).length === 0) break;
      await sleep(50);
    }
    // A standby worker joins (as in any two-worker deployment); then the worker that owns the run dies.
    const second = await spawnWorker(loaded.path, taskQueue, { env });
    workers.push(second);
    expect(Date.now() - started).toBeLessThan(13_000);
    first.child.kill('SIGKILL');
    expect(await first.exited).toBeNull();

    const esc = await receiver.waitFor((r) => mine(r) && r.body.event === 'escalation' && r.body.escalationLevel === 'L2', 30_000);
    expect(esc.body).toMatchObject({ escalationLevel: 'L2', to: ['tess-techlead'] });
    expect(esc.at - started).toBeGreaterThanOrEqual(15_000);
    // On time: the timer fires on the server at 15 s; the dead worker's sticky queue hands the task over within 2 s.
    expect(esc.at - started).toBeLessThan(18_000);
    // Exactly one L2 escalation (besides the P0's immediate one, AlphaPulse 1.1) and one primary page, despite the crash.
    expect(receiver.received.filter((r) => mine(r) && r.body.event === 'escalation' && r.status === 200).map((r) => r.body.escalationLevel)).toEqual(['immediate', 'L2']);
    expect(receiver.received.filter((r) => mine(r) && r.body.event === 'page' && r.status === 200)).toHaveLength(1);

    await handle.executeUpdate(resolvedUpdate, { args: [{ by: 'bob', summary: 'Failover completed' }] });
    const result = (await handle.result()) as IncidentResult;
    expect(result.state.level).toBe('L2');
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 60_000);
});
