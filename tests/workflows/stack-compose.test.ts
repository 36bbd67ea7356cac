import { appendFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, WorkflowHandle } from '@temporalio/client';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approveUpdate, pendingApprovalQuery } from '../../common/messages.js';
import type { HealthCheckResult, PendingApproval } from '../../common/types.js';
import type { ServiceRestartResult, StackStartResult, StackStopResult } from '../../common/stack/types.js';
import { containerEngineMissing, CONTAINERS_REQUIRED, startContainerEngine, type ContainerEngine } from '../fixtures/containers.js';
import { writeFulcrumStack, type ComposeSyntax, type FulcrumStack } from '../fixtures/fulcrum-compose.js';
import { withWorker } from '../fixtures/runbook-worker.js';

/**
 * The stack runbooks (Fulcrum Stack start / stop / restart) through the compose driver on real
 * containers: Podman's Docker API, docker-compose v1, and `docker compose` (v2 syntax) through a
 * CLI-plugin shim that hands the call to v1, since the v2 plugin is not packaged here.
 */

const missing = containerEngineMissing();
let engine: ContainerEngine;

beforeAll(async () => {
  if (missing) {
    if (CONTAINERS_REQUIRED) throw new Error(missing);
    return;
  }
  engine = await startContainerEngine();
}, 600_000);

afterAll(async () => {
  if (!engine) return;
  await engine.stop();
});

const SERVICES = ['postgres', 'redis', 'nats', 'fulcrum-server'];

async function startStack(client: Client, taskQueue: string): Promise<StackStartResult> {
  return (await client.workflow.execute('stack-start', { taskQueue, workflowId: `stack-start-compose-${Date.now()}`, args: [{ requestedBy: 'alice' }] })) as StackStartResult;
}

async function restart(client: Client, taskQueue: string, mode: 'restart' | 'rebuild' | 'force-recreate'): Promise<ServiceRestartResult> {
  return (await client.workflow.execute('service-restart', {
    taskQueue,
    workflowId: `restart-compose-${mode}-${Date.now()}`,
    args: [{ service: 'fulcrum-server', mode, requestedBy: 'alice' }],
  })) as ServiceRestartResult;
}

async function waitForPending(handle: WorkflowHandle): Promise<PendingApproval> {
  for (let i = 0; i < 200; i++) {
    const p = await handle.query(pendingApprovalQuery);
    if (p) return p;
    await sleep(100);
  }
  throw new Error('no approval became pending');
}

async function migrationsIn(stack: FulcrumStack): Promise<string[]> {
  const db = new pg.Client({ connectionString: stack.pgUrl });
  await db.connect();
  try {
    return (await db.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version')).rows.map((r) => r.version);
  } finally {
    await db.end();
  }
}

async function states(stack: FulcrumStack): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const s of SERVICES) {
    const id = await stack.containerId(s);
    out[s] = id ? (await stack.inspect(id)).status : 'none';
  }
  return out;
}

