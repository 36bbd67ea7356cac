import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oncallAt } from '../../common/incident/oncall.js';
import { POSTMORTEM_SECTIONS } from '../../common/incident/postmortem.js';
import {
  acknowledgeUpdate,
  incidentQuery,
  noteSignal,
  postmortemCompleteUpdate,
  resolvedUpdate,
  setSeverityUpdate,
  timelineQuery,
} from '../../common/incident/messages.js';
import type { IncidentResult, TimelineEvent } from '../../common/incident/types.js';
import type { OncallConfig } from '../../common/incident/config.js';
import type { LoadedConfig } from '../../lib/config.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fixtures/webhook-receiver.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { incidentTestConfig, PAGER_TOKEN_PATH, SLACK_TOKEN_PATH, webhookEnv } from './helpers.js';

let receiver: WebhookReceiver;
let loaded: LoadedConfig;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  loaded = await writeConfig(incidentTestConfig());
});

afterAll(async () => {
  await receiver?.close();
});

/** The validator's reason of a refused update (the client wraps it as the failure's cause). */
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    const e = err as Error & { cause?: Error };
    return e.cause?.message ?? e.message;
  }
  return 'accepted';
}

const since = (e: { at: string } | { at: number }, start: number) => (typeof e.at === 'number' ? e.at : Date.parse(e.at)) - start;

