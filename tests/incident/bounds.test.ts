import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_KEPT_REFUSALS } from '../../common/bounds.js';
import {
  acknowledgeSignal,
  acknowledgeUpdate,
  alertSignal,
  escalateSignal,
  incidentQuery,
  noteSignal,
  noteUpdate,
  refusalsQuery,
  resolvedUpdate,
  setSeveritySignal,
  timelineQuery,
} from '../../common/incident/messages.js';
import { TIMELINE_KEPT } from '../../common/incident/timeline.js';
import type { IncidentRefusals, IncidentResult } from '../../common/incident/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fixtures/webhook-receiver.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { incidentTestConfig, webhookEnv } from './helpers.js';
import { updateRefusal } from '../fixtures/updates.js';

/**
 * Anyone who can reach the server can signal an incident run. What they send cannot wedge
 * the run or grow what it keeps: oversized or malformed messages are refused with a short
 * reason that does not repeat them, refusals are kept up to a cap and counted beyond it,
 * and the run still resolves with a small result.
 */

const HUGE = 'x'.repeat(1_400_000);
let receiver: WebhookReceiver;
let loaded: LoadedConfig;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  loaded = await writeConfig(incidentTestConfig());
});

afterAll(async () => {
  await receiver?.close();
});

async function refusedSoFar(handle: WorkflowHandle, n: number): Promise<IncidentRefusals> {
  for (let i = 0; i < 200; i++) {
    const r = await handle.query(refusalsQuery);
    if (r.refusals.length + r.refusalsDropped >= n) return r;
    await sleep(100);
  }
  throw new Error(`fewer than ${n} refusals were recorded`);
}

async function declared(handle: WorkflowHandle): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await handle.query(timelineQuery)).some((e) => e.kind === 'paged')) return;
    await sleep(100);
  }
  throw new Error('the incident was never declared');
}

