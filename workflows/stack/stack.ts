import { policyOf } from '../../common/approvals.js';
import { ApplicationFailure, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { ErrorTypes } from '../../common/errors.js';
import { PROCEDURES } from '../../common/procedures.js';
import type { MigrationRunResult, PlanService, PreflightResult, ProbeResult, RunbookPlan, ServiceActionResult } from '../../common/types.js';
import type { ServiceRestartInput, ServiceRestartResult, StackStartInput, StackStartResult, StackStopInput, StackStopResult } from '../../common/stack/types.js';
import { checkHealth, selectServices, summarizeHealth } from '../shared/health.js';
import { localProbe, localQuick, longRunning, quick } from '../shared/profiles.js';
import { RunContext } from '../shared/run-context.js';

const { preflight, serviceStatus } = proxyActivities<Activities>(quick);
const { loadPlan } = proxyLocalActivities<Activities>(localQuick);
const { runProbe } = proxyLocalActivities<Activities>(localProbe);
const { serviceAction, cleanServices, waitHealthy, migrate } = proxyActivities<Activities>(longRunning);

/** Services of a group in dependency layers: each layer depends only on earlier layers or other groups. */
export function dependencyLayers(services: readonly PlanService[]): PlanService[][] {
  const inGroup = new Set(services.map((s) => s.name));
  const done = new Set<string>();
  const layers: PlanService[][] = [];
  let rest = [...services];
  while (rest.length > 0) {
    const layer = rest.filter((s) => s.dependsOn.every((d) => !inGroup.has(d) || done.has(d)));
    if (layer.length === 0) throw ApplicationFailure.nonRetryable('services.dependsOn has a cycle', ErrorTypes.InvalidConfig);
    layers.push(layer);
    layer.forEach((s) => done.add(s.name));
    rest = rest.filter((s) => !done.has(s.name));
  }
  return layers;
}

function groupServices(plan: RunbookPlan, group: string): PlanService[] {
  return plan.services.filter((s) => s.group === group);
}

/** Services whose every probe answers healthy right now (a service without probes never counts as healthy). */
async function healthyNow(services: readonly PlanService[]): Promise<Set<string>> {
  const results = await Promise.all(
    services.flatMap((s) => s.probes.map((p) => runProbe({ service: s.name, index: p.index }))),
  );
  const bad = new Set(results.filter((r) => r.status !== 'healthy').map((r) => r.service));
  return new Set(services.filter((s) => s.probes.length > 0 && !bad.has(s.name)).map((s) => s.name));
}

async function waitForGroup(plan: RunbookPlan, services: readonly PlanService[], timeoutSeconds: number): Promise<ProbeResult[]> {
  const withProbes = services.filter((s) => s.probes.length > 0).map((s) => s.name);
  if (withProbes.length === 0) return [];
  return waitHealthy({
    services: withProbes,
    timeoutSeconds,
    deadline: Date.now() + timeoutSeconds * 1000,
    pollIntervalSeconds: plan.pollIntervalSeconds,
  });
}

/** `stack-start`: Fulcrum 1.1 — preflight, infra, wait, migrations, apps, wait, final health report. */
export async function stackStart(rawInput?: StackStartInput): Promise<StackStartResult> {
  const input = await RunContext.input(PROCEDURES.stackStart, rawInput);
  const ctx = new RunContext(PROCEDURES.stackStart, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['preflight', 'Preflight checks'],
  ]);
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadPlan({ procedure: PROCEDURES.stackStart }), (p) => `${p.services.length} services in ${p.groups.length} groups`);
    for (const g of plan.groups) {
      ctx.addStep(`start-${g.name}`, `Start ${g.name}`);
      ctx.addStep(`wait-${g.name}`, `Wait for ${g.name} to be healthy (${input.waitTimeoutSeconds ?? g.waitTimeoutSeconds}s)`);
      if (g.runMigrationsAfter) ctx.addStep('migrations', 'Run database migrations');
    }
    ctx.addStep('health', 'Final health report');
    startHints(ctx, plan);

    let preflightResult: PreflightResult | undefined;
    if (input.skipPreflight) {
      ctx.skip('preflight', 'skipped by input skipPreflight');
    } else {
      preflightResult = await ctx.step(
        'preflight',
        async () => {
          const healthy = await healthyNow(plan.services);
          const tolerantPorts = plan.services.filter((s) => healthy.has(s.name)).flatMap((s) => s.ports);
          const result = await preflight({ tolerantPorts });
          if (!result.ok) {
            const failed = result.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
            throw ApplicationFailure.create({
              type: ErrorTypes.PreflightFailed,
              nonRetryable: true,
              message: `preflight failed, nothing was started: ${failed.join('; ')}`,
              details: [result],
            });
          }
          return result;
        },
        (r) => `${r.checks.length} checks passed`,
      );
    }

    const started: ServiceActionResult[] = [];
    const migrations: MigrationRunResult[] = [];
    for (const g of plan.groups) {
      const services = groupServices(plan, g.name);
      await ctx.step(
        `start-${g.name}`,
        async () => {
          // Check state before acting: a service that already answers healthy is not started twice.
          const healthy = await healthyNow(services);
          const notes = { healthy: [] as string[], unmanaged: [] as string[], started: 0 };
          for (const layer of dependencyLayers(services)) {
            const toStart = layer.filter((s) => !healthy.has(s.name) && s.actions.includes('start'));
            notes.healthy.push(...layer.filter((s) => healthy.has(s.name)).map((s) => s.name));
            notes.unmanaged.push(...layer.filter((s) => !healthy.has(s.name) && !s.actions.includes('start')).map((s) => s.name));
            started.push(...(await Promise.all(toStart.map((s) => serviceAction({ service: s.name, action: 'start' })))));
            notes.started += toStart.length;
          }
          return notes;
        },
        (n) =>
          [
            `${n.started} started`,
            n.healthy.length ? `already healthy: ${n.healthy.join(', ')}` : '',
            n.unmanaged.length ? `no start command, waited for: ${n.unmanaged.join(', ')}` : '',
          ]
            .filter(Boolean)
            .join(', '),
      );
      await ctx.step(
        `wait-${g.name}`,
        () => waitForGroup(plan, services, input.waitTimeoutSeconds ?? g.waitTimeoutSeconds),
        (r) => `${r.length} probes healthy`,
      );
      if (g.runMigrationsAfter) {
        const dbs = plan.databases.filter((d) => d.hasMigrations);
        if (input.skipMigrations || dbs.length === 0) {
          ctx.skip('migrations', input.skipMigrations ? 'skipped by input skipMigrations' : 'no database has migrationsDir');
        } else {
          await ctx.step(
            'migrations',
            async () => {
              for (const db of dbs) migrations.push(await migrate({ database: db.name, dryRun: false }));
              return migrations;
            },
            (ms) => ms.map((m) => `${m.database}: ${m.applied.length} applied`).join(', '),
          );
        }
      }
    }

    const health = await ctx.step('health', () => checkHealth(plan, plan.services), summarizeHealth);
    return { ok: health.ok, preflight: preflightResult, started, migrations, health, progress: ctx.progress };
  });
}

