import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  acknowledgeUpdate,
  incidentQuery,
  noteSignal,
  postmortemCompleteUpdate,
  resolvedUpdate,
  timelineQuery,
} from '../../common/incident/messages.js';
import type { IncidentResult } from '../../common/incident/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { historyToText } from '../fixtures/history.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fixtures/webhook-receiver.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { incidentTestConfig, webhookEnv } from './helpers.js';

/**
 * A week-long P0 incident with the runbook's real schedule scaled down: one hour of the
 * incident is HOUR seconds here. Stakeholder updates every 30 min, escalations at 15 min,
 * 1 h and 2 h, a secondary page at 10 min, hundreds of notes, then the postmortem with
 * reminders every 4 h. The run continues as new whenever its history reaches MAX_EVENTS
 * (lowered from the default 5000 so that a week here makes several runs); each run's history
 * stays under the bound, and the incident goes on in the new run with everything it knew.
 */

const HOUR = 0.2;
const WEEK_MS = 7 * 24 * HOUR * 1000;
const NOTES = 400;
const MAX_EVENTS = 600;
/** What one loop iteration, the drain before continuing and a burst of notes can add past the threshold. */
const EVENT_BOUND = MAX_EVENTS + 150;
const BYTE_BOUND = 1_000_000;

let receiver: WebhookReceiver;
let loaded: LoadedConfig;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  const h = (hours: number) => hours * HOUR;
  loaded = await writeConfig(
    incidentTestConfig({
      severities: {
        P0: { response: h(0.25), stakeholderUpdates: h(0.5) },
        P1: { response: h(1), stakeholderUpdates: h(0.5) },
        P2: { response: h(4) },
        P3: { response: h(24) },
      },
      ackTimeout: h(1 / 6),
      escalation: { l3After: h(1), l4After: h(2), contacts: { L2: ['tess-techlead'], L3: ['lee-leadership'], L4: ['cara-cto'] } },
      postmortem: { requiredFor: ['P0'], due: h(24), meetingWithin: h(48), reminderEvery: h(4), maxReminders: 6 },
      history: { maxEvents: MAX_EVENTS },
    }),
  );
});

afterAll(async () => {
  await receiver?.close();
});

interface RunSize {
  runId: string;
  events: number;
  bytes: number;
}