describe.skipIf(missing !== undefined && !CONTAINERS_REQUIRED)('Fulcrum stack on real containers, docker-compose v1', { timeout: 180_000 }, () => {
  let stack: FulcrumStack;
  const run = <T>(fn: (ctx: { client: Client; taskQueue: string }) => Promise<T>) => withWorker(stack.loaded, fn, { env: stack.env });

  beforeAll(async () => {
    stack = await writeFulcrumStack(engine, { syntax: 'v1' });
  });

  afterAll(async () => {
    await stack?.remove();
  });

  it('stack-start: preflight (docker-compose answers), infra, health waits, migrations, apps', async () => {
    const result = await run(({ client, taskQueue }) => startStack(client, taskQueue));
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
    expect(result.ok).toBe(true);
    expect(result.preflight?.checks.find((c) => c.name === 'docker-compose')).toMatchObject({ ok: true, detail: expect.stringMatching(/^Docker Compose 1\./) });
    expect(result.started.map((s) => s.service).sort()).toEqual([...SERVICES].sort());
    expect(result.started[0]!.command).toMatch(/^docker-compose -f \S+docker-compose\.unified\.yml -p \S+ up -d postgres$/);
    expect(result.migrations[0]!.applied.map((m) => m.version)).toEqual(['001', '002']);
    // What an operator checks: the containers run, the tables exist, the API answers.
    expect(await states(stack)).toEqual({ postgres: 'running', redis: 'running', nats: 'running', 'fulcrum-server': 'running' });
    expect(await migrationsIn(stack)).toEqual(['001', '002']);
    expect((await fetch(`${stack.apiUrl}/healthz`)).status).toBe(200);
  });

  it('health-check: every probe of every container healthy', async () => {
    const result = await run(async ({ client, taskQueue }) =>
      (await client.workflow.execute('health-check', { taskQueue, workflowId: `hc-compose-${Date.now()}`, args: [{ requestedBy: 'alice' }] })) as HealthCheckResult,
    );
    expect(result.ok).toBe(true);
    expect(new Set(result.results.map((r) => r.service))).toEqual(new Set(SERVICES));
    expect(result.results.filter((r) => r.status !== 'healthy')).toEqual([]);
  });

  it('service-restart mode restart: the same container, started again, healthy', async () => {
    const id = (await stack.containerId('fulcrum-server'))!;
    const before = await stack.inspect(id);
    const result = await run(({ client, taskQueue }) => restart(client, taskQueue, 'restart'));
    expect(result.ok).toBe(true);
    expect(result.action.command).toMatch(/ restart fulcrum-server$/);
    expect(result.health.results.every((r) => r.status === 'healthy')).toBe(true);
    expect(await stack.containerId('fulcrum-server')).toBe(id);
    const after = await stack.inspect(id);
    expect(after.status).toBe('running');
    expect(after.startedAt).not.toBe(before.startedAt);
  });

  it('service-restart mode force-recreate: a new container of the same image', async () => {
    const id = (await stack.containerId('fulcrum-server'))!;
    const image = (await stack.inspect(id)).image;
    const result = await run(({ client, taskQueue }) => restart(client, taskQueue, 'force-recreate'));
    expect(result.ok).toBe(true);
    expect(result.action.command).toMatch(/ up -d --force-recreate fulcrum-server$/);
    const now = (await stack.containerId('fulcrum-server'))!;
    expect(now).not.toBe(id);
    expect(await stack.inspect(now)).toMatchObject({ status: 'running', image });
    expect((await fetch(`${stack.apiUrl}/healthz`)).status).toBe(200);
  });

  it('service-restart mode rebuild: the image is built again from the changed context and a new container runs it', async () => {
    const id = (await stack.containerId('fulcrum-server'))!;
    const image = (await stack.inspect(id)).image;
    await appendFile(path.join(stack.dir, 'fulcrum-server', 'Containerfile'), `LABEL org.example.rebuilt="${Date.now()}"\n`);
    const result = await run(({ client, taskQueue }) => restart(client, taskQueue, 'rebuild'));
    expect(result.ok).toBe(true);
    expect(result.action.command).toMatch(/ up -d --build fulcrum-server$/);
    const now = (await stack.containerId('fulcrum-server'))!;
    expect(now).not.toBe(id);
    const after = await stack.inspect(now);
    expect(after.status).toBe('running');
    expect(after.image).not.toBe(image);
    expect(result.health.results.every((r) => r.status === 'healthy')).toBe(true);
  });

  it('stack-stop keeps the data: containers stopped, volumes there, the next start finds the migrations applied', async () => {
    const volumes = await stack.volumes();
    expect(volumes).toHaveLength(3);
    const result = await run(async ({ client, taskQueue }) =>
      (await client.workflow.execute('stack-stop', { taskQueue, workflowId: `stack-stop-compose-${Date.now()}`, args: [{ requestedBy: 'alice' }] })) as StackStopResult,
    );
    expect(result).toMatchObject({ ok: true, clean: false, dataDeleted: false, cleaned: [] });
    expect(result.stopped.map((s) => s.service)).toEqual(['fulcrum-server', 'postgres', 'redis', 'nats']);
    expect(await states(stack)).toEqual({ postgres: 'exited', redis: 'exited', nats: 'exited', 'fulcrum-server': 'exited' });
    expect(await stack.volumes()).toEqual(volumes);

    const again = await run(({ client, taskQueue }) => startStack(client, taskQueue));
    expect(again.ok).toBe(true);
    expect(again.migrations[0]!.applied).toEqual([]);
    expect(await migrationsIn(stack)).toEqual(['001', '002']);
  });

  it('stack-stop clean: nothing stopped or removed while the approval waits; after bob approves, containers and volumes are gone', async () => {
    const volumes = await stack.volumes();
    const result = await run(async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId: `stack-stop-clean-compose-${Date.now()}`, args: [{ clean: true, requestedBy: 'alice' }] });
      expect(await waitForPending(handle)).toMatchObject({ step: 'approve-delete', destructive: true });
      // Held at the approval for a while: the stack still runs and keeps its volumes.
      await sleep(1500);
      expect(await states(stack)).toEqual({ postgres: 'running', redis: 'running', nats: 'running', 'fulcrum-server': 'running' });
      expect(await stack.volumes()).toEqual(volumes);
      expect(await migrationsIn(stack)).toEqual(['001', '002']);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', step: 'approve-delete' }] });
      return (await handle.result()) as StackStopResult;
    });
    expect(result).toMatchObject({ ok: true, clean: true, dataDeleted: true });
    expect(result.cleaned.map((c) => c.command)).toEqual([expect.stringMatching(/ down -v$/)]);
    expect(await stack.volumes()).toEqual([]);
    expect(await states(stack)).toEqual({ postgres: 'none', redis: 'none', nats: 'none', 'fulcrum-server': 'none' });
  });
});