/** `stack-stop`: Fulcrum 1.2 — apps then infra, data kept; with clean, data deleted only after an approval confirmed with DELETE. */
export async function stackStop(rawInput?: StackStopInput): Promise<StackStopResult> {
  const input = await RunContext.input(PROCEDURES.stackStop, rawInput);
  const clean = input.clean === true;
  const ctx = new RunContext(PROCEDURES.stackStop, input.requestedBy ?? 'unknown', [['plan', 'Load configuration']]);
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadPlan({ procedure: PROCEDURES.stackStop }), (p) => `${p.services.length} services`);
    const groups = [...plan.groups].reverse();
    if (clean) ctx.addStep('approve-delete', 'Approve deleting all data');
    for (const g of groups) ctx.addStep(`stop-${g.name}`, `Stop ${g.name}`);
    if (clean) ctx.addStep('delete-data', 'Delete data');
    const stopping = stopCancellation(ctx, plan, clean);

    if (clean) {
      // Asked before anything stops, as the runbook's script does: a refusal leaves the stack as it was.
      const record = await ctx.requestApproval({
        step: 'approve-delete',
        summary: `Stop the ${plan.environment} stack and DELETE ALL DATA of ${plan.services.map((s) => s.name).join(', ')} (volumes, data directories). This cannot be undone.`,
        destructive: true,
        confirmPhrase: 'DELETE',
        policy: policyOf(plan),
        timeoutSeconds: input.approvalTimeoutSeconds ?? plan.approvalTimeoutSeconds,
      });
      RunContext.failUnlessApproved(record, 'nothing was stopped and no data was deleted');
    }

    const stopped: ServiceActionResult[] = [];
    for (const g of groups) {
      const services = groupServices(plan, g.name);
      await ctx.step(
        `stop-${g.name}`,
        async () => {
          const notes = { stopped: 0, already: [] as string[], unmanaged: [] as string[] };
          for (const layer of dependencyLayers(services).reverse()) {
            const managed = layer.filter((s) => s.actions.includes('stop'));
            notes.unmanaged.push(...layer.filter((s) => !s.actions.includes('stop')).map((s) => s.name));
            const statuses = await Promise.all(managed.map((s) => serviceStatus({ service: s.name })));
            const running = managed.filter((_, i) => statuses[i]!.running !== false);
            stopping.push(...running);
            notes.already.push(...managed.filter((_, i) => statuses[i]!.running === false).map((s) => s.name));
            stopped.push(...(await Promise.all(running.map((s) => serviceAction({ service: s.name, action: 'stop' })))));
            notes.stopped += running.length;
          }
          return notes;
        },
        (n) =>
          [
            `${n.stopped} stopped`,
            n.already.length ? `already stopped: ${n.already.join(', ')}` : '',
            n.unmanaged.length ? `no stop command, left alone: ${n.unmanaged.join(', ')}` : '',
          ]
            .filter(Boolean)
            .join(', '),
      );
    }

    let cleaned: ServiceActionResult[] = [];
    if (clean) {
      cleaned = await ctx.step(
        'delete-data',
        () => cleanServices({ services: plan.services.map((s) => s.name) }),
        (r) => `${r.length} clean commands run`,
      );
    }
    return {
      ok: true,
      clean,
      dataDeleted: clean,
      stopped,
      cleaned,
      approvals: ctx.approvals,
      refusals: ctx.refusals,
      refusalsDropped: ctx.refusalsDropped,
      progress: ctx.progress,
    };
  });
}