describe('incident messages from strangers are bounded', () => {
  it('a 1.4 MB note and acknowledgement, as signals and as updates, are refused with a short reason; the run resolves with a small result', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('incident', {
          taskQueue,
          workflowId: `incident-huge-${Date.now()}`,
          args: [{ title: 'Checkout slow', severity: 'P2', requestedBy: 'alice' }],
        });
        await declared(handle);

        // Through the updates the CLI uses: refused at once, nothing kept.
        for (const reason of [
          await updateRefusal(handle.executeUpdate(noteUpdate, { args: [{ by: 'mallory', text: HUGE }] })),
          await updateRefusal(handle.executeUpdate(acknowledgeUpdate, { args: [{ by: HUGE }] })),
        ]) {
          expect(reason).toMatch(/message too large \(\d+ characters; at most 16384\)/);
          expect(reason.length).toBeLessThan(200);
        }
        expect(await updateRefusal(handle.executeUpdate(noteUpdate, { args: [{ by: 'mallory', text: 'y'.repeat(3000) }] }))).toMatch(
          /"text" is too long \(3000 characters; at most 2000\)/,
        );
        expect(await updateRefusal(handle.executeUpdate(acknowledgeUpdate, { args: [{ by: 'bob\u202eevil' }] }))).toMatch(/"by" contains control characters/);

        // Through signals, as the temporal CLI or the UI would send them: refused and recorded without the payload.
        await handle.signal(noteSignal, { by: 'mallory', text: HUGE });
        await handle.signal(acknowledgeSignal, { by: HUGE });
        const { refusals, refusalsDropped } = await refusedSoFar(handle, 2);
        expect(refusalsDropped).toBe(0);
        expect(refusals.map((r) => [r.message, r.by])).toEqual([
          ['note', 'mallory'],
          ['acknowledge', ''],
        ]);
        for (const r of refusals) {
          expect(r.reason).toMatch(/message too large/);
          expect(JSON.stringify(r).length).toBeLessThan(300);
        }
        const state = await handle.query(incidentQuery);
        expect(state.acknowledgedBy).toBeUndefined();

        // The real responder is heard as usual, and the run completes.
        await handle.executeUpdate(acknowledgeUpdate, { args: [{ by: 'alice' }] });
        await handle.signal(noteSignal, { by: 'alice', text: 'Cache hit rate back to 97 %' });
        await handle.executeUpdate(resolvedUpdate, { args: [{ by: 'alice', summary: 'Cache warmed up' }] });
        const result = (await handle.result()) as IncidentResult;
        expect(result.state).toMatchObject({ status: 'resolved', acknowledgedBy: 'alice' });
        expect(result.timeline.filter((e) => e.kind === 'note').map((e) => e.text)).toEqual(['Cache hit rate back to 97 %']);
        expect(result.refusals).toHaveLength(2);
        const size = JSON.stringify(result).length;
        expect(size).toBeLessThan(20_000);

        // No workflow task failed along the way (a wedged run fails every one of them).
        const history = await handle.fetchHistory();
        const failed = (history.events ?? []).filter((e) => e.workflowTaskFailedEventAttributes);
        expect(failed).toEqual([]);
        process.stderr.write(`incident with 2 hostile 1.4 MB signals: result ${size} characters, history ${history.events?.length} events\n`);
      },
      { env: webhookEnv(receiver) },
    );
  }, 60_000);

  it('120 refused signals keep the first 20 with their reasons and count the rest; 150 notes keep the first and the last', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('incident', {
          taskQueue,
          workflowId: `incident-flood-${Date.now()}`,
          args: [{ title: 'Search errors', severity: 'P3', requestedBy: 'alice' }],
        });
        await declared(handle);
        const bad: Array<() => Promise<void>> = [
          () => handle.signal(noteSignal, { by: 'mallory', text: 'y'.repeat(2500) }),
          () => handle.signal(acknowledgeSignal, {} as { by: string }),
          () => handle.signal(setSeveritySignal, { by: 'mallory', severity: 'P9' as 'P0' }),
          () => handle.signal(escalateSignal, { by: 'mallory', level: 'L9' as 'L2' }),
          () => handle.signal(alertSignal, { by: 'mallory', status: 'bogus' as 'firing', alerts: 1, summary: 'x' }),
          () => handle.signal(noteSignal, ['not', 'an', 'object'] as unknown as { by: string; text: string }),
        ];
        for (let i = 0; i < 120; i++) await bad[i % bad.length]!();
        const refused = await refusedSoFar(handle, 120);
        expect(refused.refusals).toHaveLength(MAX_KEPT_REFUSALS);
        expect(refused.refusalsDropped).toBe(120 - MAX_KEPT_REFUSALS);
        expect(refused.refusals.slice(0, 6).map((r) => r.reason)).toEqual([
          '"text" is too long (2500 characters; at most 2000): shorten it',
          '"by" is required',
          '"severity" must be one of P0, P1, P2, P3',
          '"level" must be L2, L3 or L4',
          '"status" must be firing or resolved',
          expect.stringMatching(/^expected one JSON object like/),
        ]);

        const notes = 150;
        for (let i = 0; i < notes; i++) await handle.signal(noteSignal, { by: 'bob', text: `note ${i}` });
        await handle.executeUpdate(resolvedUpdate, { args: [{ by: 'bob', summary: 'Index rebuilt' }] });
        const result = (await handle.result()) as IncidentResult;
        const kept = TIMELINE_KEPT.note!;
        const texts = result.timeline.filter((e) => e.kind === 'note').map((e) => e.text);
        expect(texts).toEqual([
          ...Array.from({ length: kept.first }, (_, i) => `note ${i}`),
          ...Array.from({ length: kept.last }, (_, i) => `note ${notes - kept.last + i}`),
        ]);
        const omitted = result.timeline.find((e) => e.kind === 'omitted')!;
        expect(omitted.data).toMatchObject({ of: 'note', count: notes - kept.first - kept.last });
        expect(omitted.text).toMatch(/^100 notes omitted .* \(the first 20 and the last 30 are kept\)$/);
        // In order: the marker stands where the omitted notes were.
        const kinds = result.timeline.map((e) => (e.kind === 'note' ? e.text : e.kind));
        expect(kinds.indexOf('omitted')).toBe(kinds.indexOf(`note ${kept.first - 1}`) + 1);
        expect(result.postmortem).toContain('100 notes omitted');
        expect(result.refusals).toHaveLength(MAX_KEPT_REFUSALS);
        expect(result.refusalsDropped).toBe(100);
        expect(JSON.stringify(result).length).toBeLessThan(50_000);
      },
      { env: webhookEnv(receiver) },
    );
  }, 60_000);
});
