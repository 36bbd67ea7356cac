import { mkdir, readFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { approvalPolicyFor } from '../../common/approvals.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { stringify } from 'yaml';
import type { ServiceConfig } from '../../common/config-schema.js';
import { ErrorTypes } from '../../common/errors.js';
import { analysisSchema, deliverySchema, type DeliveryConfig, type RouterConfig } from '../../common/delivery/config.js';
import type { Backend, DeliveryPlan, Measurement, ResolvedQuery, WeightChange } from '../../common/delivery/types.js';
import type { MigrationRunResult } from '../../common/types.js';
import { formatCommand } from '../../lib/exec.js';
import { resolveEnvRefs } from '../../lib/env.js';
import type { ActivityDeps } from '../deps.js';
import type { DriverContext } from '../drivers/driver.js';
import { configFailure, invoke } from '../drivers/support.js';
import { createMigrator } from '../database/migrations.js';
import { measure } from './prometheus.js';
import { createRouter } from './routers/index.js';
import { writeAtomically } from './routers/nginx.js';

const invalid = (message: string) => ApplicationFailure.nonRetryable(message, ErrorTypes.InvalidInput);

function activitySignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

/** Activities of the delivery runbook family; spread into the worker's activities by activities/index.ts. */
export function createDeliveryActivities(deps: ActivityDeps) {
  const { config, configDir, env, logger } = deps;
  const delivery: DeliveryConfig = config.delivery ?? deliverySchema.parse({});

  const driverCtx = (): DriverContext => ({ env, logger: logger.child({ family: 'delivery' }), configDir, signal: activitySignal() });

  const routerConfig = (name: string): RouterConfig => {
    const cfg = delivery.routers[name];
    if (!cfg) {
      const known = Object.keys(delivery.routers);
      throw invalid(`router: unknown router "${name}": expected one of ${known.join(', ') || '(none: add delivery.routers.<name> to the config)'}`);
    }
    return cfg;
  };
  const routerFor = (name: string) => createRouter(name, routerConfig(name), driverCtx());

  const serviceNamed = (name: string, field: string): ServiceConfig => {
    const svc = config.services.find((s) => s.name === name);
    if (!svc) throw invalid(`${field}: unknown service "${name}": expected one of ${config.services.map((s) => s.name).join(', ')}`);
    return svc;
  };

  const databaseUrl = (name: string): { url: string; migrationsDir?: string } => {
    const db = config.databases.find((d) => d.name === name);
    if (!db) throw invalid(`database: unknown database "${name}": expected one of ${config.databases.map((d) => d.name).join(', ') || '(none configured)'}`);
    try {
      return { url: resolveEnvRefs(db.url, env, `databases.${db.name}.url`), migrationsDir: db.migrationsDir };
    } catch (err) {
      return configFailure(err);
    }
  };

  /** A file the input names, resolved against the config directory; one that escapes it (absolute, or through "..") is refused. */
  const insideConfigDir = (field: string, rel: string): string => {
    const resolved = path.resolve(configDir, rel);
    const relative = path.relative(configDir, resolved);
    if (rel.includes('\0') || relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) {
      throw invalid(`${field}: "${rel}" is outside the config file's directory ${configDir}: give a path relative to it that stays inside`);
    }
    return resolved;
  };

  const prometheusUrl = (): string => {
    if (!delivery.prometheus) throw ApplicationFailure.nonRetryable('delivery.prometheus.url is not configured: analysis needs Prometheus (or pass skipAnalysis: true)', ErrorTypes.InvalidConfig);
    try {
      return resolveEnvRefs(delivery.prometheus.url, env, 'delivery.prometheus.url');
    } catch (err) {
      return configFailure(err);
    }
  };

  return {
    /** Captures what a delivery run needs from the config, once, so the run replays the same plan. */
    async deliveryPlan(req: { procedure: string; router?: string }): Promise<DeliveryPlan> {
      const analysis = analysisSchema.parse(delivery.analysis);
      const cfg = req.router ? routerConfig(req.router) : undefined;
      const router = req.router && cfg ? createRouter(req.router, cfg, driverCtx()) : undefined;
      for (const [field, svc] of [['canaryService', cfg?.canaryService], ['stableService', cfg?.stableService]] as const) {
        if (svc) serviceNamed(svc, `delivery.routers.${req.router}.${field}`);
      }
      return {
        environment: config.environment,
        router: {
          name: req.router ?? '',
          type: cfg?.type ?? 'command',
          stable: router?.describe().stable ?? '',
          canary: router?.describe().canary ?? '',
          stableSelector: cfg?.stableSelector ?? `job="${req.router}"`,
          canarySelector: cfg?.canarySelector ?? `job="${req.router}-canary"`,
          ...(cfg?.stableService ? { stableService: cfg.stableService } : {}),
          ...(cfg?.canaryService ? { canaryService: cfg.canaryService } : {}),
          hasHealthUrls: Boolean(cfg?.healthUrl),
        },
        analysis: { ...analysis, queries: analysis.queries.map((q) => ({ ...q })) },
        canary: { ...delivery.canary, steps: [...delivery.canary.steps] },
        scaleDownDelaySeconds: delivery.blueGreen.scaleDownDelaySeconds,
        prometheusConfigured: Boolean(delivery.prometheus),
        notifyConfigured: Boolean(delivery.notify),
        approvalPolicy: approvalPolicyFor(config.approvals, req.procedure),
        approvalTimeoutSeconds: config.approvals.timeoutSeconds,
      };
    },

    async setTrafficWeight(req: { router: string; weight: number }): Promise<WeightChange> {
      const change = await routerFor(req.router).setWeight(req.weight);
      logger.info({ router: req.router, weight: req.weight, changed: change.changed, ms: change.durationMs }, 'traffic weight set');
      return change;
    },

    async trafficWeight(req: { router: string }): Promise<{ weight: number | null; plan: Record<string, string[]> }> {
      const router = routerFor(req.router);
      return { weight: await router.currentWeight(), plan: { '0': router.plan(0), '100': router.plan(100) } };
    },

    async measureAnalysis(req: { queries: ResolvedQuery[]; onMissingData: 'fail' | 'pass' }): Promise<Measurement> {
      return measure(prometheusUrl(), req.queries, {
        timeoutMs: delivery.prometheus?.timeoutMs ?? 5000,
        onMissingData: req.onMissingData,
        signal: activitySignal(),
      });
    },

    /** One GET of the backend's health URL: a result, never an error, so the workflow decides. */
    async backendHealth(req: { router: string; backend: Backend }): Promise<{ ok: boolean; detail: string; version?: string }> {
      const cfg = routerConfig(req.router);
      if (!cfg.healthUrl) return { ok: true, detail: 'no healthUrl configured for this router' };
      const url = cfg.healthUrl[req.backend];
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
        const body = (await res.json().catch(() => ({}))) as { version?: unknown };
        const version = typeof body.version === 'string' ? body.version : undefined;
        return { ok: res.ok, detail: `${url}: HTTP ${res.status}${version ? `, version ${version}` : ''}`, ...(version ? { version } : {}) };
      } catch (err) {
        return { ok: false, detail: `${url}: ${(err as Error).message}` };
      }
    },

    /** Posts to delivery.notify.webhookUrl; a failed notification is reported, never fatal to a rollback. */
    async deliveryNotify(req: { event: string; text: string; details?: Record<string, unknown> }): Promise<{ sent: boolean; detail: string }> {
      if (!delivery.notify) return { sent: false, detail: 'delivery.notify is not configured' };
      let url: string;
      try {
        url = resolveEnvRefs(delivery.notify.webhookUrl, env, 'delivery.notify.webhookUrl');
      } catch (err) {
        return { sent: false, detail: (err as Error).message };
      }
      const info = Context.current().info;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ text: req.text, event: req.event, workflowId: info.workflowExecution?.workflowId, environment: config.environment, ...req.details }),
          signal: AbortSignal.timeout(5000),
        });
        return { sent: res.ok, detail: `webhook answered HTTP ${res.status}` };
      } catch (err) {
        return { sent: false, detail: `webhook: ${(err as Error).message}` };
      }
    },

    /** kubectl rollout undo [--to-revision] + rollout status, or compose up -d with the previous image. */
    async rollbackAppRevision(req: { service: string; revision?: number; image?: string }): Promise<{ commands: string[]; output: string }> {
      const svc = serviceNamed(req.service, 'service');
      const d = svc.driver;
      const ctx = driverCtx();
      const run = async (argv: string[], timeoutSeconds: number) => {
        const r = await invoke({ argv, timeoutMs: timeoutSeconds * 1000 }, ctx, `rollback of ${svc.name}`);
        return { command: r.command, output: `${r.stdout}${r.stderr}`.trim() };
      };
      const ran: Array<{ command: string; output: string }> = [];
      if (d.type === 'kubernetes') {
        const kubectl = (...a: string[]) => ['kubectl', ...(d.context ? ['--context', d.context] : []), '-n', d.namespace, ...a];
        const ref = `${d.kind}/${d.name ?? svc.name}`;
        ran.push(await run(kubectl('rollout', 'undo', ref, ...(req.revision ? [`--to-revision=${req.revision}`] : [])), d.timeoutSeconds));
        ran.push(await run(kubectl('rollout', 'status', ref, `--timeout=${d.timeoutSeconds}s`), d.timeoutSeconds + 10));
      } else if (d.type === 'compose') {
        if (!req.image) throw invalid(`image: required for ${svc.name} (compose driver): the previous image, e.g. ghcr.io/org/${svc.name}:v1.0.0`);
        // Never an option to docker: `docker pull --help` or `-a` would not pull the image asked for.
        if (!/^[A-Za-z0-9]/.test(req.image)) throw invalid(`image: "${req.image}" must start with a letter or digit, e.g. ghcr.io/org/${svc.name}:v1.0.0`);
        const composeService = d.service ?? svc.name;
        // An override file instead of editing the user's compose file: the rollback is visible and removable.
        const dir = path.resolve(configDir, '.runbook', 'rollback');
        await mkdir(dir, { recursive: true });
        const override = path.join(dir, `${svc.name}.compose.yml`);
        await writeAtomically(override, stringify({ services: { [composeService]: { image: req.image } } }));
        const compose = ['docker', 'compose', '-f', path.resolve(configDir, d.file), '-f', override, ...(d.project ? ['-p', d.project] : [])];
        ran.push(await run(['docker', 'pull', req.image], d.timeoutSeconds));
        ran.push(await run([...compose, 'up', '-d', composeService], d.timeoutSeconds));
      } else {
        throw ApplicationFailure.nonRetryable(
          `service ${svc.name} uses the command driver, which has no rollback: give it a kubernetes or compose driver, or roll back with your own script`,
          ErrorTypes.UnsupportedAction,
        );
      }
      return { commands: ran.map((r) => r.command), output: ran.map((r) => r.output).filter(Boolean).join('\n').slice(-4000) };
    },

    /** Polls an HTTP endpoint until it reports the expected version (JSON field "version"). */
    async verifyServingVersion(req: { url: string; expectVersion?: string; timeoutSeconds: number; deadline: number }): Promise<{ version: string | null; detail: string }> {
      const ctx = Context.current();
      let last = 'no answer yet';
      let version: string | null = null;
      for (;;) {
        try {
          const res = await fetch(req.url, { signal: AbortSignal.timeout(3000) });
          const body = (await res.json().catch(() => ({}))) as { version?: unknown };
          version = typeof body.version === 'string' ? body.version : null;
          last = `HTTP ${res.status}, version ${version ?? '(none)'}`;
          if (res.ok && (req.expectVersion === undefined || version === req.expectVersion)) return { version, detail: last };
        } catch (err) {
          last = (err as Error).message;
        }
        ctx.heartbeat({ last });
        if (Date.now() > req.deadline) {
          throw ApplicationFailure.create({
            type: ErrorTypes.HealthTimeout,
            nonRetryable: true,
            message: `${req.url} does not serve ${req.expectVersion ? `version ${req.expectVersion}` : 'successfully'} after ${req.timeoutSeconds}s (last: ${last})`,
          });
        }
        await sleep(250, undefined, { signal: ctx.cancellationSignal });
      }
    },

    /** Copies the backup over the env file; the replaced content is kept beside it so this too can be undone. */
    async restoreEnvFile(req: { envFile: string; backupFile?: string }): Promise<{ restored: boolean; detail: string }> {
      const file = insideConfigDir('envFile', req.envFile);
      const backup = insideConfigDir('backupFile', req.backupFile ?? `${req.envFile}.backup`);
      const wanted = await readFile(backup, 'utf8').catch(() => null);
      if (wanted === null) throw invalid(`backupFile: ${backup} does not exist (give backupFile, default <envFile>.backup)`);
      const current = await readFile(file, 'utf8').catch(() => null);
      if (current === wanted) return { restored: false, detail: `${file} already has the content of ${path.basename(backup)}` };
      let saved = '';
      if (current !== null) {
        saved = `${file}.rolled-back-${new Date().toISOString().replace(/[:.]/g, '-')}`;
        await copyFile(file, saved);
      }
      await writeAtomically(file, wanted);
      return { restored: true, detail: `${file} restored from ${path.basename(backup)}${saved ? `; replaced content kept in ${path.basename(saved)}` : ''}` };
    },

    /** The runbook's UPDATE feature_flags SET enabled = false, checked before and verified after. */
    async disableFeatureFlag(req: { database: string; flag: string }): Promise<{ before: boolean; after: boolean }> {
      const { url } = databaseUrl(req.database);
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
      await client.connect();
      try {
        const found = await client.query<{ enabled: boolean }>('SELECT enabled FROM feature_flags WHERE name = $1', [req.flag]);
        if (found.rowCount === 0) throw invalid(`flag: no feature flag named "${req.flag}" in ${req.database}.feature_flags`);
        const before = found.rows[0]!.enabled;
        if (before) await client.query('UPDATE feature_flags SET enabled = false, updated_at = now() WHERE name = $1', [req.flag]);
        const after = (await client.query<{ enabled: boolean }>('SELECT enabled FROM feature_flags WHERE name = $1', [req.flag])).rows[0]!.enabled;
        return { before, after };
      } finally {
        await client.end().catch(() => undefined);
      }
    },

    /** kubectl apply -f <previous ConfigMap manifest> in the service's context and namespace. */
    async applyConfigManifest(req: { service: string; manifest: string }): Promise<{ command: string; output: string }> {
      const svc = serviceNamed(req.service, 'service');
      if (svc.driver.type !== 'kubernetes') {
        throw ApplicationFailure.nonRetryable(`service ${svc.name}: a ConfigMap rollback needs a kubernetes driver`, ErrorTypes.UnsupportedAction);
      }
      const d = svc.driver;
      const argv = ['kubectl', ...(d.context ? ['--context', d.context] : []), '-n', d.namespace, 'apply', '-f', insideConfigDir('manifest', req.manifest)];
      const r = await invoke({ argv, timeoutMs: d.timeoutSeconds * 1000 }, driverCtx(), `ConfigMap rollback for ${svc.name}`);
      return { command: formatCommand(argv), output: `${r.stdout}${r.stderr}`.trim().slice(-2000) };
    },

    /**
     * Rolls back exactly the migrations a release applied. Idempotent: versions already
     * rolled back are skipped; refuses when newer migrations were applied since.
     */
    async rollbackReleaseMigrations(req: { database: string; versions: string[] }): Promise<MigrationRunResult> {
      const { url, migrationsDir } = databaseUrl(req.database);
      if (!migrationsDir) throw invalid(`database ${req.database} has no migrationsDir`);
      const migrator = createMigrator({ url, dir: path.resolve(configDir, migrationsDir), database: req.database, logger });
      try {
        const status = await migrator.status();
        const applied = status.applied.map((m) => m.version).sort();
        const still = req.versions.filter((v) => applied.includes(v));
        if (still.length === 0) return { database: req.database, dryRun: false, applied: [], pending: [] };
        const newest = applied.slice(-still.length);
        if ([...still].sort().join() !== newest.join()) {
          throw ApplicationFailure.nonRetryable(
            `database ${req.database}: migrations ${applied.filter((v) => !still.includes(v) && v > still[0]!).join(', ')} were applied after this release's; roll back by hand`,
            ErrorTypes.MigrationFailed,
          );
        }
        const { downSql: _sql, ...result } = await migrator.down({ steps: still.length });
        return result;
      } finally {
        await migrator.close();
      }
    },
  };
}