/** What a stack-start that stops early leaves: starting is never undone by itself, running it again finishes it. */
function startHints(ctx: RunContext, plan: RunbookPlan): void {
  const again = 'run stack-start again to finish (it skips what is already healthy and migrations already applied), or stack-stop to stop what started';
  ctx.hint('preflight', { state: 'nothing was started', next: 'run stack-start again' });
  plan.groups.forEach((g, i) => {
    const groups = plan.groups.slice(0, i + 1).map((x) => x.name).join(', ');
    ctx.hint(`start-${g.name}`, { state: `part of the stack may be started (groups ${groups})`, next: again });
    ctx.hint(`wait-${g.name}`, { state: `${groups} started, ${g.name} not yet seen healthy`, next: again });
    if (g.runMigrationsAfter) ctx.hint('migrations', { state: `${groups} started; migrations may be partly applied (each in its own transaction)`, next: again });
  });
  ctx.hint('health', { state: 'the stack is started; the final health report was not taken', next: 'run health-check' });
}

/**
 * How a cancelled stack-stop ends. Before any data is touched the stop is undone: the services
 * this run set out to stop are started again (infra first), so a stop cancelled by mistake
 * leaves the stack as it was. Once deleting data has begun nothing is restarted on data that
 * may be half deleted. Returns the list the stop steps fill with what they stop.
 */
