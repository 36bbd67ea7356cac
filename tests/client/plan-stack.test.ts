import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunPlan } from '../../common/plan.js';
import type { ProcedureId } from '../../common/procedures.js';
import type { RunProgress } from '../../common/types.js';
import { demoConfig, type DemoPorts } from '../../demo/config.js';
import { demoServiceAction, DEMO_SERVICES } from '../../demo/env.js';
import type { LoadedConfig } from '../../lib/config.js';
import { planRun } from '../../client/plan.js';
import { freeDemoPorts } from '../fixtures/servers.js';
import { runbookCli, withWorker, writeConfig } from '../fixtures/runbook-worker.js';

/**
 * `runbook plan` for the stack family on the demo environment (real PostgreSQL, Redis, NATS
 * and the demo API): each plan changes nothing, and lists the steps the real run then executes.
 */

let stateDir: string;
let ports: DemoPorts;
let loaded: LoadedConfig;

beforeAll(async () => {
  stateDir = await mkdtemp(path.join(tmpdir(), 'runbook-plan-stack-'));
  ports = await freeDemoPorts();
  loaded = await writeConfig({ ...demoConfig({ stateDir, ports, approvers: ['alice', 'bob'] }), environment: 'plan-stack' });
});

afterAll(async () => {
  for (const svc of [...DEMO_SERVICES].reverse()) await demoServiceAction('stop', svc, { stateDir, port: portOf(svc) });
  await rm(stateDir, { recursive: true, force: true });
});

function portOf(svc: string): number {
  return { postgres: ports.postgres, redis: ports.redis, nats: ports.nats, api: ports.apiHttp }[svc]!;
}

async function running(svc: string): Promise<boolean> {
  return (await demoServiceAction('status', svc, { stateDir, port: portOf(svc) })).exitCode === 0;
}

/** Each demo service's pid (PostgreSQL's from postmaster.pid): a restart changes it. */
async function pids(): Promise<string[]> {
  const file = (s: string) => path.join(stateDir, 'demo', s, s === 'postgres' ? 'data/postmaster.pid' : `${s}.pid`);
  return Promise.all(DEMO_SERVICES.map((s) => readFile(file(s), 'utf8').then((t) => t.split('\n')[0]!.trim(), () => '')));
}

function plan(client: Client, taskQueue: string, procedure: ProcedureId, input: Record<string, unknown>): Promise<RunPlan> {
  return planRun({ client, taskQueue, procedure, input: { requestedBy: 'alice', ...input }, requestedBy: 'alice', environment: 'plan-stack' });
}

/** The steps in order, as the plan lists them and as the run's progress shows them. */
const stepsOf = (x: RunPlan | RunProgress) => x.steps.map((s) => `${s.id}: ${s.title}`);

async function execute(client: Client, taskQueue: string, procedure: ProcedureId, input: Record<string, unknown>): Promise<{ progress: RunProgress }> {
  return (await client.workflow.execute(procedure, { taskQueue, workflowId: `${procedure}-${Date.now()}`, args: [{ requestedBy: 'alice', ...input }] })) as { progress: RunProgress };
}