describe.skipIf(missing !== undefined && !CONTAINERS_REQUIRED)('Fulcrum stack on real containers, `docker compose` (v2 syntax through the v1 shim)', { timeout: 180_000 }, () => {
  let stack: FulcrumStack;
  const syntax: ComposeSyntax = 'v2';
  const run = <T>(fn: (ctx: { client: Client; taskQueue: string }) => Promise<T>) => withWorker(stack.loaded, fn, { env: stack.env });

  beforeAll(async () => {
    stack = await writeFulcrumStack(engine, { syntax });
  });

  afterAll(async () => {
    await stack?.remove();
  });

  it('stack-start, force-recreate and a clean stop with `docker compose …` commands', async () => {
    const started = await run(({ client, taskQueue }) => startStack(client, taskQueue));
    expect(started.ok).toBe(true);
    expect(started.preflight?.checks.find((c) => c.name === 'docker compose')).toMatchObject({ ok: true });
    expect(started.started[0]!.command).toMatch(/^docker compose -f \S+ -p \S+ up -d postgres$/);
    expect(await states(stack)).toEqual({ postgres: 'running', redis: 'running', nats: 'running', 'fulcrum-server': 'running' });

    const id = await stack.containerId('fulcrum-server');
    const recreated = await run(({ client, taskQueue }) => restart(client, taskQueue, 'force-recreate'));
    expect(recreated.ok).toBe(true);
    expect(await stack.containerId('fulcrum-server')).not.toBe(id);

    const stopped = await run(async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId: `stack-stop-clean-v2-${Date.now()}`, args: [{ clean: true, requestedBy: 'alice' }] });
      await waitForPending(handle);
      expect((await stack.volumes()).length).toBe(3);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', step: 'approve-delete' }] });
      return (await handle.result()) as StackStopResult;
    });
    expect(stopped).toMatchObject({ ok: true, dataDeleted: true });
    expect(await stack.volumes()).toEqual([]);
  });
});