function stopCancellation(ctx: RunContext, plan: RunbookPlan, clean: boolean): PlanService[] {
  const stopping: PlanService[] = [];
  const again = `run stack-stop${clean ? ' with {"clean": true}' : ''} again when it should stop`;
  ctx.hint('plan', { state: 'nothing was stopped', next: again });
  if (clean) ctx.hint('approve-delete', { state: 'nothing was stopped and no data was deleted', next: again });
  for (const g of plan.groups) {
    ctx.hint(`stop-${g.name}`, { state: `some services may be stopped`, next: `run stack-start to bring them back, or ${again}` });
  }
  if (clean) {
    ctx.hint('delete-data', {
      state: `every service is stopped and deleting their data was interrupted: part of the data of ${plan.services.map((s) => s.name).join(', ')} may be deleted`,
      next: 'run stack-stop with {"clean": true} again to finish deleting, or restore the data from backups and run stack-start',
    });
  }
  ctx.onCancel(async () => {
    if (stopping.length === 0) return undefined;
    if (clean && ctx.stepOf('delete-data').status !== 'pending') return undefined;
    const names = stopping.map((s) => s.name);
    ctx.addStep('undo-stop', 'Cleanup: start again what this run stopped');
    try {
      const started = await ctx.step(
        'undo-stop',
        async () => {
          const out: string[] = [];
          for (const g of plan.groups) {
            for (const layer of dependencyLayers(groupServices(plan, g.name))) {
              const mine = layer.filter((s) => names.includes(s.name) && s.actions.includes('start'));
              const statuses = await Promise.all(mine.map((s) => serviceStatus({ service: s.name })));
              const down = mine.filter((_, i) => statuses[i]!.running !== true);
              await Promise.all(down.map((s) => serviceAction({ service: s.name, action: 'start' })));
              out.push(...down.map((s) => s.name));
            }
          }
          return out;
        },
        (out) => (out.length ? `started again: ${out.join(', ')}` : `nothing was left stopped (${names.join(', ')} running)`),
      );
      return {
        did: started.length ? `started again ${started.join(', ')}, stopped by this run` : `${names.join(', ')} still running, nothing to start again`,
        state: `the stack runs as before the run${clean ? '; no data was deleted' : ''}`,
        next: again,
      };
    } catch (err) {
      return {
        did: `starting ${names.join(', ')} again failed: ${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)}`,
        state: `stopped by this run: ${names.join(', ')}${clean ? '; no data was deleted' : ''}`,
        next: 'run stack-start to bring them back',
      };
    }
  });
  return stopping;
}

/** `service-restart`: Fulcrum 1.3 — restart, rebuild or force-recreate one service, then wait for its health. */
export async function serviceRestart(rawInput?: ServiceRestartInput): Promise<ServiceRestartResult> {
  const input = await RunContext.input(PROCEDURES.serviceRestart, rawInput);
  const mode = input.mode ?? 'restart';
  const ctx = new RunContext(PROCEDURES.serviceRestart, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['action', `${mode} ${input.service}`],
    ['wait', `Wait for ${input.service} to be healthy`],
  ]);
  ctx.hint('action', { state: `${input.service} may be stopped or half way through its ${mode}`, next: `run service-restart again, then health-check` });
  ctx.hint('wait', { state: `${input.service} was restarted (${mode}) but not yet seen healthy`, next: 'run health-check' });
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadPlan({ procedure: PROCEDURES.serviceRestart }));
    const [svc] = selectServices(plan, [input.service], 'service');
    const group = plan.groups.find((g) => g.name === svc!.group);
    const action = await ctx.step('action', () => serviceAction({ service: svc!.name, action: mode }), (r) => `${r.command} (${r.durationMs}ms)`);
    await ctx.step(
      'wait',
      () => waitForGroup(plan, [svc!], input.waitTimeoutSeconds ?? group?.waitTimeoutSeconds ?? 180),
      (r) => `${r.length} probes healthy`,
    );
    const health = await checkHealth(plan, [svc!]);
    return { ok: health.ok, action, health, progress: ctx.progress };
  });
}