/** Every run of the workflow, first to last, following the continued-as-new chain. */
async function runsOf(client: Client, workflowId: string, firstRunId: string): Promise<RunSize[]> {
  const runs: RunSize[] = [];
  let runId: string | undefined = firstRunId;
  while (runId) {
    const handle: WorkflowHandle = client.workflow.getHandle(workflowId, runId);
    const d = await handle.describe();
    runs.push({ runId, events: d.historyLength, bytes: d.historySize ?? 0 });
    const events = (await handle.fetchHistory()).events ?? [];
    runId = events[events.length - 1]?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return runs;
}

describe('a week-long incident', () => {
  it('continues as new with its state; every run stays under the history bound; it resolves and drafts the postmortem with the early events', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const workflowId = `incident-week-${Date.now()}`;
        const mine = (r: { body: Record<string, unknown> }) => JSON.stringify(r.body).includes(workflowId);
        const handle = await client.workflow.start('incident', {
          taskQueue,
          workflowId,
          args: [{ title: 'Payments degraded', severity: 'P0', service: 'api', requestedBy: 'alertmanager' }],
        });
        const firstRunId = handle.firstExecutionRunId;
        await receiver.waitFor((r) => mine(r) && r.body.role === 'secondary');
        await receiver.waitFor((r) => mine(r) && r.body.escalationLevel === 'L4');
        await handle.executeUpdate(acknowledgeUpdate, { args: [{ by: 'alice' }] });
        const declared = await handle.query(incidentQuery);

        // The week: notes spread over it, from the first hour to the last.
        const started = Date.now();
        for (let i = 0; i < NOTES; i++) {
          await handle.signal(noteSignal, { by: i % 2 ? 'bob' : 'alice', text: `note ${i}: ${i === 0 ? 'primary database at 100 % CPU' : 'still investigating'}` });
          const due = started + ((i + 1) * WEEK_MS) / NOTES;
          if (due > Date.now()) await sleep(due - Date.now());
        }

        // Continued as new at least once: the same workflow id, a newer run, the same incident.
        const latest = await handle.describe();
        expect(latest.runId).not.toBe(firstRunId);
        const state = await handle.query(incidentQuery);
        expect(state).toMatchObject({
          status: 'acknowledged',
          level: 'L4',
          acknowledgedBy: 'alice',
          declaredAt: declared.declaredAt,
          primary: declared.primary,
          secondary: declared.secondary,
        });
        expect(state.continuedAsNew).toBeGreaterThanOrEqual(2);
        const timeline = await handle.query(timelineQuery);
        expect(timeline[0]).toMatchObject({ kind: 'declared' });
        expect(timeline.filter((e) => e.kind === 'paged').map((e) => e.data?.role)).toEqual(['primary', 'secondary']);
        // The P0's immediate escalation (AlphaPulse 1.1), then the ladder on its timers.
        expect(timeline.filter((e) => e.kind === 'escalated').map((e) => e.data?.level ?? (e.data?.immediate ? 'immediate' : undefined))).toEqual(['immediate', 'L2', 'L3', 'L4']);
        expect(timeline.find((e) => e.kind === 'note')?.text).toBe('note 0: primary database at 100 % CPU');

        await handle.executeUpdate(resolvedUpdate, { args: [{ by: 'alice', summary: 'Runaway query killed; index added' }] });
        await receiver.waitFor((r) => mine(r) && String(r.body.text).includes('Reminder #2'), 30_000);
        await handle.executeUpdate(postmortemCompleteUpdate, { args: [{ by: 'alice' }] });
        const result = (await client.workflow.getHandle(workflowId).result()) as IncidentResult;

        expect(result.state).toMatchObject({ status: 'resolved', level: 'L4', acknowledgedBy: 'alice', postmortemComplete: true, declaredAt: declared.declaredAt });
        const kinds = result.timeline.map((e) => e.kind);
        expect(kinds.slice(0, 2)).toEqual(['declared', 'paged']);
        expect(kinds).toEqual(expect.arrayContaining(['acknowledged', 'resolved', 'postmortem-drafted', 'postmortem-reminder', 'postmortem-completed', 'omitted']));
        expect(result.postmortem).toContain('note 0: primary database at 100 % CPU');
        expect(result.postmortem).toContain('Escalated to L4 (CTO: cara-cto)');
        expect(result.postmortem).toContain('the secondary was paged');
        expect(result.postmortem).toMatch(/\d+ notes omitted/);
        expect(result.postmortem).toMatch(/\d+ stakeholder updates omitted/);
        expect(result.progress.steps.map((s) => [s.id, s.status])).toEqual([
          ['plan', 'succeeded'],
          ['declare', 'succeeded'],
          ['respond', 'succeeded'],
          ['postmortem', 'succeeded'],
          ['postmortem-complete', 'succeeded'],
        ]);
        expect(JSON.stringify(result).length).toBeLessThan(100_000);

        // Timers that fired once never fire again in a later run; event ids go on across runs.
        const delivered = receiver.received.filter((r) => mine(r) && r.status === 200);
        // Deliveries run concurrently: their order is not the timeline's.
        expect(delivered.filter((r) => r.body.event === 'page').map((r) => String(r.body.role)).sort()).toEqual(['primary', 'secondary']);
        expect(delivered.filter((r) => r.body.event === 'escalation').map((r) => String(r.body.escalationLevel)).sort()).toEqual(['L2', 'L3', 'L4', 'immediate']);
        const ids = delivered.map((r) => `${r.path} ${String(r.headers['x-runbook-event-id'])}`);
        expect(new Set(ids).size).toBe(ids.length);
        const stakeholder = delivered.filter((r) => String(r.body.text).startsWith('Update on [P0] Payments degraded'));

        const runs = await runsOf(client, workflowId, firstRunId);
        const total = runs.reduce((sum, r) => ({ events: sum.events + r.events, bytes: sum.bytes + r.bytes }), { events: 0, bytes: 0 });
        process.stderr.write(
          `week-long incident (1 h = ${HOUR} s): ${runs.length} runs, ${stakeholder.length} stakeholder updates, ${NOTES} notes; ` +
            `history per run (bound ${EVENT_BOUND} events, ${BYTE_BOUND} bytes): ${runs.map((r) => `${r.events} events/${r.bytes} B`).join(', ')}; ` +
            `all runs together ${total.events} events, ${total.bytes} bytes\n`,
        );
        expect(stakeholder.length).toBeGreaterThan(150);
        expect(runs.length).toBeGreaterThanOrEqual(3);
        for (const r of runs) {
          expect(r.events).toBeLessThan(EVENT_BOUND);
          expect(r.bytes).toBeLessThan(BYTE_BOUND);
        }
        // The first run, which continues as new, replays with the rest (tests/replay).
        if (process.env.RECORD_HISTORIES === '1') {
          const first = await client.workflow.getHandle(workflowId, firstRunId).fetchHistory();
          await writeFile(path.resolve('tests/replay/histories/incident-continued-as-new.json'), historyToText(first));
        }
      },
      { env: webhookEnv(receiver) },
    );
  }, 240_000);
});
