import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { beforeAll, describe, expect, it } from 'vitest';
import { temporalNamespace } from '../fixtures/runbook-worker.js';
import { MAX_KEPT_REFUSALS } from '../../common/bounds.js';
import { approvalsQuery, approveSignal, approveUpdate, pendingApprovalQuery, rejectSignal } from '../../common/messages.js';
import type { StackStopResult } from '../../common/stack/types.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';

/**
 * What a stranger who can reach the server sends to a run cannot wedge it or grow it:
 * oversized approval answers are refused with a short reason that does not repeat them,
 * refusals are kept up to a cap and counted beyond it, and the run still finishes with a
 * small result after the real approver answers.
 */

const HUGE = 'x'.repeat(1_400_000);
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-signal-bounds-'));
});

async function cleanStack(name: string) {
  const marker = path.join(dir, name);
  await writeFile(marker, 'data');
  const loaded = await writeConfig({
    services: [
      {
        name: 'store',
        group: 'infra',
        driver: { type: 'command', stop: ['true'], clean: [process.execPath, '-e', `require('node:fs').rmSync(${JSON.stringify(marker)})`] },
      },
    ],
    preflight: { ports: [] },
    approvals: { approvers: { default: ['alice', 'bob'] } },
  });
  return { marker, loaded };
}

async function waitPending(handle: WorkflowHandle): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await handle.query(pendingApprovalQuery)) return;
    await sleep(100);
  }
  throw new Error('the run never asked for approval');
}

async function refusedSoFar(handle: WorkflowHandle, n: number): Promise<{ kept: number; dropped: number }> {
  for (let i = 0; i < 100; i++) {
    const a = await handle.query(approvalsQuery);
    if (a.refusals.length + (a.refusalsDropped ?? 0) >= n) return { kept: a.refusals.length, dropped: a.refusalsDropped ?? 0 };
    await sleep(100);
  }
  throw new Error(`fewer than ${n} refusals were recorded`);
}

