import { policyOf } from '../../common/approvals.js';
import { ApplicationFailure, CancellationScope, patched, proxyActivities, upsertMemo, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { ErrorTypes } from '../../common/errors.js';
import type {
  BackupUpload,
  BaseBackupManifest,
  DatabasePlan,
  DbBaseBackupInput,
  DbBaseBackupResult,
  PitrRestoreInput,
  WalRetention,
  PitrRestoreResult,
  PitrWindow,
  RestoreDrillInput,
  RestoreDrillResult,
} from '../../common/database/types.js';
import { PROCEDURES } from '../../common/procedures.js';
import type { PlanService, RunbookPlan } from '../../common/types.js';
import { RestoreDrillRpoSeconds, RestoreDrillRtoSeconds } from '../../common/search-attributes.js';
import { withDatabaseLock } from './lock.js';
import { appServices, shortRun, stamp, startServices, stopServices } from './services.js';
import { checkHealth, selectServices, summarizeHealth } from '../shared/health.js';
import { longRunning, quick } from '../shared/profiles.js';
import { RunContext } from '../shared/run-context.js';

const { loadDatabasePlan, loadPlan, archiveStatus, pitrWindow, baseRetention, countRecovered, removeOldDataDir, drillSources, chooseBackup, verifyRestore, dropRestored, notifyDr, serviceStatus } =
  proxyActivities<Activities>(quick);
const { baseBackup, uploadBaseBackup, walRetention, startRecovery, waitRecovered, stopRecovered, switchDataDir, restoreInto, verifyBackup, serviceAction } =
  proxyActivities<Activities>(longRunning);

/** `db-base-backup`: pg_basebackup of a WAL-archiving cluster, with the archiver's health. */
export async function dbBaseBackup(rawInput?: DbBaseBackupInput): Promise<DbBaseBackupResult> {
  const input = await RunContext.input(PROCEDURES.dbBaseBackup, rawInput);
  const ctx = new RunContext(PROCEDURES.dbBaseBackup, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['wal-check', 'Check WAL archiving'],
    ['base-backup', 'pg_basebackup'],
    ['retention', 'Apply retention'],
  ]);
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadDatabasePlan({ database: input.database, procedure: PROCEDURES.dbBaseBackup }));
    const archive = await ctx.step(
      'wal-check',
      async () => {
        const a = await archiveStatus({ database: plan.database });
        if (a.lastFailedAt && (!a.lastArchivedAt || a.lastFailedAt > a.lastArchivedAt)) {
          throw ApplicationFailure.nonRetryable(`WAL archiving is failing (last failure ${a.lastFailedAt}, last success ${a.lastArchivedAt ?? 'never'}): fix archive_command before relying on PITR`, 'ArchivingBroken');
        }
        return a;
      },
      (a) => `${a.archivedCount} archived, ${a.failedCount} failed, last ${a.lastArchivedWal ?? '-'} at ${a.lastArchivedAt ?? '-'}`,
    );
    const backup = await ctx.step(
      'base-backup',
      () => baseBackup({ database: plan.database, id: `${stamp()}-${shortRun()}`, workflowId: workflowInfo().workflowId }),
      (b) => `${b.id}: ${(b.sizeBytes / 1024 / 1024).toFixed(1)} MB from ${b.startLsn}`,
    );
    // AlphaPulse 5.2: the base backup off-host, beside the WAL that `runbook wal push` archives there.
    let upload: BackupUpload | null = null;
    if (plan.pitrObjectStorage && patched('base-backup-object-storage')) {
      ctx.addStep('upload', `Upload to ${plan.objectStorage}`, 'base-backup');
      upload = await ctx.step(
        'upload',
        () => uploadBaseBackup({ database: plan.database, id: backup.id }),
        (u) => (!u ? 'not configured' : u.already ? `already in ${u.location}` : `${u.location}: ${(u.bytes / 1024 / 1024).toFixed(1)} MB tar at ${u.throughputMBps} MB/s, SHA-256 checked by the store`),
      );
    }
    const deleted = await ctx.step('retention', () => baseRetention({ database: plan.database, protect: backup.id }), (d) => (d.length ? `deleted ${d.join(', ')}` : 'nothing to delete'));
    // The same policy for the WAL in the store: what no kept base backup can replay goes. Runs begun before this step skip it on replay.
    let wal: WalRetention | null = null;
    if (plan.pitrObjectStorage && patched('wal-retention-object-storage')) {
      ctx.addStep('wal-retention', 'Delete archived WAL older than the oldest kept base backup', 'retention');
      wal = await ctx.step(
        'wal-retention',
        () => walRetention({ database: plan.database }),
        (w) =>
          w.skipped
            ? `nothing deleted: ${w.skipped}`
            : `${w.deleted ? `deleted ${w.deleted} file(s), ${w.firstDeleted} to ${w.lastDeleted}` : 'nothing to delete'}; kept from ${w.keepFrom} (start of ${w.oldestBaseBackupId}), ${w.remaining} left`,
      );
    }
    return { ok: true, backup, archive, deleted, ...(plan.pitrObjectStorage ? { upload, walRetention: wal } : {}), progress: ctx.progress };
  });
}

