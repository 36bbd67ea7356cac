import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { approvalsQuery, approveSignal, approveUpdate, pendingApprovalQuery, rejectSignal } from '../../common/messages.js';
import type { PendingApproval } from '../../common/types.js';
import type { StackStopResult } from '../../common/stack/types.js';
import { ConfigError, parseConfig } from '../../lib/config.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';

/**
 * Approvals beyond one yes/no: per-step approvers, N-of-M quorum, a reject that vetoes,
 * and a quorum nobody could meet, on a stack whose "data" is a file the clean step deletes.
 */

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-approvals-'));
});

function stackConfig(marker: string, approvals: unknown): unknown {
  return {
    services: [
      {
        name: 'store',
        group: 'infra',
        driver: {
          type: 'command',
          stop: ['true'],
          clean: [process.execPath, '-e', `require('node:fs').rmSync(${JSON.stringify(marker)})`],
        },
      },
    ],
    preflight: { ports: [] },
    approvals,
  };
}

async function markerFile(name: string): Promise<string> {
  const file = path.join(dir, name);
  const { writeFile } = await import('node:fs/promises');
  await writeFile(file, 'data');
  return file;
}

async function pendingWith(handle: WorkflowHandle, done: (p: PendingApproval) => boolean): Promise<PendingApproval> {
  for (let i = 0; i < 100; i++) {
    const p = await handle.query(pendingApprovalQuery);
    if (p && done(p)) return p;
    await sleep(100);
  }
  throw new Error('the expected approval state was never reached');
}

async function refusal(handle: WorkflowHandle, input: Record<string, string>): Promise<string> {
  const err = await handle.executeUpdate(approveUpdate, { args: [{ step: 'approve-delete', ...input } as never] }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
  return (err as WorkflowUpdateFailedError).cause?.message ?? '';
}

const quorumApprovals = {
  approvers: { default: ['alice', 'bob', 'carol', 'dave'] },
  steps: { 'stack-stop': { 'approve-delete': { approvers: ['bob', 'carol', 'dave'], quorum: 2 } } },
};

describe('approvals: per-step approvers and quorum', () => {
  it('a step with quorum 2 waits for two different approvers; the UI signal can give the second', async () => {
    const marker = await markerFile('quorum');
    const loaded = await writeConfig(stackConfig(marker, quorumApprovals));
    const result = await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('stack-stop', {
        taskQueue,
        workflowId: `stack-stop-quorum-${Date.now()}`,
        args: [{ clean: true, requestedBy: 'dave' }],
      });
      const pending = await pendingWith(handle, () => true);
      expect(pending).toMatchObject({ step: 'approve-delete', approvers: ['bob', 'carol', 'dave'], quorum: 2, approvedBy: [] });

      // alice approves stack-stop in general, but this step names its own approvers.
      expect(await refusal(handle, { by: 'alice', confirm: 'DELETE' })).toMatch(/alice is not an approver of stack-stop step approve-delete \(approvers: bob, carol, dave\)/);
      // dave requested the run: he cannot be one of the two.
      expect(await refusal(handle, { by: 'dave', confirm: 'DELETE' })).toMatch(/two-person rule/);

      const first = await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', step: 'approve-delete', comment: 'checked the backup' }] });
      expect(first).toMatchObject({ decision: 'approved', by: 'bob', approvals: 1, quorum: 2, settled: false });
      expect(await refusal(handle, { by: 'bob', confirm: 'DELETE' })).toMatch(/bob has already approved step approve-delete; it needs 2 different approvers/);
      // One approval is not enough: the data is still there and the run still waits.
      await sleep(300);
      expect(existsSync(marker)).toBe(true);
      expect(await pendingWith(handle, (p) => p.approvedBy.length === 1)).toMatchObject({ approvedBy: [expect.objectContaining({ by: 'bob' })] });

      await handle.signal(approveSignal, { by: 'carol', confirm: 'DELETE', step: 'approve-delete' });
      const r = (await handle.result()) as StackStopResult;
      const { refusals } = await handle.query(approvalsQuery);
      expect(refusals.map((x) => x.by)).toEqual(['alice', 'dave', 'bob']);
      return r;
    });
    expect(result).toMatchObject({ ok: true, clean: true, dataDeleted: true });
    expect(result.approvals).toEqual([
      expect.objectContaining({
        step: 'approve-delete',
        decision: 'approved',
        by: 'bob, carol',
        quorum: 2,
        votes: [expect.objectContaining({ by: 'bob', comment: 'checked the backup' }), expect.objectContaining({ by: 'carol' })],
      }),
    ]);
    expect(existsSync(marker)).toBe(false);
  });

  it('one reject from an approver refuses the step, even after an approval', async () => {
    const marker = await markerFile('veto');
    const loaded = await writeConfig(stackConfig(marker, quorumApprovals));
    const err = await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('stack-stop', {
        taskQueue,
        workflowId: `stack-stop-veto-${Date.now()}`,
        args: [{ clean: true, requestedBy: 'alice' }],
      });
      await pendingWith(handle, () => true);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', step: 'approve-delete' }] });
      // A reject naming another step does nothing...
      await handle.signal(rejectSignal, { by: 'dave', step: 'approve-restore', comment: 'wrong run' });
      await pendingWith(handle, () => true);
      // ...a reject naming this one ends it.
      await handle.signal(rejectSignal, { by: 'dave', step: 'approve-delete', comment: 'restore drill first' });
      return handle.result().catch((e: unknown) => e);
    });
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause?.message).toMatch(/step approve-delete rejected by dave: restore drill first; nothing was stopped and no data was deleted/);
    expect(existsSync(marker)).toBe(true);
  });

  it('a quorum nobody can meet fails the run at once, naming the config to fix', async () => {
    const marker = await markerFile('impossible');
    const loaded = await writeConfig(
      stackConfig(marker, {
        approvers: { default: ['alice', 'bob'] },
        steps: { 'stack-stop': { 'approve-delete': { quorum: 2 } } },
      }),
    );
    const err = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow
        .execute('stack-stop', { taskQueue, workflowId: `stack-stop-impossible-${Date.now()}`, args: [{ clean: true, requestedBy: 'alice' }] })
        .catch((e: unknown) => e),
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause?.message).toMatch(
      /step approve-delete needs 2 approvals but only 1 approver\(s\) can give them \(bob; alice requested the run and cannot approve it\): add approvers to approvals\.steps\.stack-stop\.approve-delete/,
    );
    expect(existsSync(marker)).toBe(true);
  });
});

