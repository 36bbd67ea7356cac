import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acknowledgeSignal, acknowledgeUpdate, noteSignal, noteUpdate, refusalsQuery, resolvedUpdate, timelineQuery } from '../../common/incident/messages.js';
import { approvalsQuery, approveUpdate, pendingApprovalQuery, rejectUpdate } from '../../common/messages.js';
import type { IncidentRefusals, IncidentResult } from '../../common/incident/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fixtures/webhook-receiver.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { incidentTestConfig, webhookEnv } from '../incident/helpers.js';
import { updateRefusal } from '../fixtures/updates.js';

/**
 * A command sent as a signal and as an update of the same name passes the same checks
 * (workflows/shared/commands.ts): a refused signal is recorded and changes nothing; a refused
 * incident update is turned away by its validator, so it never reaches the history; a refused
 * approval is accepted into the history and recorded, so the audit keeps it.
 */

let receiver: WebhookReceiver;
let loaded: LoadedConfig;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  loaded = await writeConfig(incidentTestConfig());
});

afterAll(async () => {
  await receiver?.close();
});

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const value = await read();
    if (done(value)) return value;
    await sleep(100);
  }
  throw new Error(`${what} never happened`);
}

/** Each update the history holds, by name, and whether it failed (the failure itself is encrypted there). */
function updateEvents(events: temporal.api.history.v1.IHistoryEvent[]): Array<{ name: string; failed: boolean }> {
  const names = new Map<string, string>();
  const found: Array<{ name: string; failed: boolean }> = [];
  for (const e of events) {
    const accepted = e.workflowExecutionUpdateAcceptedEventAttributes;
    if (accepted) names.set(accepted.acceptedRequest?.meta?.updateId ?? '', accepted.acceptedRequest?.input?.name ?? '');
    const completed = e.workflowExecutionUpdateCompletedEventAttributes;
    if (completed) found.push({ name: names.get(completed.meta?.updateId ?? '') ?? '?', failed: !!completed.outcome?.failure });
  }
  return found;
}

describe('signal and update pairs', () => {
  it('incident: the same refusal for a signal (recorded) and an update (rejected by its validator, absent from the history)', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const handle: WorkflowHandle = await client.workflow.start('incident', {
          taskQueue,
          workflowId: `incident-commands-${Date.now()}`,
          args: [{ title: 'Search down', severity: 'P2', requestedBy: 'alice' }],
        });
        await until(() => handle.query(timelineQuery), (t) => t.some((e) => e.kind === 'paged'), 'the declaration');

        expect(await updateRefusal(handle.executeUpdate(noteUpdate, { args: [{ by: 'bob', text: ' ' }] }))).toBe('"text" is required and cannot be blank');
        await handle.signal(noteSignal, { by: 'bob', text: ' ' });
        const accepted = await handle.executeUpdate(acknowledgeUpdate, { args: [{ by: 'bob' }] });
        expect(accepted).toMatchObject({ status: 'acknowledged', acknowledgedBy: 'bob' });
        expect(await updateRefusal(handle.executeUpdate(acknowledgeUpdate, { args: [{ by: 'carol' }] }))).toBe('already acknowledged by bob');
        await handle.signal(acknowledgeSignal, { by: 'carol' });

        const refused: IncidentRefusals = await until(() => handle.query(refusalsQuery), (r) => r.refusals.length >= 2, 'two refusals');
        expect(refused.refusals.map((r) => [r.message, r.by, r.reason])).toEqual([
          ['note', 'bob', '"text" is required and cannot be blank'],
          ['acknowledge', 'carol', 'already acknowledged by bob'],
        ]);

        await handle.executeUpdate(resolvedUpdate, { args: [{ by: 'bob', summary: 'index rebuilt' }] });
        const result = (await handle.result()) as IncidentResult;
        expect(result.state.acknowledgedBy).toBe('bob');
        expect(result.refusals).toHaveLength(2);

        // Only the accepted updates are in the history; the validator turned the others away.
        const history = await handle.fetchHistory();
        expect(updateEvents(history.events ?? [])).toEqual([
          { name: 'acknowledge', failed: false },
          { name: 'resolved', failed: false },
        ]);
      },
      { env: webhookEnv(receiver) },
    );
  });

  it('approvals: a refused update is accepted into the history, fails for its caller and is kept in the refusals', async () => {
    const stack = await writeConfig({
      services: [{ name: 'store', group: 'infra', driver: { type: 'command', stop: ['true'], clean: ['true'] } }],
      preflight: { ports: [] },
      approvals: { approvers: { default: ['alice', 'bob'] } },
    });
    await withWorker(stack, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('stack-stop', {
        taskQueue,
        workflowId: `stack-stop-commands-${Date.now()}`,
        args: [{ clean: true, requestedBy: 'alice' }],
      });
      await until(() => handle.query(pendingApprovalQuery), (p) => p !== null, 'the approval request');
      const reason = await updateRefusal(handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', step: 'approve-delete', confirm: 'delete' }] }));
      expect(reason).toBe('confirmation must be exactly "DELETE" (got "delete")');
      const { refusals } = await handle.query(approvalsQuery);
      expect(refusals.map((r) => [r.by, r.answer, r.reason])).toEqual([['bob', 'approve', reason]]);

      await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', step: 'approve-delete', comment: 'not now' }] });
      await handle.result().catch(() => undefined);
      const history = await handle.fetchHistory();
      expect(updateEvents(history.events ?? [])).toEqual([
        { name: 'approve', failed: true },
        { name: 'reject', failed: false },
      ]);
    });
  });
});