/** The base backup to start from, or why the target cannot be reached: checked before anything is touched. */
function chooseBase(window: PitrWindow, targetTime: string): BaseBackupManifest {
  const target = Date.parse(targetTime);
  const usable = window.backups.filter((b) => Date.parse(b.endedAt) <= target);
  const oldest = window.backups[0];
  if (!oldest) {
    throw ApplicationFailure.nonRetryable('no base backup exists: run db-base-backup first; nothing was touched', 'TargetOutOfRange');
  }
  if (usable.length === 0) {
    throw ApplicationFailure.nonRetryable(
      `targetTime ${targetTime} is before the oldest usable base backup (consistent from ${oldest.endedAt}); nothing was touched`,
      'TargetOutOfRange',
    );
  }
  if (!window.lastArchivedAt || target > Date.parse(window.lastArchivedAt)) {
    throw ApplicationFailure.nonRetryable(
      `targetTime ${targetTime} is after the last archived WAL (${window.lastArchivedAt ?? 'none archived'}): it cannot be reached, and a PITR never silently restores to "latest"; nothing was touched`,
      'TargetOutOfRange',
    );
  }
  return usable[usable.length - 1]!;
}

/**
 * pitr-restore's switch without waits the steps by hand do not have: the database service's
 * status is read while the recovered rows are counted (it changes nothing), the live cluster and
 * the verified recovered one stop at the same time, and the service is started without asking
 * its status again (switchDataDir has just checked that it is stopped). Nothing is stopped before
 * the verification, and the order stop, switch, start is kept. Runs begun before it replay the
 * old sequence.
 */
const SWITCH_STOPS_AT_ONCE = 'pitr-switch-stops-at-once';

/** pitr-restore's verify step: the recovered rows counted; with the patch, the live cluster's status read meanwhile for the switch. */
async function verifyRecovered(
  db: DatabasePlan,
  port: number,
  dbService: PlanService,
  atOnce: boolean,
): Promise<{ counts: Record<string, number>; liveRunning?: boolean | 'unknown' }> {
  const [counts, live] = await Promise.all([
    countRecovered({ database: db.database, port, tables: db.verifyTables }),
    atOnce ? serviceStatus({ service: dbService.name }) : undefined,
  ]);
  const missing = Object.entries(counts).filter(([, n]) => n < 0).map(([t]) => t);
  if (missing.length) throw ApplicationFailure.nonRetryable(`recovered cluster lacks ${missing.join(', ')}; the live cluster was not touched`, 'RecoveryFailed');
  return { counts, liveRunning: live?.running };
}

interface SwitchTarget {
  db: DatabasePlan;
  dbService: PlanService;
  plan: RunbookPlan;
  restoreId: string;
  when: string;
  timeout: number;
}

/** pitr-restore's switch step: stop, move the data directories, start; `onSwitched` once the recovered data is in place. */
async function switchToRecovered(t: SwitchTarget, atOnce: boolean, liveRunning: boolean | 'unknown' | undefined, onSwitched: () => void): Promise<{ oldDataDir: string }> {
  const { db, dbService, plan, restoreId, when, timeout } = t;
  if (atOnce) {
    // The verified recovered server and the live cluster stop at the same time; both are
    // waited for, so a failure leaves neither half-way when the attempt is dropped.
    const stops = await Promise.allSettled([
      liveRunning !== false ? serviceAction({ service: dbService.name, action: 'stop' }) : undefined,
      stopRecovered({ database: db.database, restoreId, remove: false }),
    ]);
    for (const s of stops) if (s.status === 'rejected') throw s.reason;
    const r = await switchDataDir({ database: db.database, restoreId, stamp: when });
    onSwitched();
    // switchDataDir has just found the live cluster stopped: no status to ask before starting it.
    await startServices([dbService], plan, timeout, { always: true });
    return r;
  }
  await stopServices([dbService]);
  const r = await switchDataDir({ database: db.database, restoreId, stamp: when });
  onSwitched();
  await startServices([dbService], plan, timeout);
  return r;
}

