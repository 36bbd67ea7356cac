import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IncidentResult } from '../../common/incident/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fixtures/webhook-receiver.js';
import { temporalAddress, temporalNamespace, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { incidentTestConfig, webhookEnv } from './helpers.js';

let receiver: WebhookReceiver;
let loaded: LoadedConfig;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  loaded = await writeConfig(incidentTestConfig({ postmortem: { requiredFor: [] } }));
});

afterAll(async () => {
  await receiver?.close();
});

/** The real `runbook` command, as an on-call engineer types it. */
function runbook(taskQueue: string, ...args: string[]) {
  return execa(process.execPath, ['bin/runbook.mjs', ...args], {
    reject: false,
    env: { TEMPORAL_ADDRESS: temporalAddress(), TEMPORAL_NAMESPACE: temporalNamespace(), RUNBOOK_TASK_QUEUE: taskQueue, RUNBOOK_CONFIG: loaded.path, RUNBOOK_USER: 'carol' },
  });
}

describe('incident CLI', () => {
  it('oncall: now and next at a given instant; a bad --at is one clear line', async () => {
    const out = await runbook('unused', 'oncall', '--at', '2024-01-08T07:59:00Z', '--json');
    expect(out.exitCode).toBe(0);
    const answer = JSON.parse(out.stdout) as { now: { primary: string; secondary: string; end: string }; next: { primary: string } };
    expect(answer.now).toMatchObject({ primary: 'alice', secondary: 'bob', end: '2024-01-08T08:00:00.000Z' });
    expect(answer.next.primary).toBe('bob');
    const text = await runbook('unused', 'oncall', '--at', '2024-01-08T08:00:00Z');
    expect(text.stdout).toMatch(/on call now: +primary bob, secondary carol \(until Mon, 15\/01\/2024, 09:00 Europe\/Berlin\)/);
    const bad = await runbook('unused', 'oncall', '--at', 'tomorrow');
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr.trim()).toBe('runbook: --at: not a date: "tomorrow" (expected ISO 8601, e.g. 2026-03-09T08:00:00Z)');
  });

  it('run incident, then ack / note / resolve from the CLI; a refused action says why', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const bad = await runbook(taskQueue, 'run', 'incident', '--input', '{"title": "x", "severity": "P5"}');
        expect(bad.exitCode).toBe(1);
        expect(bad.stderr).toMatch(/severity: expected one of P0, P1, P2, P3/);
        const started = await runbook(taskQueue, 'run', 'incident', '--input', '{"title": "Checkout errors", "severity": "P2"}', '--json');
        expect(started.exitCode).toBe(0);
        const { workflowId } = JSON.parse(started.stdout) as { workflowId: string };
        const ack = await runbook(taskQueue, 'incident', 'ack', workflowId);
        expect(ack.stdout).toMatch(/is acknowledged, P2, level L1, acknowledged by carol/);
        const again = await runbook(taskQueue, 'incident', 'ack', workflowId, '--as', 'dave');
        expect(again.exitCode).toBe(1);
        expect(again.stderr.trim()).toBe('runbook: refused: already acknowledged by carol');
        expect((await runbook(taskQueue, 'incident', 'note', workflowId, '--text', 'payment provider timeouts')).exitCode).toBe(0);
        const resolved = await runbook(taskQueue, 'incident', 'resolve', workflowId, '--summary', 'Provider fixed', '--root-cause', 'Expired TLS certificate at the provider');
        expect(resolved.stdout).toMatch(/is resolved/);
        const result = (await client.workflow.getHandle(workflowId).result()) as IncidentResult;
        expect(result.postmortem).toContain('Expired TLS certificate at the provider');
        const tl = await runbook(taskQueue, 'incident', 'timeline', workflowId);
        expect(tl.stdout).toMatch(/note +carol +payment provider timeouts/);
        const pm = await runbook(taskQueue, 'incident', 'postmortem', workflowId);
        expect(pm.stdout).toMatch(/^# Postmortem: Checkout errors/);
      },
      { env: webhookEnv(receiver) },
    );
  }, 60_000);
});
