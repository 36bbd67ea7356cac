import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError, WorkflowUpdateFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approvalsQuery, approveSignal, approveUpdate, pendingApprovalQuery, rejectUpdate } from '../../common/messages.js';
import type { PendingApproval } from '../../common/types.js';
import type { ServiceRestartResult, StackStartResult, StackStopResult } from '../../common/stack/types.js';
import { demoConfig, type DemoPorts } from '../../demo/config.js';
import { demoServiceAction, DEMO_SERVICES } from '../../demo/env.js';
import type { LoadedConfig } from '../../lib/config.js';
import { freeDemoPorts } from '../fixtures/servers.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';

let stateDir: string;
let ports: DemoPorts;
let loaded: LoadedConfig;

beforeAll(async () => {
  stateDir = await mkdtemp(path.join(tmpdir(), 'runbook-stack-'));
  ports = await freeDemoPorts();
  loaded = await writeConfig(demoConfig({ stateDir, ports, approvers: ['alice', 'bob'] }));
});

afterAll(async () => {
  for (const svc of [...DEMO_SERVICES].reverse()) await demoServiceAction('stop', svc, { stateDir, port: portOf(svc) });
  await rm(stateDir, { recursive: true, force: true });
});

function portOf(svc: string): number {
  return { postgres: ports.postgres, redis: ports.redis, nats: ports.nats, api: ports.apiHttp }[svc]!;
}

const pgUrl = () => `postgres://postgres@127.0.0.1:${ports.postgres}/postgres`;

async function running(svc: string): Promise<boolean> {
  return (await demoServiceAction('status', svc, { stateDir, port: portOf(svc) })).exitCode === 0;
}

async function waitForPending(handle: WorkflowHandle): Promise<PendingApproval> {
  for (let i = 0; i < 100; i++) {
    const p = await handle.query(pendingApprovalQuery);
    if (p) return p;
    await sleep(100);
  }
  throw new Error('no approval became pending');
}

