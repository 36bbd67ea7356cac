import type { ProcedureId } from './procedures.js';

/**
 * `runbook plan`: a run of the procedure's own workflow, started with this memo set, in which
 * only the activities below run. The first other activity (or timer, child run, continue-as-new)
 * ends the plan: that step and every later one is recorded as what the run would do.
 */
export const PLAN_MEMO = 'runbookPlan';

/** Plan runs get ids of their own, so a list of runs never mistakes one for a real run. */
export const PLAN_ID_PREFIX = 'plan--';

/**
 * Activities that only read (config, state, probes, backups, windows, metrics): a plan runs
 * them. Everything else changes something, sends something or waits, and is only recorded.
 */
export const READ_ONLY_ACTIVITIES: ReadonlySet<string> = new Set([
  'checkInput',
  'loadPlan',
  'loadDatabasePlan',
  'deliveryPlan',
  'incidentPlan',
  'redisOpsPlan',
  'volumePlan',
  'planMigrations',
  'planRollback',
  'schemaObjects',
  'preflight',
  'serviceStatus',
  'runProbe',
  'runProbes',
  'chooseBackup',
  'verifyBackup',
  'checkTableRestore',
  'checkVolumeTarball',
  'checkRedisSnapshot',
  'countDatabaseTables',
  'pitrWindow',
  'archiveStatus',
  'drillSources',
  'trafficWeight',
  'backendHealth',
  'promQuery',
  'fetchMetrics',
  'redisServerState',
  'redisClientCount',
  'redisCountMatching',
  'redisTriageRead',
  'redisReplicationRead',
  'natsTriageRead',
  'bloatReport',
  'triageReport',
  'slowQueries',
  'searchLogs',
  'serviceLogs',
  'dashboardCheck',
  'policyCheck',
  'cacheCheck',
  'databaseCheck',
  'databaseState',
  'countRecovered',
  'verifyRestore',
  'verifyVolumeRestore',
]);

/**
 * Activities a plan never runs: they change something, send something (a page, a webhook, a
 * ticket) or wait (for health, a recovery, a metric window). Every activity the worker registers
 * is in one of the two lists (tests/common/plan-activities.test.ts), so a new one is classified
 * when it is added, not found out by a plan that changed something.
 */
export const ACTING_ACTIVITIES: ReadonlySet<string> = new Set([
  'applyConfigManifest', 'applyMigrations', 'applyRetention', 'baseBackup', 'baseRetention', 'cleanServices', 'clearBuildCache',
  'createTicket', 'deliveryNotify', 'disableFeatureFlag', 'dropRestored', 'dumpDatabase', 'measureAnalysis', 'migrate', 'natsPurge',
  'notify', 'notifyDr', 'redisFlush', 'redisUnlink', 'removeOldDataDir', 'replaceRedisDump', 'restoreEnvFile', 'restoreInto',
  'restoreTables', 'rollbackAppRevision', 'rollbackMigrations', 'rollbackReleaseMigrations', 'serviceAction', 'setTrafficWeight',
  'signalBackends', 'startAtPreviousVersion', 'startRecovery', 'stopRecovered', 'swapDatabases', 'switchDataDir', 'takeRedisSnapshot',
  'tarVolume', 'untarVolume', 'uploadBackup', 'uploadBaseBackup', 'vacuumTables', 'verifyApproval', 'verifyServingVersion',
  'volumeRetention', 'waitHealthy', 'waitRecovered', 'waitRedisDown', 'waitRedisReady', 'walRetention',
]);

/** Activities that only read when asked to (`dryRun: true`): a retention or migration preview. */
const READ_ONLY_WHEN_DRY_RUN: ReadonlySet<string> = new Set(['applyRetention', 'migrate']);

export function readsOnly(activityType: string, args: readonly unknown[]): boolean {
  if (READ_ONLY_ACTIVITIES.has(activityType)) return true;
  const first = args[0];
  return READ_ONLY_WHEN_DRY_RUN.has(activityType) && typeof first === 'object' && first !== null && (first as { dryRun?: unknown }).dryRun === true;
}

/**
 * - `checked`: ran in the plan (read-only), its result in `detail`
 * - `would-do`: the step the plan stopped at, or one after it
 * - `approval`: an approval the run asks for, with who can give it (not asked in the plan)
 * - `skipped`: the run skips it with this config and input
 * - `refused`: the run stops here already, `detail` says why
 */
export type PlanStepKind = 'checked' | 'would-do' | 'approval' | 'skipped' | 'refused';

export interface PlanApproval {
  approvers: string[];
  quorum: number;
  timeoutSeconds?: number;
  /** Known for approvals the plan reached: the two-person rule and the confirmation phrase. */
  destructive?: boolean;
  confirmPhrase?: string;
  summary?: string;
}

export interface PlanStep {
  id: string;
  title: string;
  kind: PlanStepKind;
  detail?: string;
  /** What the step calls, with its targets (services, databases, routers), as the UI's activity summaries name them. */
  touches: string[];
  approval?: PlanApproval;
}

export interface RunPlan {
  plan: true;
  procedure: ProcedureId;
  workflowId: string;
  requestedBy: string;
  steps: PlanStep[];
  /** Where the plan stopped running: the first step that would change something. */
  stoppedAt?: { step: string; activity: string };
  /** Set when the run would fail already: the step and the reason (an unknown service, a target outside the window). */
  refused?: { step?: string; message: string };
}

/** A plan as text: one line per step, approvals with who can give them, then the refusal if any. */
export function planText(p: RunPlan): string {
  const mark: Record<PlanStepKind, string> = { checked: 'checked ', 'would-do': 'would do', approval: 'approval', skipped: 'skipped ', refused: 'REFUSED ' };
  const lines = [`plan of ${p.procedure} for ${p.requestedBy} (${p.workflowId}): nothing was changed`];
  p.steps.forEach((s, i) => {
    lines.push(`${String(i + 1).padStart(2)}. [${mark[s.kind]}] ${s.id}: ${s.title}${s.detail ? ` - ${s.detail}` : ''}`);
    if (s.touches.length) lines.push(`      touches: ${s.touches.join('; ')}`);
    const a = s.approval;
    if (a) {
      const who = a.approvers.length ? a.approvers.join(', ') : '(no approvers configured)';
      const extra = [
        a.quorum > 1 ? `${a.quorum} of them` : '',
        a.destructive ? 'not the requester' : '',
        a.confirmPhrase ? `confirm "${a.confirmPhrase}"` : '',
        a.timeoutSeconds !== undefined ? `times out after ${a.timeoutSeconds}s` : '',
      ].filter(Boolean);
      lines.push(`      approvers: ${who}${extra.length ? ` (${extra.join(', ')})` : ''}`);
    }
  });
  if (p.stoppedAt) lines.push(`the plan ran the read-only steps up to ${p.stoppedAt.step}, which would run ${p.stoppedAt.activity}`);
  if (p.refused) lines.push(`refused${p.refused.step ? ` at step ${p.refused.step}` : ''}: ${p.refused.message}`);
  return lines.join('\n');
}
