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
import { MissingEnvError, resolveEnvRefs } from '../../lib/env.js';
import type { ActivityDeps } from '../deps.js';
import { createDriver, type ServiceStatus } from '../drivers/index.js';
import { createMigrator } from '../database/migrations.js';
import { ProbeConfigError, probeTarget, runProbe as probeOnce } from '../probes/index.js';
import { runPreflight } from './preflight.js';

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
  if (err instanceof MissingEnvError) {
    throw ApplicationFailure.nonRetryable(`${err.message}; set it in the worker's environment`, ErrorTypes.InvalidConfig);
  }
  if (err instanceof ProbeConfigError) throw ApplicationFailure.nonRetryable(err.message, ErrorTypes.InvalidConfig);
  throw err;
}

/** The stack family (health, lifecycle, migrations at start), the activities the other families' workflows also use. */
export function createStackActivities(deps: ActivityDeps) {
  const { config, configDir, env, logger } = deps;
  const servicesByName = new Map(config.services.map((s) => [s.name, s]));

  const serviceNamed = (name: string, field = 'service'): ServiceConfig => {
    const svc = servicesByName.get(name);
    if (!svc) {
      throw ApplicationFailure.nonRetryable(
        `${field}: unknown service "${name}": expected one of ${[...servicesByName.keys()].join(', ')}`,
        ErrorTypes.UnknownService,
      );
    }
    return svc;
  };

  const driverFor = (svc: ServiceConfig) =>
    createDriver(svc, { env, logger: logger.child({ service: svc.name }), configDir, signal: activitySignal() });

  const probeRef = async (ref: ProbeRef, signal?: AbortSignal): Promise<ProbeResult> => {
    const svc = serviceNamed(ref.service);
    const cfg = svc.probes[ref.index];
    if (!cfg) {
      throw ApplicationFailure.nonRetryable(`service ${svc.name} has no probe #${ref.index}`, ErrorTypes.InvalidInput);
    }
    try {
      const outcome = await probeOnce(cfg, { env, field: `services.${svc.name}.probes[${ref.index}]`, signal });
      return { service: svc.name, index: ref.index, ...outcome };
    } catch (err) {
      return configFailure(err);
    }
  };

  const probeServices = async (names: string[], signal?: AbortSignal): Promise<ProbeResult[]> => {
    const refs = names.flatMap((name) => serviceNamed(name).probes.map((_, index) => ({ service: name, index })));
    return Promise.all(refs.map((r) => probeRef(r, signal)));
  };

  return {
    /** Captures what a run needs from the config, once, so the run replays the same plan. */
    async loadPlan(req: { procedure: string }): Promise<RunbookPlan> {
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
              driverFor(s).plan(a);
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
    },

    async runProbe(ref: ProbeRef): Promise<ProbeResult> {
      return probeRef(ref, activitySignal());
    },

    /** Polls the services' probes until all are healthy; heartbeats each round so a dead worker is noticed. */
    async waitHealthy(req: WaitHealthyRequest): Promise<ProbeResult[]> {
      const ctx = Context.current();
      const deadline = req.deadline ?? Date.now() + req.timeoutSeconds * 1000;
      let round = 0;
      for (;;) {
        round += 1;
        const results = await probeServices(req.services, ctx.cancellationSignal);
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
    },

    async preflight(req: { tolerantPorts: number[] }): Promise<PreflightResult> {
      return runPreflight(config.preflight, {
        configDir,
        tolerantPorts: req.tolerantPorts,
        needsDocker: config.services.some((s) => s.driver.type === 'compose'),
        env,
      });
    },

    async serviceAction(req: { service: string; action: ServiceAction }): Promise<ServiceActionResult> {
      const svc = serviceNamed(req.service);
      try {
        return await heartbeating({ service: svc.name, action: req.action }, () => driverFor(svc).run(req.action));
      } catch (err) {
        return configFailure(err);
      }
    },

    /**
     * Deletes the data of the given services. Stack-wide commands (compose `down -v`)
     * are run once however many services share them.
     */
    async cleanServices(req: { services: string[] }): Promise<ServiceActionResult[]> {
      const seen = new Set<string>();
      const results: ServiceActionResult[] = [];
      for (const name of req.services) {
        const svc = serviceNamed(name);
        const driver = driverFor(svc);
        let key: string;
        try {
          key = JSON.stringify(driver.plan('clean'));
        } catch {
          continue; // this service has no data to clean
        }
        if (seen.has(key)) continue;
        seen.add(key);
        results.push(await heartbeating({ cleaning: name }, () => driver.run('clean')));
      }
      return results;
    },

    async serviceStatus(req: { service: string }): Promise<ServiceStatus> {
      return driverFor(serviceNamed(req.service)).status();
    },

    async serviceLogs(req: { service: string; lines: number }): Promise<string> {
      return driverFor(serviceNamed(req.service)).logs(req.lines);
    },

    async migrate(req: { database: string; dryRun: boolean }): Promise<MigrationRunResult> {
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
        url = resolveEnvRefs(db.url, env, `databases.${db.name}.url`);
      } catch (err) {
        return configFailure(err);
      }
      const ctx = Context.current();
      const migrator = createMigrator({
        url,
        dir: path.resolve(configDir, db.migrationsDir),
        database: db.name,
        logger: logger.child({ database: db.name }),
      });
      try {
        return await heartbeating({ database: db.name }, () =>
          migrator.up({ dryRun: req.dryRun, onProgress: (m: { version: string }) => ctx.heartbeat({ applying: m.version }) }),
        );
      } finally {
        await migrator.close();
      }
    },
  };
}

/** Heartbeats every few seconds while `body` runs, so a worker that dies mid-command is noticed quickly. */
async function heartbeating<T>(details: Record<string, unknown>, body: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  ctx.heartbeat(details);
  const timer = setInterval(() => ctx.heartbeat(details), 3000);
  try {
    return await body();
  } finally {
    clearInterval(timer);
  }
}

function activitySignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}