describe('incident', () => {
  it('P0 without ack: pages the primary, then the secondary at the ack timeout, escalates L2/L3/L4 on time; resolve drafts the postmortem', async () => {
    const oncall = oncallAt(loaded.config.incident!.oncall as OncallConfig, new Date());
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const workflowId = `incident-p0-${Date.now()}`;
        const handle = await client.workflow.start('incident', {
          taskQueue,
          workflowId,
          args: [{ title: 'API down', severity: 'P0', service: 'api', summary: 'API returns 503 for every tenant', requestedBy: 'alertmanager' }],
        });
        const mine = (r: { body: Record<string, unknown> }) => JSON.stringify(r.body).includes(workflowId);
        const primaryPage = await receiver.waitFor((r) => r.path === PAGER_TOKEN_PATH && mine(r) && r.body.role === 'primary');
        expect(primaryPage.body).toMatchObject({ event: 'page', to: oncall.now.primary, severity: 'P0' });
        const started = Date.parse((await handle.query(incidentQuery)).declaredAt);
        expect(since(primaryPage, started)).toBeLessThan(2000);
        // Status page "investigating" and the channel post, Slack-compatible: {text}.
        const investigating = await receiver.waitFor((r) => r.path === SLACK_TOKEN_PATH && String(r.body.text).startsWith('Investigating: API down'));
        expect(Object.keys(investigating.body)).toEqual(['text']);

        const secondary = await receiver.waitFor((r) => mine(r) && r.body.role === 'secondary');
        expect(secondary.body.to).toBe(oncall.now.secondary);
        expect(since(secondary, started)).toBeGreaterThanOrEqual(2000);
        expect(since(secondary, started)).toBeLessThan(4000);

        for (const [level, at, who] of [['L2', 3000, 'tess-techlead'], ['L3', 5000, 'lee-leadership'], ['L4', 7000, 'cara-cto']] as const) {
          const esc = await receiver.waitFor((r) => mine(r) && r.body.event === 'escalation' && r.body.escalationLevel === level);
          expect(esc.body.to).toEqual([who]);
          expect(since(esc, started)).toBeGreaterThanOrEqual(at);
          expect(since(esc, started)).toBeLessThan(at + 2000);
        }

        // A refusal comes back at once through the update's validator.
        expect(await refusal(handle.executeUpdate(setSeverityUpdate, { args: [{ by: 'alice', severity: 'P0' }] }))).toMatch(/already P0/);
        await handle.signal(noteSignal, { by: 'bob', text: 'Rolled back deployment api v2.3.1' });
        await handle.executeUpdate(acknowledgeUpdate, { args: [{ by: 'bob' }] });
        await handle.executeUpdate(resolvedUpdate, {
          args: [
            {
              by: 'bob',
              summary: 'A bad deployment exhausted the database pool',
              rootCause: 'Connection leak in api v2.3.1',
              impact: 'All tenants, 9 minutes of 503s',
              actionItems: [{ item: 'Add a pool saturation alert', owner: 'Backend Team', due: '2026-12-01' }],
            },
          ],
        });
        expect(await refusal(handle.executeUpdate(resolvedUpdate, { args: [{ by: 'bob' }] }))).toMatch(/already resolved/);
        await receiver.waitFor((r) => r.path === SLACK_TOKEN_PATH && String(r.body.text).startsWith('Resolved: API down'));
        // Reminders until the postmortem is marked complete (P0 requires one).
        await receiver.waitFor((r) => String(r.body.text).includes('Reminder #2') && mine(r));
        await handle.executeUpdate(postmortemCompleteUpdate, { args: [{ by: 'bob' }] });
        const result = (await handle.result()) as IncidentResult;

        expect(result.state).toMatchObject({ status: 'resolved', level: 'L4', acknowledgedBy: 'bob', postmortemComplete: true, primary: oncall.now.primary });
        const kinds = result.timeline.map((e: TimelineEvent) => e.kind);
        expect(kinds.slice(0, 2)).toEqual(['declared', 'paged']);
        expect(kinds).toEqual(expect.arrayContaining(['escalated', 'note', 'acknowledged', 'resolved', 'postmortem-drafted', 'postmortem-reminder', 'postmortem-completed']));
        const note = result.timeline.find((e) => e.kind === 'note')!;
        expect(note).toMatchObject({ by: 'bob', text: 'Rolled back deployment api v2.3.1' });

        const pm = result.postmortem;
        for (const section of POSTMORTEM_SECTIONS) expect(pm).toContain(`## ${section}`);
        expect(pm).toContain('# Postmortem: API down');
        expect(pm).toContain('**Severity**: P0');
        expect(pm).toContain('Connection leak in api v2.3.1');
        expect(pm).toContain('| Add a pool saturation alert | Backend Team | 2026-12-01 |');
        // The timeline table is the run's own events with their real times.
        for (const e of result.timeline.filter((x) => x.kind !== 'postmortem-reminder' && x.kind !== 'postmortem-completed')) {
          expect(pm).toContain(`| ${e.at.slice(11, 19)} | ${e.text.replace(/\|/g, '\\|')}`);
        }
        expect(pm).toMatch(/Escalated to L4 \(CTO: cara-cto\)/);
        expect(pm).toContain('the secondary was paged');

        // Webhook URLs (with their tokens) never reach the history.
        const history = JSON.stringify(await handle.fetchHistory());
        expect(history).not.toContain('slack-token-9f8e7d');
        expect(history).not.toContain('key-5c4b3a');
        await recordHistory(client, workflowId, 'incident');
      },
      { env: webhookEnv(receiver) },
    );
  }, 40_000);

  it('an acknowledged P1: no secondary page, stakeholder updates every 2 s, a failing webhook is retried, severity change by signal', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const workflowId = `incident-p1-${Date.now()}`;
        receiver.failNext(SLACK_TOKEN_PATH, 2);
        const handle = await client.workflow.start('incident', {
          taskQueue,
          workflowId,
          args: [{ title: 'Trading execution fails', severity: 'P1', requestedBy: 'carol' }],
        });
        const mine = (r: { body: Record<string, unknown> }) => JSON.stringify(r.body).includes(workflowId);
        await receiver.waitFor((r) => mine(r) && r.body.role === 'primary');
        await handle.executeUpdate(acknowledgeUpdate, { args: [{ by: 'alice' }] });
        expect(await refusal(handle.executeUpdate(acknowledgeUpdate, { args: [{ by: 'bob' }] }))).toMatch(/already acknowledged by alice/);
        expect(await refusal(handle.executeUpdate(acknowledgeUpdate, { args: [{} as { by: string }] }))).toMatch(/"by" is required/);
        const first = await receiver.waitFor((r) => String(r.body.text).startsWith('Update on [P1] Trading execution fails'));
        const second = await receiver.waitFor((r) => r !== first && String(r.body.text).startsWith('Update on [P1] Trading execution fails'));
        expect(second.at - first.at).toBeGreaterThanOrEqual(1500);
        expect(second.at - first.at).toBeLessThan(4000);
        const tl = await handle.query(timelineQuery);
        expect(tl.filter((e) => e.kind === 'paged')).toHaveLength(1);
        // The failed deliveries were retried with the same event id until one succeeded.
        const failed = receiver.received.filter((r) => r.status === 500);
        expect(failed.length).toBe(2);
        const retried = receiver.received.find((r) => r.status === 200 && r.headers['x-runbook-event-id'] === failed[0]!.headers['x-runbook-event-id']);
        expect(retried).toBeDefined();

        await handle.signal('set-severity', { by: 'alice', severity: 'P2', reason: 'workaround in place' });
        await handle.signal('resolved', { by: 'alice', summary: 'Feature flag disabled' });
        const result = (await handle.result()) as IncidentResult;
        expect(result.state.severity).toBe('P2');
        expect(result.state.level).toBe('L1');
        expect(result.timeline.find((e) => e.kind === 'severity-changed')).toMatchObject({ by: 'alice', text: 'Severity P1 -> P2: workaround in place' });
        // P1/P2 need no postmortem: the draft is in the result and the run ends at once.
        expect(result.postmortem).toContain('## Timeline (UTC)');
        expect(result.timeline.some((e) => e.kind === 'postmortem-reminder')).toBe(false);
      },
      { env: webhookEnv(receiver) },
    );
  }, 30_000);
});
