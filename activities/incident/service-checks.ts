import { homedir } from 'node:os';
import { lstat, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type pg from 'pg';
import { ErrorTypes } from '../../common/errors.js';
import type { DashboardConfig } from '../../common/incident/config.js';
import type { BuildCacheCleared, DashboardCheck, LogSearch, LogSearchResult, PolicyCheck } from '../../common/incident/service-checks.js';
import { envRefs, resolveEnvRefs } from '../../lib/env.js';
import { redactSecrets, redactUrlsIn } from '../../lib/redact.js';
import { resolveDb, withClient } from '../database/pg.js';
import type { ActivityDeps } from '../deps.js';
import { configFailure } from '../drivers/support.js';
import { searchServiceLogs } from './logs.js';
import { serviceNamed } from '../services.js';

/** service-error-triage's checks beyond health, cache and metrics (Fulcrum 3.1, 3.5, 6). */
export function createServiceCheckActivities(deps: ActivityDeps) {
  return {
    policyCheck: (req: { database: string; tenantId?: string }) => policyCheck(deps, req),
    searchLogs: (req: { service: string } & LogSearch) => searchLogs(deps, req),
    dashboardCheck: (req: { service: string }) => dashboardCheck(deps, req),
    clearBuildCache: (req: { service: string }) => clearBuildCache(deps, req),
  };
}


/**
 * Fulcrum 3.1 step 4 (`SELECT COUNT(*) FROM policies`) and, for one tenant, its resolution
 * query: the tenant's 10 most recently updated policies. The tenant id is a parameter.
 */
export async function policyCheck(deps: ActivityDeps, req: { database: string; tenantId?: string }): Promise<PolicyCheck> {
  const db = resolveDb(deps, req.database);
  try {
    return await withClient(db.url, db.secrets, async (c: pg.Client) => {
      await c.query(`SET statement_timeout = '10s'`);
      const exists = await c.query<{ r: string | null }>(`SELECT to_regclass('policies') AS r`);
      if (!exists.rows[0]?.r) return { ok: false, total: null, detail: 'no policies table in this database (search_path)' };
      const total = Number((await c.query<{ n: string }>('SELECT COUNT(*) AS n FROM policies')).rows[0]!.n);
      if (!req.tenantId) return { ok: true, total, detail: `${total} policies` };
      const rows = await c.query<{ id: string; name: string; enabled: boolean; updated_at: Date }>(
        `SELECT id::text AS id, name, enabled, updated_at FROM policies WHERE tenant_id = $1 ORDER BY updated_at DESC LIMIT 10`,
        [req.tenantId],
      );
      return {
        ok: true,
        total,
        detail: `${total} policies`,
        tenant: {
          id: req.tenantId,
          policies: rows.rows.map((r) => ({ id: r.id, name: r.name.slice(0, 200), enabled: r.enabled, updatedAt: new Date(r.updated_at).toISOString() })),
        },
      };
    });
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    return { ok: false, total: null, detail: redactSecrets((err as Error).message, db.secrets) };
  }
}

export async function searchLogs(deps: ActivityDeps, req: { service: string } & LogSearch): Promise<LogSearchResult> {
  const { service, ...q } = req;
  return searchServiceLogs(deps, serviceNamed(deps, service), q);
}

function dashboardOf(deps: ActivityDeps, service: string): DashboardConfig | undefined {
  return deps.config.incident?.dashboards.find((d) => d.service === service);
}

function resolved(deps: ActivityDeps, value: string, field: string): string {
  try {
    return resolveEnvRefs(value, deps.env, field);
  } catch (err) {
    return configFailure(err);
  }
}

/** KEY=value lines of an env file: names and whether the value is empty (values are never kept). */
function envFileNames(text: string): Map<string, boolean> {
  const names = new Map<string, boolean>();
  for (const raw of text.split('\n')) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(raw);
    if (!m || raw.trimStart().startsWith('#')) continue;
    const value = m[2]!.replace(/^(['"])(.*)\1$/, '$2');
    names.set(m[1]!, value !== '');
  }
  return names;
}

/**
 * The build cache directory, refused when it could be something else than a cache: the
 * file system root, the home directory, the config directory or one of its ancestors.
 */
function buildCacheDir(deps: ActivityDeps, d: DashboardConfig): string | undefined {
  if (!d.buildCacheDir) return undefined;
  const dir = path.resolve(deps.configDir, resolved(deps, d.buildCacheDir, `incident.dashboards.${d.service}.buildCacheDir`));
  const guarded = [path.parse(dir).root, homedir(), path.resolve(deps.configDir)];
  if (guarded.some((g) => g === dir || path.relative(dir, g).split(path.sep)[0] !== '..')) {
    throw ApplicationFailure.nonRetryable(
      `incident.dashboards.${d.service}.buildCacheDir resolves to ${dir}, which is or contains the root, the home or the config directory: point it at the cache itself (e.g. app/.next)`,
      ErrorTypes.InvalidConfig,
    );
  }
  return dir;
}

async function tree(dir: string): Promise<{ exists: boolean; files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  try {
    const top = await lstat(dir);
    if (!top.isDirectory()) return { exists: true, files: 1, bytes: top.size };
  } catch {
    return { exists: false, files: 0, bytes: 0 };
  }
  const stack = [dir];
  while (stack.length > 0 && files < 200_000) {
    const d = stack.pop()!;
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else {
        files += 1;
        bytes += (await lstat(p).catch(() => ({ size: 0 }))).size;
      }
    }
  }
  return { exists: true, files, bytes };
}

/** Fulcrum 3.5 steps 2-4: the backend answers, the required settings are set, the build cache's size. */
export async function dashboardCheck(deps: ActivityDeps, req: { service: string }): Promise<DashboardCheck | null> {
  const svc = serviceNamed(deps, req.service);
  const d = dashboardOf(deps, req.service);
  if (!d) return null;
  const field = `incident.dashboards.${d.service}`;

  const url = resolved(deps, d.backendUrl, `${field}.backendUrl`);
  const urlSecrets = envRefs(d.backendUrl).flatMap((n) => deps.env[n] ?? []);
  const shownUrl = redactSecrets(url, urlSecrets);
  let backend: DashboardCheck['backend'];
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000), redirect: 'manual' });
    const text = await res.text();
    backend = { ok: res.ok, detail: `${shownUrl}: HTTP ${res.status}, ${text.split('\n').filter(Boolean).length} lines` };
  } catch (err) {
    const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
    backend = { ok: false, detail: `${shownUrl}: ${redactUrlsIn(redactSecrets(cause, urlSecrets))}` };
  }

  // Names only: a value is looked at for being empty, never kept or returned.
  const set = new Map<string, boolean>();
  const sources: string[] = [];
  if (d.envFile) {
    const file = path.resolve(deps.configDir, resolved(deps, d.envFile, `${field}.envFile`));
    try {
      for (const [k, v] of envFileNames(await readFile(file, 'utf8'))) set.set(k, v);
      sources.push(file);
    } catch (err) {
      sources.push(`${file} (unreadable: ${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  if (svc.driver.type === 'command' && Object.keys(svc.driver.env).length > 0) {
    for (const [k, v] of Object.entries(svc.driver.env)) {
      const refs = envRefs(v);
      const value = refs.length > 0 && refs.some((r) => deps.env[r] === undefined) ? '' : refs.reduce((acc, r) => acc.split(`\${${r}}`).join(deps.env[r] ?? ''), v);
      set.set(k, set.get(k) || value !== '');
    }
    sources.push(`services.${svc.name}.driver.env`);
  }
  const checked = [...d.requiredEnv];
  const env = {
    checked,
    present: checked.filter((n) => set.get(n) === true),
    missing: checked.filter((n) => !set.has(n)),
    empty: checked.filter((n) => set.get(n) === false),
    sources,
  };

  const dir = buildCacheDir(deps, d);
  const buildCache = dir ? { dir, ...(await tree(dir)) } : null;
  return { backend, env, buildCache };
}

/** Fulcrum 3.5 resolution: `rm -rf` the build cache (after the workflow's approval). Deleting a missing cache is a no-op, so a retry is harmless. */
export async function clearBuildCache(deps: ActivityDeps, req: { service: string }): Promise<BuildCacheCleared> {
  const d = dashboardOf(deps, req.service);
  const dir = d ? buildCacheDir(deps, d) : undefined;
  if (!d || !dir) {
    throw ApplicationFailure.nonRetryable(`service ${req.service} has no build cache: set incident.dashboards[].buildCacheDir for it`, ErrorTypes.InvalidConfig);
  }
  const before = await tree(dir);
  if (before.exists) await rm(dir, { recursive: true, force: true });
  deps.logger.info({ service: req.service, dir, files: before.files, bytes: before.bytes }, 'build cache cleared');
  return { dir, existed: before.exists, ...before };
}