/** `pitr-restore`: AlphaPulse 5.2 / Fulcrum 8.2 PITR — recover the cluster to a moment, switch to it, keep the old data until approved. */
export async function pitrRestore(rawInput?: PitrRestoreInput): Promise<PitrRestoreResult> {
  const input = await RunContext.input(PROCEDURES.pitrRestore, rawInput);
  const requestedBy = input.requestedBy ?? 'unknown';
  const ctx = new RunContext(PROCEDURES.pitrRestore, requestedBy, [
    ['plan', 'Load configuration'],
    ['window', 'Check the target against the recoverable window'],
    ['approve-restore', 'Approve the point-in-time recovery'],
    ['stop-apps', 'Stop application services'],
    ['restore', 'Restore the base backup into a new data directory'],
    ['recover', 'Replay WAL to the target and promote'],
    ['verify', 'Verify tables'],
    ['switch', 'Switch the database service to the recovered cluster'],
    ['start-apps', 'Restart application services'],
    ['health', 'Health'],
    ['approve-cleanup', 'Approve removing the old data directory'],
    ['cleanup', 'Remove the old data directory'],
  ]);
  return ctx.run(async () => {
    const started = Date.now();
    const { plan, db } = await ctx.step('plan', async () => ({
      plan: await loadPlan({ procedure: PROCEDURES.pitrRestore }),
      db: await loadDatabasePlan({ database: input.database, procedure: PROCEDURES.pitrRestore }),
    }));
    if (!db.service) {
      throw ApplicationFailure.nonRetryable(`databases.${db.database}.service is not set: pitr-restore stops and starts the cluster through that service`, ErrorTypes.InvalidConfig);
    }
    const [dbService] = selectServices(plan, [db.service], 'databases.service');
    const apps = appServices(plan, input.services, db.appServices);
    const window = await ctx.step('window', () => pitrWindow({ database: db.database }), (w) => `${w.backups.length} base backups, WAL archived from ${w.firstSegment ?? '-'} until ${w.lastArchivedAt ?? '-'}`);
    const base = chooseBase(window, input.targetTime);
    const timeout = input.waitTimeoutSeconds ?? 180;
    const restoreId = `pitr-${stamp().toLowerCase()}-${shortRun()}`;
    const when = stamp();

    return withDatabaseLock(db, { workflowId: workflowInfo().workflowId, procedure: PROCEDURES.pitrRestore, requestedBy }, async () => {
      const record = await ctx.requestApproval({
        step: 'approve-restore',
        summary: `Recover ${db.database} to ${input.targetTime} from base backup ${base.id} (consistent from ${base.endedAt}) and WAL archived until ${window.lastArchivedAt}. Stops ${[...apps.map((s) => s.name), dbService!.name].join(', ')}; every change after the target is left behind in the old data directory, which is kept until a final approval.`,
        destructive: true,
        confirmPhrase: 'RESTORE',
        policy: policyOf(db),
        timeoutSeconds: input.approvalTimeoutSeconds ?? db.approvalTimeoutSeconds,
      });
      RunContext.failUnlessApproved(record, 'nothing was stopped or restored');
      await ctx.step('stop-apps', () => stopServices(apps), () => apps.map((s) => s.name).join(', ') || 'no app services');
      let switched = false;
      try {
        const rec = await ctx.step('restore', () => startRecovery({ database: db.database, baseBackupId: base.id, restoreId, targetTime: input.targetTime }), (r) => `${r.dataDir}, recovering on port ${r.port}`);
        const recovered = await ctx.step(
          'recover',
          () => waitRecovered({ database: db.database, restoreId, port: rec.port, timeoutSeconds: 3600 }),
          (r) => `promoted; last transaction ${r.recoveredTo ?? '(none replayed)'}`,
        );
        const atOnce = patched(SWITCH_STOPS_AT_ONCE);
        let liveRunning: boolean | 'unknown' | undefined;
        const counts = await ctx.step(
          'verify',
          async () => {
            const v = await verifyRecovered(db, rec.port, dbService!, atOnce);
            liveRunning = v.liveRunning;
            return v.counts;
          },
          (c) => Object.entries(c).map(([t, n]) => `${t}: ${n}`).join(', ') || 'no verifyTables configured',
        );
        const { oldDataDir } = await ctx.step(
          'switch',
          () => switchToRecovered({ db, dbService: dbService!, plan, restoreId, when, timeout }, atOnce, liveRunning, () => (switched = true)),
          (r) => `old data kept in ${r.oldDataDir}`,
        );
        await ctx.step('start-apps', () => startServices(apps, plan, timeout), () => apps.map((s) => s.name).join(', ') || 'no app services');
        const health = await ctx.step('health', () => checkHealth(plan, [dbService!, ...apps]), summarizeHealth);
        const cleanup = await ctx.requestApproval({
          step: 'approve-cleanup',
          summary: `The recovered cluster is live and healthy. Remove the old data directory ${oldDataDir}? Rejecting keeps it.`,
          destructive: true,
          confirmPhrase: 'DELETE',
          policy: policyOf(db),
          timeoutSeconds: input.approvalTimeoutSeconds ?? db.approvalTimeoutSeconds,
        });
        let removed = false;
        if (cleanup.decision === 'approved') {
          removed = await ctx.step('cleanup', () => removeOldDataDir({ database: db.database, path: oldDataDir }), () => `removed ${oldDataDir}`);
        } else {
          ctx.skip('cleanup', `kept ${oldDataDir} (${cleanup.decision})`);
        }
        return {
          ok: health.ok,
          baseBackupId: base.id,
          targetTime: input.targetTime,
          recoveredTo: recovered.recoveredTo,
          dataDir: rec.dataDir,
          oldDataDir: removed ? null : oldDataDir,
          oldDataDirRemoved: removed,
          counts,
          durationMs: Date.now() - started,
          approvals: ctx.approvals,
          refusals: ctx.refusals,
          refusalsDropped: ctx.refusalsDropped,
          progress: ctx.progress,
        };
      } catch (err) {
        // Before the switch the live cluster was never touched: bring the apps back and drop the attempt.
        if (!switched) {
          await CancellationScope.nonCancellable(async () => {
            await stopRecovered({ database: db.database, restoreId, remove: true }).catch(() => undefined);
            await startServices(apps, plan, timeout).catch(() => undefined);
          });
        }
        throw err;
      }
    });
  });
}

