import { existsSync } from 'node:fs';
import { mkdtemp, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { beforeAll, describe, expect, it } from 'vitest';
import { approvalsQuery, approveSignal, approveUpdate, pendingApprovalQuery } from '../../common/messages.js';
import type { ApprovalInput, PendingApproval } from '../../common/types.js';
import type { StackStopResult } from '../../common/stack/types.js';
import { createApproverKeyFile, loadApproverKey, signAnswer, type ApproverKey } from '../../lib/approval-keys.js';
import type { AuditEntry } from '../../client/audit.js';
import { recordHistory, runbookCli, uniqueQueue, withWorker, writeConfig } from '../fixtures/runbook-worker.js';

/**
 * Approvals that prove who gave them, against the real dev server: a destructive step
 * (stack-stop clean, whose "data" is a file its clean command deletes) refuses every answer
 * that is not signed by a current key of the approver, for this run, recently and once; and
 * nothing is deleted until a correctly signed quorum arrives. `runbook audit` shows the keys.
 * Run `node bin/build.mjs --if-stale` first: the CLI runs compiled.
 */

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-signed-'));
});

function stackConfig(marker: string, approvals: unknown): unknown {
  return {
    services: [
      {
        name: 'store',
        group: 'infra',
        driver: { type: 'command', stop: ['true'], clean: [process.execPath, '-e', `require('node:fs').rmSync(${JSON.stringify(marker)})`] },
      },
    ],
    preflight: { ports: [] },
    approvals,
  };
}

async function markerFile(name: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, 'data');
  return file;
}

/**
 * Waits for the run's first workflow task to complete before querying it: a query answered while
 * that task's local activity (the input check) runs splits the task in two, and such a history
 * does not replay (the constructor's patch markers land in a task the replay does not expect);
 * this test restarts the worker and audits a closed run, both of which replay.
 */
async function started(handle: WorkflowHandle): Promise<void> {
  for (let i = 0; i < 150; i++) {
    if ((await handle.describe()).historyLength >= 7) return;
    await sleep(100);
  }
  throw new Error('the run\'s first workflow task never completed');
}

async function pendingWith(handle: WorkflowHandle, done: (p: PendingApproval) => boolean): Promise<PendingApproval> {
  await started(handle);
  for (let i = 0; i < 150; i++) {
    const p = await handle.query(pendingApprovalQuery);
    if (p && done(p)) return p;
    await sleep(100);
  }
  throw new Error('the expected approval state was never reached');
}

