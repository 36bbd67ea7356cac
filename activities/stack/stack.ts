import { setMaxListeners } from 'node:events';
import path from 'node:path';
import { approvalPolicyFor } from '../../common/approvals.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ServiceConfig } from '../../common/config-schema.js';
import { ErrorTypes } from '../../common/errors.js';
import type {
  MigrationRunResult,
  PreflightResult,
  ProbeRef,
  ProbeResult,
  RunbookPlan,
  ServiceAction,
  ServiceActionResult,
} from '../../common/types.js';
import { resolveEnvRefs } from '../../lib/env.js';
import { activitySignal, heartbeating } from '../context.js';
import type { ActivityDeps } from '../deps.js';
import { createDriver, type ServiceStatus } from '../drivers/index.js';
import { configFailure as driverConfigFailure } from '../drivers/support.js';
import { createMigrator } from '../database/migrations.js';
import { ProbeConfigError, probeTarget, runProbe as probeOnce } from '../probes/index.js';
import { runPreflight } from './preflight.js';
import { serviceNamed } from '../services.js';

const SERVICE_ACTIONS: ServiceAction[] = ['start', 'stop', 'restart', 'rebuild', 'force-recreate', 'clean'];

export interface WaitHealthyRequest {
  services: string[];
  timeoutSeconds: number;
  /** Epoch ms, fixed by the workflow, so a retry on another worker keeps the original deadline. */
  deadline?: number;
  pollIntervalSeconds: number;
}

/** Config errors are the user's to fix: never retried. */
function configFailure(err: unknown): never {
  if (err instanceof ProbeConfigError) throw ApplicationFailure.nonRetryable(err.message, ErrorTypes.InvalidConfig);
  return driverConfigFailure(err);
}

/** The stack family (health, lifecycle, migrations at start), the activities the other families' workflows also use. */
export function createStackActivities(deps: ActivityDeps) {
  return {
    loadPlan: (req: { procedure: string }) => loadPlan(deps, req),
    runProbe: (ref: ProbeRef) => runProbe(deps, ref),
    runProbes: (req: { probes: ProbeRef[] }) => runProbes(deps, req),
    waitHealthy: (req: WaitHealthyRequest) => waitHealthy(deps, req),
    preflight: (req: { tolerantPorts: number[] }) => preflight(deps, req),
    serviceAction: (req: { service: string; action: ServiceAction }) => serviceAction(deps, req),
    cleanServices: (req: { services: string[] }) => cleanServices(deps, req),
    serviceStatus: (req: { service: string }) => serviceStatus(deps, req),
    serviceLogs: (req: { service: string; lines: number }) => serviceLogs(deps, req),
    migrate: (req: { database: string; dryRun: boolean }) => migrate(deps, req),
  };
}


function driverFor(deps: ActivityDeps, svc: ServiceConfig) {
  return createDriver(svc, { env: deps.env, logger: deps.logger.child({ service: svc.name }), configDir: deps.configDir, signal: activitySignal() });
}

async function probeRef(deps: ActivityDeps, ref: ProbeRef, signal?: AbortSignal): Promise<ProbeResult> {
  const svc = serviceNamed(deps, ref.service);
  const cfg = svc.probes[ref.index];
  if (!cfg) {
    throw ApplicationFailure.nonRetryable(`service ${svc.name} has no probe #${ref.index}`, ErrorTypes.InvalidInput);
  }
  try {
    const outcome = await probeOnce(cfg, { env: deps.env, field: `services.${svc.name}.probes[${ref.index}]`, signal });
    return { service: svc.name, index: ref.index, ...outcome };
  } catch (err) {
    return configFailure(err);
  }
}

async function probeServices(deps: ActivityDeps, names: string[], signal?: AbortSignal): Promise<ProbeResult[]> {
  const refs = names.flatMap((name) => serviceNamed(deps, name).probes.map((_, index) => ({ service: name, index })));
  return Promise.all(refs.map((r) => probeRef(deps, r, signal)));
}

/** Captures what a run needs from the config, once, so the run replays the same plan. */
export async function loadPlan(deps: ActivityDeps, req: { procedure: string }): Promise<RunbookPlan> {
  const { config } = deps;
  return {
    environment: config.environment,
    services: config.services.map((s) => ({
      name: s.name,
      group: s.group,
      dependsOn: s.dependsOn,
      ports: s.ports,
      driver: s.driver.type,
      actions: SERVICE_ACTIONS.filter((a) => {
        try {
          driverFor(deps, s).plan(a);
          return true;
        } catch {
          return false;
        }
      }),
      probes: s.probes.map((p, index) => ({ index, type: p.type, target: probeTarget(p) })),
    })),
    groups: config.stack.groups.map((g) => ({ ...g })),
    pollIntervalSeconds: config.stack.pollIntervalSeconds,
    databases: config.databases.map((d) => ({ name: d.name, hasMigrations: Boolean(d.migrationsDir) })),
    approvalPolicy: approvalPolicyFor(config.approvals, req.procedure),
    approvalTimeoutSeconds: config.approvals.timeoutSeconds,
    thresholds: { ...config.thresholds },
  };
}

export async function runProbe(deps: ActivityDeps, ref: ProbeRef): Promise<ProbeResult> {
  return probeRef(deps, ref, activitySignal());
}

