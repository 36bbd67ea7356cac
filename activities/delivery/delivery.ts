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
import { activitySignal } from '../context.js';
import type { DriverContext } from '../drivers/driver.js';
import { configFailure, invoke } from '../drivers/support.js';
import { createMigrator } from '../database/migrations.js';
import { measure } from './prometheus.js';
import { createRouter } from './routers/index.js';
import { writeAtomically } from './routers/nginx.js';

const invalid = (message: string) => ApplicationFailure.nonRetryable(message, ErrorTypes.InvalidInput);

export interface DeliveryDeps extends ActivityDeps {
  /** The config's delivery section, defaults filled in. */
  delivery: DeliveryConfig;
}

/** Activities of the delivery runbook family; spread into the worker's activities by activities/index.ts. */
export function createDeliveryActivities(deps: ActivityDeps) {
  const d: DeliveryDeps = { ...deps, delivery: deps.config.delivery ?? deliverySchema.parse({}) };
  return {
    deliveryPlan: (req: { procedure: string; router?: string }) => deliveryPlan(d, req),
    setTrafficWeight: (req: { router: string; weight: number }) => setTrafficWeight(d, req),
    trafficWeight: (req: { router: string }) => trafficWeight(d, req),
    measureAnalysis: (req: { queries: ResolvedQuery[]; onMissingData: 'fail' | 'pass' }) => measureAnalysis(d, req),
    backendHealth: (req: { router: string; backend: Backend }) => backendHealth(d, req),
    deliveryNotify: (req: { event: string; text: string; details?: Record<string, unknown> }) => deliveryNotify(d, req),
    rollbackAppRevision: (req: AppRollbackRequest) => rollbackAppRevision(d, req),
    verifyServingVersion: (req: ServingVersionRequest) => verifyServingVersion(req),
    restoreEnvFile: (req: { envFile: string; backupFile?: string }) => restoreEnvFile(d, req),
    disableFeatureFlag: (req: { database: string; flag: string }) => disableFeatureFlag(d, req),
    applyConfigManifest: (req: { service: string; manifest: string }) => applyConfigManifest(d, req),
    rollbackReleaseMigrations: (req: { database: string; versions: string[] }) => rollbackReleaseMigrations(d, req),
  };
}

const driverCtx = (deps: ActivityDeps): DriverContext => ({
  env: deps.env,
  logger: deps.logger.child({ family: 'delivery' }),
  configDir: deps.configDir,
  signal: activitySignal(),
});

function routerConfig(d: DeliveryDeps, name: string): RouterConfig {
  const cfg = d.delivery.routers[name];
  if (!cfg) {
    const known = Object.keys(d.delivery.routers);
    throw invalid(`router: unknown router "${name}": expected one of ${known.join(', ') || '(none: add delivery.routers.<name> to the config)'}`);
  }
  return cfg;
}

const routerFor = (d: DeliveryDeps, name: string) => createRouter(name, routerConfig(d, name), driverCtx(d));

function serviceNamed(deps: ActivityDeps, name: string, field: string): ServiceConfig {
  const svc = deps.config.services.find((s) => s.name === name);
  if (!svc) throw invalid(`${field}: unknown service "${name}": expected one of ${deps.config.services.map((s) => s.name).join(', ')}`);
  return svc;
}

function databaseUrl(deps: ActivityDeps, name: string): { url: string; migrationsDir?: string } {
  const { config } = deps;
  const db = config.databases.find((x) => x.name === name);
  if (!db) throw invalid(`database: unknown database "${name}": expected one of ${config.databases.map((x) => x.name).join(', ') || '(none configured)'}`);
  try {
    return { url: resolveEnvRefs(db.url, deps.env, `databases.${db.name}.url`), migrationsDir: db.migrationsDir };
  } catch (err) {
    return configFailure(err);
  }
}

/** A file the input names, resolved against the config directory; one that escapes it (absolute, or through "..") is refused. */
function insideConfigDir(deps: ActivityDeps, field: string, rel: string): string {
  const { configDir } = deps;
  const resolved = path.resolve(configDir, rel);
  const relative = path.relative(configDir, resolved);
  if (rel.includes('\0') || relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) {
    throw invalid(`${field}: "${rel}" is outside the config file's directory ${configDir}: give a path relative to it that stays inside`);
  }
  return resolved;
}

function prometheusUrl(d: DeliveryDeps): string {
  if (!d.delivery.prometheus) {
    throw ApplicationFailure.nonRetryable('delivery.prometheus.url is not configured: analysis needs Prometheus (or pass skipAnalysis: true)', ErrorTypes.InvalidConfig);
  }
  try {
    return resolveEnvRefs(d.delivery.prometheus.url, d.env, 'delivery.prometheus.url');
  } catch (err) {
    return configFailure(err);
  }
}