describe('signals and updates from strangers are bounded', () => {
  it('1.4 MB answers are refused without being kept; the approved run finishes with a small result', async () => {
    const { marker, loaded } = await cleanStack('huge');
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId: `stack-stop-huge-${Date.now()}`, args: [{ clean: true, requestedBy: 'alice' }] });
      await waitPending(handle);

      // Two stranger signals, each 1.4 MB, as the temporal CLI would send them.
      await handle.signal(approveSignal, { by: HUGE, step: 'approve-delete', confirm: 'DELETE' });
      await handle.signal(rejectSignal, { by: 'mallory', step: 'approve-delete', comment: HUGE });
      // And through the update the CLI uses: refused at once with a short reason.
      const err = await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', step: 'approve-delete', confirm: 'DELETE', comment: HUGE }] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
      const reason = (err as WorkflowUpdateFailedError).cause?.message ?? '';
      expect(reason).toMatch(/too large|too long/);
      expect(reason.length).toBeLessThan(300);

      await refusedSoFar(handle, 3);
      expect(existsSync(marker)).toBe(true);
      const answer = await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', step: 'approve-delete', confirm: 'DELETE', comment: 'backup checked' }] });
      expect(answer).toMatchObject({ decision: 'approved', settled: true });

      const result = (await handle.result()) as StackStopResult;
      expect(existsSync(marker)).toBe(false);
      expect(result.refusals).toHaveLength(3);
      for (const r of result.refusals) {
        expect(r.reason.length).toBeLessThan(300);
        expect(r.by.length).toBeLessThanOrEqual(128);
      }
      expect(JSON.stringify(result).length).toBeLessThan(20_000);
      // The run is still describable and queryable after its end (no oversized state).
      expect((await handle.describe()).status.name).toBe('COMPLETED');
    });
  });

  it('refusals beyond the cap are counted, not kept', async () => {
    const { marker, loaded } = await cleanStack('many');
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId: `stack-stop-many-${Date.now()}`, args: [{ clean: true, requestedBy: 'alice' }] });
      await waitPending(handle);
      const total = MAX_KEPT_REFUSALS + 15;
      for (let i = 0; i < total; i++) await handle.signal(approveSignal, { by: `stranger${i}`, step: 'approve-delete', confirm: 'DELETE', comment: 'y'.repeat(1500) });
      expect(await refusedSoFar(handle, total)).toEqual({ kept: MAX_KEPT_REFUSALS, dropped: 15 });
      await handle.signal(rejectSignal, { by: 'bob', step: 'approve-delete', comment: 'not today' });
      const failure = (await handle.result().catch((e: unknown) => e)) as Error & { cause?: Error };
      expect(String(failure.cause?.message ?? failure)).toMatch(/rejected by bob/);
      expect(existsSync(marker)).toBe(true);
    });
  });

  it('answers of the wrong shape (arrays, numbers, control characters) are refused and the run goes on', async () => {
    const { loaded } = await cleanStack('shapes');
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId: `stack-stop-shapes-${Date.now()}`, args: [{ clean: true, requestedBy: 'alice' }] });
      await waitPending(handle);
      const hostile: unknown[] = [[1, 2, 3], 42, 'approve', { by: ['bob'] }, { by: 'bob\u202e', step: 'approve-delete' }, { by: 'bob', step: { nested: true } }];
      for (const h of hostile) await handle.signal(approveSignal, h as never);
      const seen = await refusedSoFar(handle, hostile.length);
      expect(seen.kept).toBe(hostile.length);
      const { refusals } = await handle.query(approvalsQuery);
      expect(refusals.map((r) => r.reason).join('\n')).not.toMatch(/nested|\u202e/);
      await handle.signal(approveSignal, { by: 'bob', step: 'approve-delete', confirm: 'DELETE' });
      await handle.result();
    });
  });

  it('signals whose payload cannot be decoded (forged encryption, unknown encoding, bad JSON) are refused; the run is not wedged', async () => {
    const { marker, loaded } = await cleanStack('forged');
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `stack-stop-forged-${Date.now()}`;
      const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId, args: [{ clean: true, requestedBy: 'alice' }] });
      await waitPending(handle);
      const utf8 = (t: string) => new TextEncoder().encode(t);
      const forged: Array<{ metadata: Record<string, Uint8Array>; data: Uint8Array }> = [
        // Claims our encryption, with a key id the worker holds and bytes that are not ciphertext.
        { metadata: { encoding: utf8('binary/encrypted'), 'encryption-cipher': utf8('AES-256-GCM'), 'encryption-key-id': utf8('test-only-1') }, data: utf8('x'.repeat(64)) },
        // A key id nobody has.
        { metadata: { encoding: utf8('binary/encrypted'), 'encryption-cipher': utf8('AES-256-GCM'), 'encryption-key-id': utf8('stolen') }, data: utf8('x'.repeat(64)) },
        { metadata: { encoding: utf8('application/x-evil') }, data: utf8('{}') },
        { metadata: { encoding: utf8('json/plain') }, data: utf8('{"by": "bob", ') },
      ];
      // Raw gRPC, as any client of the server can send it, bypassing this project's codec.
      for (const payload of forged) {
        await client.workflowService.signalWorkflowExecution({
          namespace: temporalNamespace(),
          workflowExecution: { workflowId },
          signalName: 'approve',
          input: { payloads: [payload] },
          identity: 'stranger',
        });
      }
      await refusedSoFar(handle, forged.length);
      const { refusals } = await handle.query(approvalsQuery);
      for (const r of refusals) expect(r.reason).toMatch(/could not be decoded/);
      expect(existsSync(marker)).toBe(true);
      await handle.signal(approveSignal, { by: 'bob', step: 'approve-delete', confirm: 'DELETE' });
      await handle.result();
      expect(existsSync(marker)).toBe(false);
      // No workflow task ever failed on the forged payloads.
      const history = await handle.fetchHistory();
      expect(history.events?.filter((e) => e.workflowTaskFailedEventAttributes)).toEqual([]);
    });
  });
});