/**
 * Several probes at once, in one (local) activity: the run wakes up once for all of their
 * results instead of once per probe. Each probe keeps its own timeout.
 */
export async function runProbes(deps: ActivityDeps, req: { probes: ProbeRef[] }): Promise<ProbeResult[]> {
  const signal = activitySignal();
  // Each probe listens for cancellation on the one signal: as many listeners as probes is expected.
  if (signal) setMaxListeners(req.probes.length + 10, signal);
  return Promise.all(req.probes.map((ref) => probeRef(deps, ref, signal)));
}

/** Polls the services' probes until all are healthy; heartbeats each round so a dead worker is noticed. */
export async function waitHealthy(deps: ActivityDeps, req: WaitHealthyRequest): Promise<ProbeResult[]> {
  const ctx = Context.current();
  const deadline = req.deadline ?? Date.now() + req.timeoutSeconds * 1000;
  let round = 0;
  for (;;) {
    round += 1;
    const results = await probeServices(deps, req.services, ctx.cancellationSignal);
    const unhealthy = results.filter((r) => r.status !== 'healthy');
    ctx.heartbeat({
      round,
      healthy: results.length - unhealthy.length,
      total: results.length,
      waitingFor: unhealthy.map((r) => `${r.service}: ${r.detail}`),
    });
    if (unhealthy.length === 0) return results;
    if (Date.now() >= deadline) {
      throw ApplicationFailure.create({
        type: ErrorTypes.HealthTimeout,
        nonRetryable: true,
        message: `not healthy after ${req.timeoutSeconds}s: ${unhealthy.map((r) => `${r.service} (${r.type} ${r.target}: ${r.detail})`).join('; ')}`,
        details: [results],
      });
    }
    await sleep(Math.min(req.pollIntervalSeconds * 1000, Math.max(0, deadline - Date.now())), undefined, {
      signal: ctx.cancellationSignal,
    });
  }
}

export async function preflight(deps: ActivityDeps, req: { tolerantPorts: number[] }): Promise<PreflightResult> {
  return runPreflight(deps.config.preflight, {
    configDir: deps.configDir,
    tolerantPorts: req.tolerantPorts,
    needsDocker: deps.config.services.some((s) => s.driver.type === 'compose'),
    composeCommands: deps.config.services.flatMap((s) => (s.driver.type === 'compose' ? [s.driver.command] : [])),
    env: deps.env,
  });
}

export async function serviceAction(deps: ActivityDeps, req: { service: string; action: ServiceAction }): Promise<ServiceActionResult> {
  const svc = serviceNamed(deps, req.service);
  try {
    return await heartbeating(() => ({ service: svc.name, action: req.action }), () => driverFor(deps, svc).run(req.action));
  } catch (err) {
    return configFailure(err);
  }
}

/**
 * Deletes the data of the given services. Stack-wide commands (compose `down -v`)
 * are run once however many services share them.
 */
export async function cleanServices(deps: ActivityDeps, req: { services: string[] }): Promise<ServiceActionResult[]> {
  const seen = new Set<string>();
  const results: ServiceActionResult[] = [];
  for (const name of req.services) {
    const svc = serviceNamed(deps, name);
    const driver = driverFor(deps, svc);
    let key: string;
    try {
      key = JSON.stringify(driver.plan('clean'));
    } catch {
      continue; // this service has no data to clean
    }
    if (seen.has(key)) continue;
    seen.add(key);
    results.push(await heartbeating(() => ({ cleaning: name }), () => driver.run('clean')));
  }
  return results;
}

export async function serviceStatus(deps: ActivityDeps, req: { service: string }): Promise<ServiceStatus> {
  return driverFor(deps, serviceNamed(deps, req.service)).status();
}

export async function serviceLogs(deps: ActivityDeps, req: { service: string; lines: number }): Promise<string> {
  return driverFor(deps, serviceNamed(deps, req.service)).logs(req.lines);
}

export async function migrate(deps: ActivityDeps, req: { database: string; dryRun: boolean }): Promise<MigrationRunResult> {
  const { config } = deps;
  const db = config.databases.find((d) => d.name === req.database);
  if (!db) {
    throw ApplicationFailure.nonRetryable(
      `database: unknown database "${req.database}": expected one of ${config.databases.map((d) => d.name).join(', ') || '(none configured)'}`,
      ErrorTypes.InvalidInput,
    );
  }
  if (!db.migrationsDir) {
    return { database: db.name, dryRun: req.dryRun, applied: [], pending: [] };
  }
  let url: string;
  try {
    url = resolveEnvRefs(db.url, deps.env, `databases.${db.name}.url`);
  } catch (err) {
    return configFailure(err);
  }
  const ctx = Context.current();
  const migrator = createMigrator({
    url,
    dir: path.resolve(deps.configDir, db.migrationsDir),
    database: db.name,
    logger: deps.logger.child({ database: db.name }),
  });
  try {
    return await heartbeating(() => ({ database: db.name }), () =>
      migrator.up({ dryRun: req.dryRun, onProgress: (m: { version: string }) => ctx.heartbeat({ applying: m.version }) }),
    );
  } finally {
    await migrator.close();
  }
}