async function refusedUpdate(handle: WorkflowHandle, by: string, extra: Record<string, string> = {}): Promise<string> {
  const err = await handle.executeUpdate(approveUpdate, { args: [{ by, step: 'approve-delete', ...extra }] }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
  return (err as WorkflowUpdateFailedError).cause?.message ?? '';
}

async function startStack(client: Client, taskQueue: string, record?: string): Promise<StackStartResult> {
  const workflowId = `stack-start-${Date.now()}`;
  const result = (await client.workflow.execute('stack-start', { taskQueue, workflowId, args: [{ requestedBy: 'alice' }] })) as StackStartResult;
  if (record) await recordHistory(client, workflowId, record);
  return result;
}

describe('stack lifecycle on the demo environment', () => {
  it('stack-start: preflight, infra, wait, migrations, apps, wait, final health', async () => {
    const result = await withWorker(loaded, ({ client, taskQueue }) => startStack(client, taskQueue, 'stack-start'));
    expect(result.ok).toBe(true);
    expect(result.preflight?.ok).toBe(true);
    expect(result.started.map((s) => s.service).sort()).toEqual(['api', 'nats', 'postgres', 'redis']);
    expect(result.progress.steps.map((s) => [s.id, s.status])).toEqual([
      ['plan', 'succeeded'],
      ['preflight', 'succeeded'],
      ['start-infra', 'succeeded'],
      ['wait-infra', 'succeeded'],
      ['migrations', 'succeeded'],
      ['start-apps', 'succeeded'],
      ['wait-apps', 'succeeded'],
      ['health', 'succeeded'],
    ]);
    expect(result.migrations[0]!.applied.map((m) => m.version)).toEqual(['001', '002']);
    expect(result.health.worst).not.toBe('P0');
    // What an operator would check by hand: the tables exist and the API answers.
    const db = new pg.Client({ connectionString: pgUrl() });
    await db.connect();
    const rows = await db.query('SELECT version FROM schema_migrations ORDER BY version');
    await db.end();
    expect(rows.rows.map((r: { version: string }) => r.version)).toEqual(['001', '002']);
    const res = await fetch(`http://127.0.0.1:${ports.apiHttp}/healthz`);
    expect(res.status).toBe(200);
  });

  it('stack-start again starts nothing twice and applies no migration twice', async () => {
    const result = await withWorker(loaded, ({ client, taskQueue }) => startStack(client, taskQueue));
    expect(result.ok).toBe(true);
    expect(result.started).toEqual([]);
    expect(result.progress.steps.find((s) => s.id === 'start-infra')?.detail).toMatch(/already healthy: postgres, redis, nats/);
    expect(result.migrations[0]!.applied).toEqual([]);
  });

  it('service-restart restarts one service and waits until it is healthy again', async () => {
    const pidFile = path.join(stateDir, 'demo', 'api', 'api.pid');
    const before = (await readFile(pidFile, 'utf8')).trim();
    const result = await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const workflowId = `restart-${Date.now()}`;
        const r = (await client.workflow.execute('service-restart', { taskQueue, workflowId, args: [{ service: 'api', requestedBy: 'alice' }] })) as ServiceRestartResult;
        await recordHistory(client, workflowId, 'service-restart');
        return r;
      },
    );
    const after = (await readFile(pidFile, 'utf8')).trim();
    expect(after).not.toBe(before);
    expect(result.ok).toBe(true);
    expect(result.health.results.every((r) => r.status === 'healthy')).toBe(true);
  });

  it('stack-stop clean: refuses strangers, the requester, wrong and stale confirmations; timeout and reject keep everything', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('stack-stop', {
        taskQueue,
        workflowId: `stack-stop-refusals-${Date.now()}`,
        args: [{ clean: true, requestedBy: 'alice' }],
      });
      const pending = await waitForPending(handle);
      expect(pending).toMatchObject({ step: 'approve-delete', destructive: true, confirmPhrase: 'DELETE', approvers: ['alice', 'bob'] });

      expect(await refusedUpdate(handle, 'mallory', { confirm: 'DELETE' })).toMatch(/mallory is not an approver of stack-stop step approve-delete/);
      expect(await refusedUpdate(handle, 'alice', { confirm: 'DELETE' })).toMatch(/two-person rule/);
      expect(await refusedUpdate(handle, 'bob', { confirm: 'delete' })).toMatch(/confirmation must be exactly "DELETE" \(got "delete"\)/);
      expect(await refusedUpdate(handle, 'bob', { confirm: 'DELETE', step: 'approve-restore' })).toMatch(/stale or misdirected/);
      expect(await refusedUpdate(handle, 'bob', { confirm: 'DELETE', step: '' })).toMatch(/"step" is required/);
      // The UI's signal cannot be refused synchronously: it is recorded with its reason, like the refused updates.
      await handle.signal(approveSignal, { by: 'bob', confirm: 'delete', step: 'approve-delete' });
      let refusals: Array<{ by: string; step: string; answer: string; reason: string }> = [];
      for (let i = 0; i < 50 && refusals.length < 6; i++) {
        refusals = (await handle.query(approvalsQuery)).refusals;
        if (refusals.length < 6) await sleep(100);
      }
      expect(refusals.map((r) => [r.by, r.answer, r.reason.split(/[:(]/)[0]!.trim()])).toEqual([
        ['mallory', 'approve', 'mallory is not an approver of stack-stop step approve-delete'],
        ['alice', 'approve', 'alice requested this run and cannot approve its destructive step'],
        ['bob', 'approve', 'confirmation must be exactly "DELETE"'],
        ['bob', 'approve', 'this answer is for step "approve-restore" but the pending step is "approve-delete"'],
        ['bob', 'approve', '"step" is required'],
        ['bob', 'approve', 'confirmation must be exactly "DELETE"'],
      ]);
      expect(await handle.query(pendingApprovalQuery)).toMatchObject({ step: 'approve-delete', approvedBy: [] });

      const record = await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', comment: 'not during business hours', step: 'approve-delete' }] });
      expect(record).toMatchObject({ decision: 'rejected', by: 'bob' });
      const err = await handle.result().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect((err as WorkflowFailedError).cause?.message).toMatch(
        /step approve-delete rejected by bob: not during business hours; nothing was stopped and no data was deleted/,
      );
      expect(await running('postgres')).toBe(true);
      await recordHistory(client, handle.workflowId, 'stack-stop-refusals-rejected');

      const timed = await client.workflow
        .execute('stack-stop', {
          taskQueue,
          workflowId: `stack-stop-timeout-${Date.now()}`,
          args: [{ clean: true, requestedBy: 'alice', approvalTimeoutSeconds: 2 }],
        })
        .catch((e: unknown) => e);
      expect((timed as WorkflowFailedError).cause?.message).toMatch(/no answer within 2s; nothing was stopped/);
      expect(await running('postgres')).toBe(true);
    });
  });

  it('stack-stop clean: bob approves with DELETE, everything stops and the data is gone', async () => {
    const dataDir = path.join(stateDir, 'demo', 'postgres');
    expect(existsSync(dataDir)).toBe(true);
    const result = await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('stack-stop', {
        taskQueue,
        workflowId: `stack-stop-clean-${Date.now()}`,
        args: [{ clean: true, requestedBy: 'alice' }],
      });
      await waitForPending(handle);
      // Findable the way the UI's saved filter finds it.
      let found = false;
      for (let i = 0; i < 50 && !found; i++) {
        for await (const wf of client.workflow.list({ query: `AwaitingApproval = true AND WorkflowId = '${handle.workflowId}'` })) {
          found = wf.workflowId === handle.workflowId;
        }
        if (!found) await sleep(200);
      }
      expect(found).toBe(true);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', comment: 'decommissioning', step: 'approve-delete' }] });
      const r = (await handle.result()) as StackStopResult;
      await recordHistory(client, handle.workflowId, 'stack-stop-clean-approved');
      return r;
    });
    expect(result).toMatchObject({ ok: true, clean: true, dataDeleted: true });
    expect(result.approvals).toEqual([expect.objectContaining({ step: 'approve-delete', decision: 'approved', by: 'bob', comment: 'decommissioning' })]);
    // Apps first, then infra: the reverse of the start order.
    expect(result.stopped.map((s) => s.service)).toEqual(['api', 'postgres', 'redis', 'nats']);
    for (const svc of DEMO_SERVICES) expect(await running(svc)).toBe(false);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('stack-stop without clean keeps the data', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      await startStack(client, taskQueue);
      const result = (await client.workflow.execute('stack-stop', {
        taskQueue,
        workflowId: `stack-stop-${Date.now()}`,
        args: [{ requestedBy: 'alice' }],
      })) as StackStopResult;
      expect(result).toMatchObject({ ok: true, clean: false, dataDeleted: false, cleaned: [] });
      expect(result.stopped).toHaveLength(4);
    });
    expect(await running('postgres')).toBe(false);
    expect(existsSync(path.join(stateDir, 'demo', 'postgres', 'data', 'PG_VERSION'))).toBe(true);
  });
});