/** Captures what a delivery run needs from the config, once, so the run replays the same plan. */
export async function deliveryPlan(d: DeliveryDeps, req: { procedure: string; router?: string }): Promise<DeliveryPlan> {
  const { config, delivery } = d;
  const analysis = analysisSchema.parse(delivery.analysis);
  const cfg = req.router ? routerConfig(d, req.router) : undefined;
  const router = req.router && cfg ? createRouter(req.router, cfg, driverCtx(d)) : undefined;
  for (const [field, svc] of [['canaryService', cfg?.canaryService], ['stableService', cfg?.stableService]] as const) {
    if (svc) serviceNamed(d, svc, `delivery.routers.${req.router}.${field}`);
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
}

export async function setTrafficWeight(d: DeliveryDeps, req: { router: string; weight: number }): Promise<WeightChange> {
  const change = await routerFor(d, req.router).setWeight(req.weight);
  d.logger.info({ router: req.router, weight: req.weight, changed: change.changed, ms: change.durationMs }, 'traffic weight set');
  return change;
}

export async function trafficWeight(d: DeliveryDeps, req: { router: string }): Promise<{ weight: number | null; plan: Record<string, string[]> }> {
  const router = routerFor(d, req.router);
  return { weight: await router.currentWeight(), plan: { '0': router.plan(0), '100': router.plan(100) } };
}

export async function measureAnalysis(d: DeliveryDeps, req: { queries: ResolvedQuery[]; onMissingData: 'fail' | 'pass' }): Promise<Measurement> {
  return measure(prometheusUrl(d), req.queries, {
    timeoutMs: d.delivery.prometheus?.timeoutMs ?? 5000,
    onMissingData: req.onMissingData,
    signal: activitySignal(),
  });
}

/** One GET of the backend's health URL: a result, never an error, so the workflow decides. */
export async function backendHealth(d: DeliveryDeps, req: { router: string; backend: Backend }): Promise<{ ok: boolean; detail: string; version?: string }> {
  const cfg = routerConfig(d, req.router);
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
}

/** Posts to delivery.notify.webhookUrl; a failed notification is reported, never fatal to a rollback. */
export async function deliveryNotify(d: DeliveryDeps, req: { event: string; text: string; details?: Record<string, unknown> }): Promise<{ sent: boolean; detail: string }> {
  if (!d.delivery.notify) return { sent: false, detail: 'delivery.notify is not configured' };
  let url: string;
  try {
    url = resolveEnvRefs(d.delivery.notify.webhookUrl, d.env, 'delivery.notify.webhookUrl');
  } catch (err) {
    return { sent: false, detail: (err as Error).message };
  }
  const info = Context.current().info;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: req.text, event: req.event, workflowId: info.workflowExecution?.workflowId, environment: d.config.environment, ...req.details }),
      signal: AbortSignal.timeout(5000),
    });
    return { sent: res.ok, detail: `webhook answered HTTP ${res.status}` };
  } catch (err) {
    return { sent: false, detail: `webhook: ${(err as Error).message}` };
  }
}

export interface AppRollbackRequest {
  service: string;
  revision?: number;
  image?: string;
}

type Ran = { command: string; output: string };

/** kubectl rollout undo [--to-revision] + rollout status, or compose up -d with the previous image. */
export async function rollbackAppRevision(d: DeliveryDeps, req: AppRollbackRequest): Promise<{ commands: string[]; output: string }> {
  const svc = serviceNamed(d, req.service, 'service');
  const ctx = driverCtx(d);
  const run = async (argv: string[], timeoutSeconds: number): Promise<Ran> => {
    const r = await invoke({ argv, timeoutMs: timeoutSeconds * 1000 }, ctx, `rollback of ${svc.name}`);
    return { command: r.command, output: `${r.stdout}${r.stderr}`.trim() };
  };
  let ran: Ran[];
  if (svc.driver.type === 'kubernetes') {
    const k = svc.driver;
    const kubectl = (...a: string[]) => ['kubectl', ...(k.context ? ['--context', k.context] : []), '-n', k.namespace, ...a];
    const ref = `${k.kind}/${k.name ?? svc.name}`;
    ran = [await run(kubectl('rollout', 'undo', ref, ...(req.revision ? [`--to-revision=${req.revision}`] : [])), k.timeoutSeconds)];
    ran.push(await run(kubectl('rollout', 'status', ref, `--timeout=${k.timeoutSeconds}s`), k.timeoutSeconds + 10));
  } else if (svc.driver.type === 'compose') {
    ran = await rollbackComposeImage(d, svc, svc.driver, req.image, run);
  } else {
    throw ApplicationFailure.nonRetryable(
      `service ${svc.name} uses the command driver, which has no rollback: give it a kubernetes or compose driver, or roll back with your own script`,
      ErrorTypes.UnsupportedAction,
    );
  }
  return { commands: ran.map((r) => r.command), output: ran.map((r) => r.output).filter(Boolean).join('\n').slice(-4000) };
}