describe('approvals config', () => {
  function issues(approvals: unknown): string[] {
    try {
      parseConfig(stringify(stackConfig('/nonexistent', approvals)), 'runbooks.yaml');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
    }
    return [];
  }

  it('accepts per-procedure quorum and per-step approvers', () => {
    expect(issues({ approvers: { default: ['alice', 'bob'], 'pitr-restore': ['alice', 'bob', 'carol'] }, quorum: { 'pitr-restore': 2 }, steps: { 'canary-deploy': { 'approve-25': { approvers: ['bob'] } } } })).toEqual([]);
  });

  it('names the unknown procedure, the unknown step and the quorum that cannot be met', () => {
    expect(issues({ approvers: { 'pitr-restor': ['alice'] } })).toEqual([
      expect.stringMatching(/^approvals\.approvers\.pitr-restor: unknown procedure "pitr-restor": expected "default" or one of .*pitr-restore/),
    ]);
    expect(issues({ steps: { 'pitr-restore': { 'approve-everything': { quorum: 1 } } } })).toEqual([
      'approvals.steps.pitr-restore.approve-everything: pitr-restore has no approval step "approve-everything": expected one of approve-restore, approve-cleanup',
    ]);
    expect(issues({ approvers: { 'pitr-restore': ['alice'] }, quorum: { 'pitr-restore': 2 } })).toEqual([
      'approvals.quorum.pitr-restore: pitr-restore needs 2 approvals but has only 1 approver(s) (alice): lower the quorum or add approvers',
    ]);
    expect(issues({ approvers: { default: ['alice smith'] } })[0]).toMatch(/approvals\.approvers\.default\[0\]: an approver is one name without spaces/);
  });
});
