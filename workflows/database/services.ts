import { ApplicationFailure, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import type { DatabasePlan } from '../../common/database/types.js';
import { ErrorTypes } from '../../common/errors.js';
import type { PlanService, RunbookPlan, ServiceActionResult } from '../../common/types.js';
import { selectServices } from '../shared/health.js';
import { longRunning, quick } from '../shared/profiles.js';

/** What the database runbooks share: names for what they create, and stopping/starting the services around their work. */

const { serviceStatus } = proxyActivities<Activities>(quick);
const { serviceAction, waitHealthy } = proxyActivities<Activities>(longRunning);

/** `20261123T093000Z`: sortable, and safe in folder and database names. */
export function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/**
 * Eight hex digits of the run id that tell runs apart. Run ids are UUIDv7: their first digits
 * are a timestamp, shared by every run started within about a minute, so two backups started in
 * the same second got the same id and the second overwrote the first. Runs started before the
 * fix keep their first-digit names (a patch marker) so what they created keeps its name.
 */
export function shortRun(): string {
  const hex = workflowInfo().runId.replace(/-/g, '');
  return patched('run-names-use-random-digits') ? hex.slice(-8) : hex.slice(0, 8);
}

export function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * The app services to stop around the work: the given names, else `fallback` (the apps group);
 * only those a driver can stop, never `exclude` (the database's own service). No names means
 * none (selectServices alone would read it as every service).
 */
export function appServices(plan: RunbookPlan, names: string[] | undefined, fallback: string[], exclude?: string): PlanService[] {
  const wanted = names ?? fallback;
  if (wanted.length === 0) return [];
  return selectServices(plan, wanted, 'services').filter((s) => s.actions.includes('stop') && s.name !== exclude);
}

/** Stops each service that is not known to be stopped, in order. */
export async function stopServices(services: readonly PlanService[]): Promise<ServiceActionResult[]> {
  const out: ServiceActionResult[] = [];
  for (const s of services) {
    const st = await serviceStatus({ service: s.name });
    if (st.running !== false) out.push(await serviceAction({ service: s.name, action: 'stop' }));
  }
  return out;
}

/**
 * Starts each service that is not running (every one with `always`: `up -d` of a running
 * compose service changes nothing), then waits for the probes of all of them.
 */
export async function startServices(
  services: readonly PlanService[],
  plan: RunbookPlan,
  timeoutSeconds: number,
  opts: { always?: boolean } = {},
): Promise<ServiceActionResult[]> {
  const out: ServiceActionResult[] = [];
  for (const s of services) {
    if (!opts.always && (await serviceStatus({ service: s.name })).running === true) continue;
    out.push(await serviceAction({ service: s.name, action: 'start' }));
  }
  const withProbes = services.filter((s) => s.probes.length > 0).map((s) => s.name);
  if (withProbes.length > 0) {
    await waitHealthy({ services: withProbes, timeoutSeconds, deadline: Date.now() + timeoutSeconds * 1000, pollIntervalSeconds: plan.pollIntervalSeconds });
  }
  return out;
}

export function requireBackups(plan: DatabasePlan): void {
  if (!plan.backupsConfigured) {
    throw ApplicationFailure.nonRetryable(
      'databaseOps.backups is not configured: add databaseOps.backups.repository (a directory for the backups) to the config',
      ErrorTypes.InvalidConfig,
    );
  }
}