describe('runbook plan: stack family', () => {
  it('stack-start: the plan runs preflight and probes only, starts nothing, and lists the steps the real run executes', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const p = await plan(client, taskQueue, 'stack-start', {});
      expect(p.plan).toBe(true);
      expect(p.workflowId).toMatch(/^plan--stack-start--plan-stack--/);
      expect(p.refused).toBeUndefined();
      expect(p.steps.map((s) => [s.id, s.kind])).toEqual([
        ['plan', 'checked'],
        ['preflight', 'checked'],
        ['start-infra', 'would-do'],
        ['wait-infra', 'would-do'],
        ['migrations', 'would-do'],
        ['start-apps', 'would-do'],
        ['wait-apps', 'would-do'],
        ['health', 'would-do'],
      ]);
      const startInfra = p.steps.find((s) => s.id === 'start-infra')!;
      expect(startInfra.detail).toMatch(/^would run serviceAction start (postgres|redis|nats)$/);
      expect(startInfra.touches.filter((t) => t.startsWith('runProbe')).length).toBeGreaterThan(0);
      expect(p.stoppedAt?.step).toBe('start-infra');
      expect(p.steps.find((s) => s.id === 'wait-infra')!.title).toMatch(/\(\d+s\)/);
      for (const svc of DEMO_SERVICES) expect(await running(svc)).toBe(false);

      const real = await execute(client, taskQueue, 'stack-start', {});
      expect(stepsOf(p)).toEqual(stepsOf(real.progress));
      // The steps the plan ran read what the run's first steps then show.
      const checked = p.steps.filter((s) => s.kind === 'checked');
      expect(checked.map((s) => [s.id, s.detail])).toEqual(checked.map((c) => [c.id, real.progress.steps.find((s) => s.id === c.id)!.detail]));
      expect(real.progress.steps.every((s) => s.status === 'succeeded')).toBe(true);
    });
  });

  it('health-check, health-watch and service-restart: plans with the stack up; nothing restarts, and the real runs match', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const before = await pids();
      expect(before.every((pid) => pid !== '')).toBe(true);

      const health = await plan(client, taskQueue, 'health-check', {});
      // Only reads: the whole run is the plan, every step checked.
      expect(health.steps.map((s) => s.kind)).toEqual(health.steps.map(() => 'checked'));
      expect(health.stoppedAt).toBeUndefined();
      expect(stepsOf(health)).toEqual(stepsOf((await execute(client, taskQueue, 'health-check', {})).progress));

      const watch = await plan(client, taskQueue, 'health-watch', { windowSeconds: 2, sampleEverySeconds: 1 });
      expect(watch.refused).toBeUndefined();
      expect(watch.stoppedAt?.activity).toMatch(/^wait \ds$/);
      expect(stepsOf(watch)).toEqual(stepsOf((await execute(client, taskQueue, 'health-watch', { windowSeconds: 2, sampleEverySeconds: 1 })).progress));

      const restart = await plan(client, taskQueue, 'service-restart', { service: 'api' });
      expect(restart.steps.find((s) => s.kind === 'would-do')?.detail).toBe('would run serviceAction restart api');
      expect(await pids()).toEqual(before);
      expect(stepsOf(restart)).toEqual(stepsOf((await execute(client, taskQueue, 'service-restart', { service: 'api' })).progress));
      expect((await pids())[DEMO_SERVICES.indexOf('api')]).not.toBe(before[DEMO_SERVICES.indexOf('api')]);
    });
  });

  it('service-restart of an unknown service: the plan says it is refused, naming the field', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const p = await plan(client, taskQueue, 'service-restart', { service: 'nosuch' });
      expect(p.refused?.message).toMatch(/service/);
      expect(p.refused?.message).toMatch(/nosuch/);
      expect(p.steps.filter((s) => s.kind === 'checked').map((s) => s.id)).toEqual(['plan']);
    });
  });

  it('runbook plan stack-stop --input {"clean":true}: text and --json name the approval, who gives it and the phrase; nothing stops', async () => {
    await withWorker(loaded, async ({ taskQueue }) => {
      const before = await pids();
      const cli = runbookCli({ RUNBOOK_TASK_QUEUE: taskQueue, RUNBOOK_CONFIG: loaded.path, RUNBOOK_USER: 'alice' });
      const text = await cli('plan', 'stack-stop', '--input', '{"clean": true}');
      expect(text.stderr).toBe('');
      expect(text.exitCode).toBe(0);
      expect(text.stdout).toMatch(/^plan of stack-stop for alice \(plan--stack-stop--plan-stack--[^)]+\): nothing was changed$/m);
      expect(text.stdout).toMatch(/ 2\. \[approval\] approve-delete: Approve deleting all data - not asked in a plan\n {6}approvers: alice, bob \(not the requester, confirm "DELETE", times out after \d+s\)/);
      expect(text.stdout).toMatch(/\[would do\] stop-apps: Stop apps - would run serviceStatus api|\[would do\] stop-apps: Stop apps - would run serviceAction stop api/);

      const json = await cli('plan', 'stack-stop', '--input', '{"clean": true}', '--json');
      expect(json.exitCode).toBe(0);
      const p = JSON.parse(json.stdout) as RunPlan;
      expect(p.steps.map((s) => [s.id, s.kind])).toEqual([
        ['plan', 'checked'],
        ['approve-delete', 'approval'],
        ['stop-apps', 'would-do'],
        ['stop-infra', 'would-do'],
        ['delete-data', 'would-do'],
      ]);
      expect(p.steps[1]!.approval).toMatchObject({ approvers: ['alice', 'bob'], quorum: 1, destructive: true, confirmPhrase: 'DELETE' });
      expect(await pids()).toEqual(before);
      for (const svc of DEMO_SERVICES) expect(await running(svc)).toBe(true);

      const unknown = await cli('plan', 'service-restart', '--input', '{"service": "nosuch"}');
      expect(unknown.exitCode).toBe(1);
      expect(unknown.stderr).toMatch(/service/);
      expect(unknown.stderr).toMatch(/nosuch/);
    });
  });

  it('stack-stop: the real run executes the planned steps', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const p = await plan(client, taskQueue, 'stack-stop', {});
      const real = await execute(client, taskQueue, 'stack-stop', {});
      expect(stepsOf(p)).toEqual(stepsOf(real.progress));
      for (const svc of DEMO_SERVICES) expect(await running(svc)).toBe(false);
    });
  });
});