async function refusedWith(handle: WorkflowHandle, input: ApprovalInput): Promise<string> {
  const err = await handle.executeUpdate(approveUpdate, { args: [input] }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
  return (err as WorkflowUpdateFailedError).cause?.message ?? '';
}

async function newKey(name: string, id: string): Promise<{ file: string; key: ApproverKey; line: string }> {
  const file = path.join(dir, name);
  const { line } = await createApproverKeyFile(file, id);
  return { file, key: await loadApproverKey(file), line };
}

const delete_ = { step: 'approve-delete', confirm: 'DELETE' };

describe('signed approvals on a destructive step', () => {
  it('refuses unsigned, forged, wrong-key, revoked, expired, other-run and replayed answers; a signed quorum deletes; audit shows the keys', async () => {
    const cli = (env: Record<string, string>) => runbookCli({ RUNBOOK_USER: 'alice', ...env });

    // bob's key from the CLI, as a person makes it.
    const bobFile = path.join(dir, 'bob.key');
    const made = await cli({})('keys', 'new', bobFile, '--id', 'bob-1');
    expect(made.exitCode, made.stderr).toBe(0);
    expect(made.stdout.trim()).toMatch(/^ed25519:[A-Za-z0-9_-]{43} bob-1$/);
    expect((await stat(bobFile)).mode & 0o777).toBe(0o600);
    const again = await cli({})('keys', 'new', bobFile);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(/already exists/);
    const bob = { file: bobFile, key: await loadApproverKey(bobFile), line: made.stdout.trim() };
    const carol1 = await newKey('carol-1.key', 'carol-1');
    const carol2 = await newKey('carol-2.key', 'carol-2');
    // Someone who copies bob's key id but not his key.
    const mallory = await newKey('mallory.key', 'bob-1');

    const marker = await markerFile('signed');
    const approvals = (carolKeys: string[]) => ({
      approvers: { default: ['alice', 'bob', 'carol'] },
      steps: { 'stack-stop': { 'approve-delete': { approvers: ['bob', 'carol'], quorum: 2 } } },
      keys: { bob: [bob.line], carol: carolKeys },
      requireSignatures: true,
    });
    const before = await writeConfig(stackConfig(marker, approvals([carol1.line, carol2.line])));
    const taskQueue = uniqueQueue('signed');
    const workflowId = `stack-stop-signed-${Date.now()}`;

    const { handle, runId, replayable } = await withWorker(
      before,
      async ({ client }) => {
        const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId, args: [{ clean: true, requestedBy: 'alice' }] });
        const runId = handle.firstExecutionRunId;
        await pendingWith(handle, () => true);
        const target: { workflowId: string; runId: string; decision: 'approve' | 'reject' } = { workflowId, runId, decision: 'approve' };
        const signed = (who: ApproverKey, by: string, over: Partial<typeof target> = {}, now = new Date()): ApprovalInput => {
          const a = { by, ...delete_ };
          return { ...a, signed: signAnswer(who, a, { ...target, ...over }, now) };
        };

        // The UI's Send a Signal: unsigned, refused with how to approve instead.
        await handle.signal(approveSignal, { by: 'bob', ...delete_ });
        let state = await handle.query(approvalsQuery);
        for (let i = 0; i < 50 && state.refusals.length === 0; i++) {
          await sleep(100);
          state = await handle.query(approvalsQuery);
        }
        expect(state.refusals[0]?.reason).toMatch(new RegExp(`unsigned answers are not accepted here \\(approvals.requireSignatures\\): approve with your key: runbook approve ${workflowId} --as bob --key`));

        // A key that claims bob's key id but is not his.
        expect(await refusedWith(handle, signed(mallory.key, 'bob'))).toMatch(/^bad signature/);
        // A forged `by`: carol's own key, signing as bob.
        expect(await refusedWith(handle, signed(carol1.key, 'bob'))).toMatch(/key carol-1 is not \(or no longer\) one of bob's keys/);
        // Signed twenty minutes ago.
        expect(await refusedWith(handle, signed(bob.key, 'bob', {}, new Date(Date.now() - 20 * 60_000)))).toMatch(/^expired: signed at/);
        // Signed for another run of the same workflow id.
        expect(await refusedWith(handle, signed(bob.key, 'bob', { runId: 'another-run' }))).toMatch(/signed for another run/);
        // Signed as a reject, sent as an approval... and the other way round.
        expect(await refusedWith(handle, signed(bob.key, 'bob', { decision: 'reject' }))).toMatch(/signed as reject but sent as approve/);
        await sleep(200);
        expect(existsSync(marker)).toBe(true);

        // bob's correctly signed approval counts (one of two); the same answer again is a replay.
        const good = signed(bob.key, 'bob');
        expect(await handle.executeUpdate(approveUpdate, { args: [good] })).toMatchObject({ by: 'bob', approvals: 1, quorum: 2, settled: false, verified: { keyId: 'bob-1' } });
        expect(await refusedWith(handle, good)).toMatch(/^replayed: an answer with this signature's nonce was already accepted/);
        await sleep(200);
        expect(existsSync(marker)).toBe(true);
        // Kept for after the restart: carol's answer signed with the key about to be revoked.
        return { handle, runId, replayable: signed(carol1.key, 'carol') };
      },
      { taskQueue },
    );

    // carol's first key is revoked: removed from the config, the worker restarted on it. The
    // step is still waiting, and the new worker replays the run's history to carry on.
    const after = await writeConfig(stackConfig(marker, approvals([carol2.line])));
    await withWorker(
      after,
      async ({ client }) => {
        expect(await refusedWith(handle, replayable)).toMatch(/key carol-1 is not \(or no longer\) one of carol's keys in approvals.keys \(revoked/);
        await sleep(200);
        expect(existsSync(marker)).toBe(true);
        expect(await pendingWith(handle, (p) => p.approvedBy.length === 1)).toMatchObject({ approvedBy: [expect.objectContaining({ by: 'bob', verified: { keyId: 'bob-1' } })] });

        // carol with her current key, through the CLI (the key from RUNBOOK_APPROVER_KEY).
        const approved = await cli({ RUNBOOK_APPROVER_KEY: carol2.file, RUNBOOK_TASK_QUEUE: taskQueue })('approve', workflowId, '--as', 'carol', '--confirm', 'DELETE', '--comment', 'restore drill passed');
        expect(approved.exitCode, approved.stderr).toBe(0);
        expect(approved.stdout).toMatch(/approved: step approve-delete of .* by carol \(2 of 2 approvals\)/);
        const result = (await handle.result()) as StackStopResult;
        expect(result).toMatchObject({ ok: true, clean: true, dataDeleted: true });
        expect(result.approvals).toEqual([
          expect.objectContaining({
            decision: 'approved',
            by: 'bob, carol',
            verified: { keyId: 'bob-1, carol-2' },
            votes: [expect.objectContaining({ by: 'bob', verified: { keyId: 'bob-1' } }), expect.objectContaining({ by: 'carol', verified: { keyId: 'carol-2' } })],
          }),
        ]);
        expect(existsSync(marker)).toBe(false);
        await recordHistory(client, workflowId, 'stack-stop-clean-signed-approvals');

        // The audit of the closed run: every answer, accepted with its key, refused with its reason.
        const audit = await cli({ RUNBOOK_TASK_QUEUE: taskQueue })('audit', workflowId, '--json');
        expect(audit.exitCode, audit.stderr).toBe(0);
        const { entries, runId: audited } = JSON.parse(audit.stdout) as { entries: AuditEntry[]; runId: string };
        expect(audited).toBe(runId);
        expect(entries.filter((e) => e.outcome === 'accepted')).toEqual([
          expect.objectContaining({ by: 'bob', answer: 'approve', verified: 'key', keyId: 'bob-1' }),
          expect.objectContaining({ by: 'carol', answer: 'approve', verified: 'key', keyId: 'carol-2', comment: 'restore drill passed' }),
        ]);
        const refused = entries.filter((e) => e.outcome === 'refused');
        expect(refused.map((e) => e.reason?.split(/[:(]/)[0])).toEqual([
          'unsigned answers are not accepted here ',
          'bad signature',
          'key carol-1 is not ',
          'expired',
          'this answer was signed for another run ',
          'this answer was signed as reject but sent as approve',
          'replayed',
          'key carol-1 is not ',
        ]);
        expect(refused[1]).toMatchObject({ by: 'bob', keyId: 'bob-1', verified: 'claimed' });
        const text = await cli({ RUNBOOK_TASK_QUEUE: taskQueue })('audit', workflowId);
        expect(text.stdout).toMatch(/approve-delete {2}approve accepted {2}by bob {2}\[signed, key bob-1\]/);
        expect(text.stdout).toMatch(/approve refused {2}by bob {2}\[unsigned\]: unsigned answers are not accepted/);
        expect(text.stdout).not.toMatch(/accepted unsigned/);
      },
      { taskQueue },
    );
  });

  it('with requireSignatures off an unsigned answer counts, marked unsigned, and the audit flags it', async () => {
    const marker = await markerFile('unsigned');
    const loaded = await writeConfig(stackConfig(marker, { approvers: { default: ['alice', 'bob'] } }));
    const taskQueue = uniqueQueue('unsigned');
    const workflowId = `stack-stop-unsigned-${Date.now()}`;
    await withWorker(
      loaded,
      async ({ client }) => {
        const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId, args: [{ clean: true, requestedBy: 'alice' }] });
        await pendingWith(handle, () => true);
        await handle.signal(approveSignal, { by: 'bob', ...delete_ });
        const result = (await handle.result()) as StackStopResult;
        expect(result.approvals).toEqual([expect.objectContaining({ decision: 'approved', by: 'bob', verified: 'unsigned' })]);
        expect(existsSync(marker)).toBe(false);
        const audit = await runbookCli({ RUNBOOK_TASK_QUEUE: taskQueue })('audit', workflowId);
        expect(audit.exitCode, audit.stderr).toBe(0);
        expect(audit.stdout).toMatch(/approve accepted {2}by bob {2}\[UNSIGNED \(accepted without a signature\)\]/);
        expect(audit.stdout).toMatch(/warning: 1 answer\(s\) accepted unsigned/);
      },
      { taskQueue },
    );
  });
});