/** docker pull of the previous image, then compose up -d with an override file naming it. */
async function rollbackComposeImage(
  deps: ActivityDeps,
  svc: ServiceConfig,
  c: Extract<ServiceConfig['driver'], { type: 'compose' }>,
  image: string | undefined,
  run: (argv: string[], timeoutSeconds: number) => Promise<Ran>,
): Promise<Ran[]> {
  if (!image) throw invalid(`image: required for ${svc.name} (compose driver): the previous image, e.g. ghcr.io/org/${svc.name}:v1.0.0`);
  // Never an option to docker: `docker pull --help` or `-a` would not pull the image asked for.
  if (!/^[A-Za-z0-9]/.test(image)) throw invalid(`image: "${image}" must start with a letter or digit, e.g. ghcr.io/org/${svc.name}:v1.0.0`);
  const composeService = c.service ?? svc.name;
  // An override file instead of editing the user's compose file: the rollback is visible and removable.
  const dir = path.resolve(deps.configDir, '.runbook', 'rollback');
  await mkdir(dir, { recursive: true });
  const override = path.join(dir, `${svc.name}.compose.yml`);
  await writeAtomically(override, stringify({ services: { [composeService]: { image } } }));
  const compose = [...c.command, '-f', path.resolve(deps.configDir, c.file), '-f', override, ...(c.project ? ['-p', c.project] : [])];
  const ran = [await run(['docker', 'pull', image], c.timeoutSeconds)];
  ran.push(await run([...compose, 'up', '-d', composeService], c.timeoutSeconds));
  return ran;
}

export interface ServingVersionRequest {
  url: string;
  expectVersion?: string;
  timeoutSeconds: number;
  deadline: number;
}

/** Polls an HTTP endpoint until it reports the expected version (JSON field "version"). */
export async function verifyServingVersion(req: ServingVersionRequest): Promise<{ version: string | null; detail: string }> {
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
}

/** Copies the backup over the env file; the replaced content is kept beside it so this too can be undone. */
export async function restoreEnvFile(deps: ActivityDeps, req: { envFile: string; backupFile?: string }): Promise<{ restored: boolean; detail: string }> {
  const file = insideConfigDir(deps, 'envFile', req.envFile);
  const backup = insideConfigDir(deps, 'backupFile', req.backupFile ?? `${req.envFile}.backup`);
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
}

/** The runbook's UPDATE feature_flags SET enabled = false, checked before and verified after. */
export async function disableFeatureFlag(deps: ActivityDeps, req: { database: string; flag: string }): Promise<{ before: boolean; after: boolean }> {
  const { url } = databaseUrl(deps, req.database);
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
}

/** kubectl apply -f <previous ConfigMap manifest> in the service's context and namespace. */
export async function applyConfigManifest(deps: ActivityDeps, req: { service: string; manifest: string }): Promise<{ command: string; output: string }> {
  const svc = serviceNamed(deps, req.service, 'service');
  if (svc.driver.type !== 'kubernetes') {
    throw ApplicationFailure.nonRetryable(`service ${svc.name}: a ConfigMap rollback needs a kubernetes driver`, ErrorTypes.UnsupportedAction);
  }
  const k = svc.driver;
  const argv = ['kubectl', ...(k.context ? ['--context', k.context] : []), '-n', k.namespace, 'apply', '-f', insideConfigDir(deps, 'manifest', req.manifest)];
  const r = await invoke({ argv, timeoutMs: k.timeoutSeconds * 1000 }, driverCtx(deps), `ConfigMap rollback for ${svc.name}`);
  return { command: formatCommand(argv), output: `${r.stdout}${r.stderr}`.trim().slice(-2000) };
}

/**
 * Rolls back exactly the migrations a release applied. Idempotent: versions already
 * rolled back are skipped; refuses when newer migrations were applied since.
 */
export async function rollbackReleaseMigrations(deps: ActivityDeps, req: { database: string; versions: string[] }): Promise<MigrationRunResult> {
  const { url, migrationsDir } = databaseUrl(deps, req.database);
  if (!migrationsDir) throw invalid(`database ${req.database} has no migrationsDir`);
  const migrator = createMigrator({ url, dir: path.resolve(deps.configDir, migrationsDir), database: req.database, logger: deps.logger });
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
}