/** `restore-drill`: AlphaPulse 5 — restore the latest backup and a PITR to the newest archived WAL into scratch, measure RTO/RPO, clean up. */
export async function restoreDrill(rawInput?: RestoreDrillInput): Promise<RestoreDrillResult> {
  const input = await RunContext.input(PROCEDURES.restoreDrill, rawInput);
  const ctx = new RunContext(PROCEDURES.restoreDrill, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['logical', 'Restore the latest logical backup into a scratch database'],
    ['pitr', 'Recover the latest base backup + WAL into a scratch cluster'],
    ['cleanup', 'Remove the scratch copies'],
    ['objectives', 'Compare with the DR objectives'],
  ]);
  return ctx.run(async () => {
    const plan = await ctx.step('plan', async () => ({
      db: await loadDatabasePlan({ database: input.database, procedure: PROCEDURES.restoreDrill }),
      sources: await drillSources({ database: input.database }),
    }));
    const { db, sources } = plan;
    const scratchDb = `${db.database}_drill_${shortRun()}`;
    const restoreId = `drill-${stamp().toLowerCase()}-${shortRun()}`;
    let logical: RestoreDrillResult['logical'] = null;
    let pitr: RestoreDrillResult['pitr'] = null;
    let backupId: string | undefined;
    let pitrAge: number | undefined;
    try {
      if (sources.logical) {
        logical = await ctx.step(
          'logical',
          async () => {
            const b = await chooseBackup({ database: db.database });
            backupId = b.id;
            // The RTO counts the fetch from object storage and the checksum check: a real restore does both.
            const t0 = Date.now();
            const v = await verifyBackup({ database: db.database, id: b.id });
            await restoreInto({ database: db.database, backupId: b.id, target: scratchDb, workflowId: workflowInfo().workflowId, jobs: db.jobs });
            const counts = await verifyRestore({ database: db.database, backupId: b.id, target: scratchDb });
            const bad = counts.filter((c) => c.actual !== c.expected);
            if (bad.length) throw ApplicationFailure.nonRetryable(`integrity check failed: ${bad.map((c) => `${c.table} ${c.actual}/${c.expected}`).join(', ')}`, 'RestoreVerificationFailed');
            pitrAge = Date.now() - Date.parse(b.startedAt);
            return { backupId: b.id, restoreMs: Date.now() - t0, counts, ...(v.fetched ? { fetchedFrom: v.fetched.location } : {}) };
          },
          (l) => `${l.backupId}${l.fetchedFrom ? ` from ${l.fetchedFrom}` : ''} in ${l.restoreMs} ms; ${l.counts.map((c) => `${c.table}: ${c.actual}`).join(', ') || 'no verifyTables'}`,
        );
      } else {
        ctx.skip('logical', 'databaseOps.backups is not configured');
      }
      if (sources.pitr) {
        pitr = await ctx.step(
          'pitr',
          async () => {
            const w = await pitrWindow({ database: db.database });
            const base = w.backups[w.backups.length - 1];
            if (!base || !w.lastArchivedAt) throw ApplicationFailure.nonRetryable('no base backup or no archived WAL: run db-base-backup', 'TargetOutOfRange');
            const t0 = Date.now();
            const rec = await startRecovery({ database: db.database, baseBackupId: base.id, restoreId });
            const r = await waitRecovered({ database: db.database, restoreId, port: rec.port, timeoutSeconds: 3600 });
            const counts = await countRecovered({ database: db.database, port: rec.port, tables: db.verifyTables });
            const missing = Object.entries(counts).filter(([, n]) => n < 0).map(([t]) => t);
            if (missing.length) throw ApplicationFailure.nonRetryable(`integrity check failed: ${missing.join(', ')} missing after recovery`, 'RecoveryFailed');
            pitrAge = Date.now() - Date.parse(w.lastArchivedAt);
            return { baseBackupId: base.id, targetTime: w.lastArchivedAt, recoveredTo: r.recoveredTo, restoreMs: Date.now() - t0, counts };
          },
          (p) => `${p.baseBackupId} + WAL to ${p.targetTime} in ${p.restoreMs} ms`,
        );
      } else {
        ctx.skip('pitr', 'no databaseOps.pitr entry for this database');
      }
    } finally {
      await CancellationScope.nonCancellable(() =>
        ctx.step('cleanup', async () => {
          if (sources.pitr) await stopRecovered({ database: db.database, restoreId, remove: true });
          if (backupId) await dropRestored({ database: db.database, name: scratchDb, backupId, workflowId: workflowInfo().workflowId });
        }),
      );
    }
    if (!logical && !pitr) throw ApplicationFailure.nonRetryable('nothing to drill: configure databaseOps.backups and/or databaseOps.pitr', ErrorTypes.InvalidConfig);
    const rtoSeconds = Math.round(((logical?.restoreMs ?? 0) + (pitr?.restoreMs ?? 0)) / 100) / 10;
    const rpoSeconds = Math.round((pitrAge ?? 0) / 100) / 10;
    const objectives = await ctx.step('objectives', async () => {
      const o = { rtoSeconds: db.dr.rtoSeconds, rpoSeconds: db.dr.rpoSeconds };
      const within = rtoSeconds <= o.rtoSeconds && rpoSeconds <= o.rpoSeconds;
      upsertMemo({ rtoSeconds, rpoSeconds, withinObjectives: within });
      // Searchable too, so drills that missed an objective can be listed: `RestoreDrillRtoSeconds > 3600`.
      upsertSearchAttributes([
        { key: RestoreDrillRtoSeconds, value: rtoSeconds },
        { key: RestoreDrillRpoSeconds, value: rpoSeconds },
      ]);
      const notified = within
        ? false
        : await notifyDr({ subject: `restore drill of ${db.database} missed its DR objectives`, report: { database: db.database, rtoSeconds, rpoSeconds, objectives: o, workflowId: workflowInfo().workflowId } });
      return { o, within, notified };
    }, (r) => `RTO ${rtoSeconds}s (objective ${r.o.rtoSeconds}s), RPO ${rpoSeconds}s (objective ${r.o.rpoSeconds}s)${r.within ? '' : ' — MISSED'}`);
    return {
      ok: objectives.within,
      logical,
      pitr,
      rtoSeconds,
      rpoSeconds,
      objectives: objectives.o,
      withinObjectives: objectives.within,
      notified: objectives.notified,
      progress: ctx.progress,
    };
  });
}
