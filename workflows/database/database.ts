import { policyOf } from '../../common/approvals.js';
import { ApplicationFailure, CancellationScope, patched, proxyActivities, proxyLocalActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { ErrorTypes } from '../../common/errors.js';
import type {
  AppRestart,
  BackupManifest,
  BackupUpload,
  DatabasePlan,
  DbBackupInput,
  DbBackupResult,
  DbMigrationRollbackInput,
  DbMigrationRollbackResult,
  DbRestoreInput,
  DbRestoreResult,
  DbTriageInput,
  DbTriageResult,
  DbVacuumInput,
  DbVolumeBackupResult,
  DbVolumeRestoreResult,
  DbVacuumResult,
  PidAction,
} from '../../common/database/types.js';
import { PROCEDURES, type ProcedureId } from '../../common/procedures.js';
import type { HealthCheckResult, PlanService, RunbookPlan, ServiceActionResult } from '../../common/types.js';
import { withDatabaseLock } from './lock.js';
import { appServices, mb, requireBackups, shortRun, stamp, startServices, stopServices } from './services.js';
import { dbVolumeBackup, dbVolumeRestore } from './volume.js';
import { dbRestoreTables } from './table-restore.js';
import { checkHealth, summarizeHealth } from '../shared/health.js';
import { localQuick, longRunning, quick } from '../shared/profiles.js';
import { RunContext } from '../shared/run-context.js';

export { dbBackup, dbRestore, dbMigrationRollback, dbVacuum, dbTriage };

const { loadDatabasePlan, loadPlan, chooseBackup, applyRetention, bloatReport, triageReport, signalBackends, planRollback, serviceStatus } =
  proxyActivities<Activities>(quick);
const { dumpDatabase, verifyBackup, uploadBackup, restoreInto, verifyRestore, swapDatabases, vacuumTables, rollbackMigrations, serviceAction, waitHealthy, startAtPreviousVersion } =
  proxyActivities<Activities>(longRunning);
// One attempt: `rollout undo` run twice undoes the undo, so a failure goes to a human, never to a retry.
// The config snapshot read in the worker's process, without a round trip through the server (db-backup).
const { loadDatabasePlan: loadDatabasePlanLocally } = proxyLocalActivities<Activities>(localQuick);
const { rollbackAppRevision } = proxyActivities<Activities>({ ...longRunning, heartbeatTimeout: undefined, startToCloseTimeout: '30 minutes', retry: { maximumAttempts: 1 } });

const IMAGE = /^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/;



/** Fields only the docker-volume mode reads: refused rather than silently ignored. */
function notWithLogical(input: { services?: unknown; waitTimeoutSeconds?: unknown }): void {
  const given = (['services', 'waitTimeoutSeconds'] as const).filter((f) => input[f] !== undefined);
  if (given.length > 0) {
    throw ApplicationFailure.nonRetryable(`${given.join(', ')}: only used with mode docker-volume (a logical backup or restore stops no service)`, ErrorTypes.InvalidInput);
  }
}

function holderOf(procedure: ProcedureId, requestedBy: string) {
  return { workflowId: workflowInfo().workflowId, procedure, requestedBy };
}

/** pg_dump then verification; the id is fixed by the run, so a retried dump finds its own finished backup. */
async function takeBackup(plan: DatabasePlan, opts: { format: 'custom' | 'directory'; jobs: number }): Promise<{ manifest: BackupManifest; verified: { checksum: boolean; tocEntries: number } }> {
  const manifest = await dumpDatabase({ database: plan.database, id: `${stamp()}-${shortRun()}`, format: opts.format, jobs: opts.jobs, workflowId: workflowInfo().workflowId });
  const verified = await verifyBackup({ database: plan.database, id: manifest.id, justWritten: true });
  return { manifest: { ...manifest, tocEntries: verified.tocEntries }, verified };
}

/** `db-backup`: AlphaPulse 3.4 — pg_dump into the repository, manifest, verification, retention. */
async function dbBackup(rawInput?: DbBackupInput): Promise<DbBackupResult | DbVolumeBackupResult> {
  const input = await RunContext.input(PROCEDURES.dbBackup, rawInput);
  if (input.mode === 'docker-volume') return dbVolumeBackup(input);
  notWithLogical(input);
  const ctx = new RunContext(PROCEDURES.dbBackup, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['dump', `pg_dump ${input.database}`],
    ['verify', 'Verify checksum and pg_restore --list'],
    ...(input.retention !== undefined ? [['approve-retention', `Approve keeping only ${input.retention} backup(s)`] as const] : []),
    ['retention', 'Apply retention'],
  ]);
  return ctx.run(async () => {
    // A local activity: one workflow task and one activity dispatch fewer before pg_dump starts. Asked
    // before it runs, with no other patch after it in the same task; runs begun earlier replay the
    // regular activity they recorded.
    const planLoad = patched('backup-plan-local-activity') ? loadDatabasePlanLocally : loadDatabasePlan;
    const plan = await ctx.step('plan', () => planLoad({ database: input.database, procedure: PROCEDURES.dbBackup }));
    requireBackups(plan);
    const format = input.format ?? plan.format;
    const manifest = await ctx.step(
      'dump',
      // With object storage, a custom-format dump also goes up as it is written; the upload step below adds its manifest.
      () =>
        dumpDatabase({
          database: plan.database,
          id: `${stamp()}-${shortRun()}`,
          format,
          jobs: input.jobs ?? plan.jobs,
          workflowId: workflowInfo().workflowId,
          ...(plan.objectStorage ? { upload: true } : {}),
        }),
      (m) => `${m.id}: ${mb(m.sizeBytes)}, sha256 ${m.sha256.slice(0, 12)}…, WAL ${m.walLsn}`,
    );
    // The SHA-256 was taken as the dump was written: verify checks the size and the TOC without reading the dump again.
    const verified = await ctx.step(
      'verify',
      () => verifyBackup({ database: plan.database, id: manifest.id, justWritten: true }),
      (v) => `size and checksum ok, ${v.tocEntries} TOC entries`,
    );
    // AlphaPulse 3.4: the dump goes off-host before retention may delete older copies. Runs begun before this step skip it on replay.
    let upload: BackupUpload | null = null;
    if (plan.objectStorage && patched('backup-object-storage')) {
      ctx.addStep('upload', `Upload to ${plan.objectStorage}`, 'verify');
      upload = await ctx.step(
        'upload',
        () => uploadBackup({ database: plan.database, id: manifest.id }),
        (u) =>
          u.already
            ? `already in ${u.location}`
            : `${u.location}: ${u.objects} object(s), ${mb(u.bytes)} at ${u.throughputMBps} MB/s${u.duringDump ? ' while dumping' : ''}, SHA-256 checked by the store`,
      );
    }
    const keep = input.retention ?? plan.retention;
    let approved: string[] | undefined;
    if (input.retention !== undefined) {
      // The config's retention is the policy; a run's input that keeps fewer deletes backups the
      // policy keeps, so that waits for an approval. Asked for here: runs in flight that have not
      // reached retention yet take the gate; one that already deleted replays as recorded.
      if (keep < plan.retention && patched('backup-retention-override-approval')) {
        const doomed = await applyRetention({ database: plan.database, keep, protect: manifest.id, dryRun: true });
        if (doomed.length > 0) {
          const record = await ctx.requestApproval({
            step: 'approve-retention',
            summary: `Keep only ${keep} backup(s) of ${plan.database} instead of the configured ${plan.retention}: deletes ${doomed.length} backup(s) (${doomed.join(', ')}). The new backup ${manifest.id} is kept.`,
            destructive: true,
            confirmPhrase: 'DELETE',
            policy: policyOf(plan),
            timeoutSeconds: input.approvalTimeoutSeconds ?? plan.approvalTimeoutSeconds,
          });
          RunContext.failUnlessApproved(record, `backup ${manifest.id} was taken and verified; no backup was deleted`);
          approved = doomed;
        } else {
          ctx.skip('approve-retention', `nothing over ${keep}`);
        }
      } else {
        ctx.skip('approve-retention', keep >= plan.retention ? `keeps at least the configured ${plan.retention}` : 'run started before a lower retention needed an approval');
      }
    }
    const deleted = await ctx.step(
      'retention',
      () => applyRetention({ database: plan.database, keep, protect: manifest.id, ...(approved ? { only: approved } : {}) }),
      (d) => (d.length ? `deleted ${d.join(', ')}` : `nothing over ${keep}`),
    );
    const seconds = Math.max(0.001, (Date.parse(manifest.endedAt) - Date.parse(manifest.startedAt)) / 1000);
    return {
      ok: true,
      backup: { ...manifest, tocEntries: verified.tocEntries },
      verified,
      deleted,
      throughputMBps: Math.round((manifest.sizeBytes / 1024 / 1024 / seconds) * 100) / 100,
      ...(plan.objectStorage ? { upload } : {}),
      progress: ctx.progress,
    };
  });
}

/** `db-restore`: AlphaPulse 3.4 — restore a backup into a new database, or replace the database after an approval. */
async function dbRestore(rawInput?: DbRestoreInput): Promise<DbRestoreResult | DbVolumeRestoreResult> {
  const input = await RunContext.input(PROCEDURES.dbRestore, rawInput);
  if (input.tables !== undefined) return dbRestoreTables({ ...input, tables: input.tables });
  if (input.mode === 'docker-volume') return dbVolumeRestore(input);
  notWithLogical(input);
  const replace = input.replace === true;
  if (replace && input.target !== undefined) {
    throw ApplicationFailure.nonRetryable('target: not allowed with replace (the restore replaces the database itself)', ErrorTypes.InvalidInput);
  }
  const requestedBy = input.requestedBy ?? 'unknown';
  const ctx = new RunContext(PROCEDURES.dbRestore, requestedBy, [
    ['plan', 'Load configuration'],
    ['choose', 'Choose and verify the backup'],
    ['restore', 'pg_restore into a new database'],
    ['verify', 'Verify row counts'],
  ]);
  if (replace) {
    ctx.addStep('approve-replace', `Approve replacing ${input.database}`);
    ctx.addStep('swap', `Put the restored database in place of ${input.database}`);
  }
  return ctx.run(async () => {
    const started = Date.now();
    const plan = await ctx.step('plan', () => loadDatabasePlan({ database: input.database, procedure: PROCEDURES.dbRestore }));
    requireBackups(plan);
    const backup = await ctx.step(
      'choose',
      async () => {
        const b = await chooseBackup({ database: plan.database, backupId: input.backupId });
        // A corrupt file is refused before any database is created.
        await verifyBackup({ database: plan.database, id: b.id });
        return b;
      },
      (b) => `${b.id} (${mb(b.sizeBytes)}, taken ${b.startedAt}), checksum verified`,
    );
    const when = stamp();
    const target = input.target ?? (replace ? `${plan.database}__restore_${shortRun()}` : `${plan.database}_restored_${when.toLowerCase()}`);
    await ctx.step(
      'restore',
      () => restoreInto({ database: plan.database, backupId: backup.id, target, workflowId: workflowInfo().workflowId, jobs: plan.jobs }),
      (r) => `${target}${r.already ? ' (already restored by this run)' : ` in ${r.durationMs} ms`}`,
    );
    const counts = await ctx.step(
      'verify',
      async () => {
        const c = await verifyRestore({ database: plan.database, backupId: backup.id, target });
        const bad = c.filter((x) => x.actual !== x.expected);
        if (bad.length > 0) {
          throw ApplicationFailure.nonRetryable(
            `restored database ${target} does not match backup ${backup.id}: ${bad.map((b) => `${b.table} has ${b.actual} rows, expected ${b.expected}`).join('; ')}; ${replace ? `${input.database} was not replaced` : ''}`,
            'RestoreVerificationFailed',
          );
        }
        return c;
      },
      (c) => (c.length ? c.map((x) => `${x.table}: ${x.actual}`).join(', ') : 'no verifyTables configured'),
    );
    let keptAs: string | null = null;
    if (replace) {
      keptAs = await withDatabaseLock(plan, holderOf(PROCEDURES.dbRestore, requestedBy), async () => {
        const record = await ctx.requestApproval({
          step: 'approve-replace',
          summary: `Replace database ${input.database} with backup ${backup.id} (taken ${backup.startedAt}), restored and verified as ${target}. Connections to ${input.database} are terminated; the current database is ${input.dropReplaced ? 'DROPPED' : `kept as ${input.database}_replaced_${when.toLowerCase()}`}.`,
          destructive: true,
          confirmPhrase: 'REPLACE',
          policy: policyOf(plan),
          timeoutSeconds: input.approvalTimeoutSeconds ?? plan.approvalTimeoutSeconds,
        });
        RunContext.failUnlessApproved(record, `${input.database} was not replaced; the restored copy is ${target}`);
        const r = await ctx.step(
          'swap',
          () => swapDatabases({ database: plan.database, restored: target, keptAs: `${plan.database}_replaced_${when.toLowerCase()}`, drop: input.dropReplaced === true }),
          (s) => (s.keptAs ? `old database kept as ${s.keptAs}` : s.absent ? `there was no database ${input.database} to replace` : 'old database dropped'),
        );
        return r.keptAs;
      });
    }
    return {
      ok: true,
      backupId: backup.id,
      target: replace ? input.database : target,
      replaced: replace,
      keptAs,
      counts,
      durationMs: Date.now() - started,
      approvals: ctx.approvals,
      refusals: ctx.refusals,
      refusalsDropped: ctx.refusalsDropped,
      progress: ctx.progress,
    };
  });
}

/**
 * Fulcrum 8.2 step 5, "restart services with previous code version": kubernetes goes back one
 * revision (`rollout undo`, then scaled up again), compose runs the image given in
 * previousImages (pull + override file), a command driver runs its `rollback` command. Where
 * none applies the service is started as deployed, and the result says so.
 */
async function restartAppsAtPreviousVersion(
  apps: readonly PlanService[],
  plan: RunbookPlan,
  timeoutSeconds: number,
  images: Record<string, string>,
): Promise<{ started: ServiceActionResult[]; appRestarts: AppRestart[] }> {
  const started: ServiceActionResult[] = [];
  const appRestarts: AppRestart[] = [];
  for (const s of apps) {
    const t0 = Date.now();
    if (s.driver === 'kubernetes') {
      const undo = await rollbackAppRevision({ service: s.name });
      const up = await serviceAction({ service: s.name, action: 'start' });
      started.push(up);
      appRestarts.push({ service: s.name, version: 'previous', how: 'rollout-undo', commands: [...undo.commands, up.command] });
    } else if (s.driver === 'compose' && images[s.name]) {
      const r = await rollbackAppRevision({ service: s.name, image: images[s.name] });
      started.push({ service: s.name, action: 'start', command: r.commands.join(' && '), ok: true, output: r.output, durationMs: Date.now() - t0 });
      appRestarts.push({ service: s.name, version: 'previous', how: 'previous-image', commands: r.commands });
    } else if (s.driver === 'command') {
      const r = await startAtPreviousVersion({ service: s.name });
      if (r.result) started.push(r.result);
      appRestarts.push(
        r.how === 'rollback-command'
          ? { service: s.name, version: 'previous', how: 'rollback-command', commands: [r.result!.command] }
          : {
              service: s.name,
              version: 'deployed',
              how: r.result ? 'start' : 'already-running',
              commands: r.result ? [r.result.command] : [],
              note: `services.${s.name}.driver.rollback is not set: started as deployed`,
            },
      );
    } else {
      const running = (await serviceStatus({ service: s.name })).running === true;
      const up = running ? null : await serviceAction({ service: s.name, action: 'start' });
      if (up) started.push(up);
      appRestarts.push({
        service: s.name,
        version: 'deployed',
        how: up ? 'start' : 'already-running',
        commands: up ? [up.command] : [],
        note: `no previousImages.${s.name} given: started the image the compose file names`,
      });
    }
  }
  const withProbes = apps.filter((s) => s.probes.length > 0).map((s) => s.name);
  if (withProbes.length > 0) {
    await waitHealthy({ services: withProbes, timeoutSeconds, deadline: Date.now() + timeoutSeconds * 1000, pollIntervalSeconds: plan.pollIntervalSeconds });
  }
  return { started, appRestarts };
}

/** Refuses previousImages that would be ignored or would not be an image, before anything is stopped. */
function checkPreviousImages(input: DbMigrationRollbackInput, apps: readonly PlanService[]): Record<string, string> {
  const images = input.previousImages ?? {};
  const names = Object.keys(images);
  if (names.length > 0 && input.appVersion === 'current') {
    throw ApplicationFailure.nonRetryable('previousImages: not used with appVersion "current"; remove one of them', ErrorTypes.InvalidInput);
  }
  for (const name of names) {
    const svc = apps.find((s) => s.name === name);
    if (!svc) {
      throw ApplicationFailure.nonRetryable(`previousImages.${name}: not an app service this rollback restarts (${apps.map((s) => s.name).join(', ') || 'none'})`, ErrorTypes.InvalidInput);
    }
    if (svc.driver !== 'compose') {
      throw ApplicationFailure.nonRetryable(
        `previousImages.${name}: ${name} uses the ${svc.driver} driver; only compose services take an image (kubernetes goes back with kubectl rollout undo, a command driver with its driver.rollback command)`,
        ErrorTypes.InvalidInput,
      );
    }
    const image = images[name];
    if (typeof image !== 'string' || !IMAGE.test(image)) {
      throw ApplicationFailure.nonRetryable(`previousImages.${name}: expected an image reference like ghcr.io/org/${name}:1.4.2`, ErrorTypes.InvalidInput);
    }
  }
  return images;
}

/** `db-migration-rollback`: Fulcrum 8.2 — stop apps, backup, approval, down migrations, restart apps, verify. */
async function dbMigrationRollback(rawInput?: DbMigrationRollbackInput): Promise<DbMigrationRollbackResult> {
  const input = await RunContext.input(PROCEDURES.dbMigrationRollback, rawInput);
  if (input.steps !== undefined && input.to !== undefined) {
    throw ApplicationFailure.nonRetryable('give either steps or to, not both', ErrorTypes.InvalidInput);
  }
  if (input.to !== undefined && !/^\d+$/.test(input.to)) {
    throw ApplicationFailure.nonRetryable(`to: expected a migration version (digits), got "${input.to}"`, ErrorTypes.InvalidInput);
  }
  const requestedBy = input.requestedBy ?? 'unknown';
  // Stopping the apps is destructive too: the approval comes before it (runs started earlier
  // stopped them first and asked while they were down; they keep that order when replayed).
  const approveFirst = patched('migration-rollback-approve-before-stop');
  const ctx = migrationRollbackContext(input, requestedBy, approveFirst);
  return ctx.run(async () => {
    const { plan, db } = await ctx.step('plan', async () => ({
      plan: await loadPlan({ procedure: PROCEDURES.dbMigrationRollback }),
      db: await loadDatabasePlan({ database: input.database, procedure: PROCEDURES.dbMigrationRollback }),
    }));
    requireBackups(db);
    const apps = appServices(plan, input.services, db.appServices);
    const images = checkPreviousImages(input, apps);
    // Fails on a missing down file before anything is stopped.
    const rb = await ctx.step(
      'identify',
      () => planRollback({ database: db.database, steps: input.steps, to: input.to }),
      (r) => `${r.selected.map((m) => `${m.version}_${m.description}`).join(', ') || 'nothing to roll back'}; leaves ${r.to}`,
    );
    if (rb.selected.length === 0) {
      throw ApplicationFailure.nonRetryable(`database ${db.database}: no applied migration matches the rollback (applied: ${rb.applied.join(', ') || 'none'}); nothing was stopped`, ErrorTypes.InvalidInput);
    }
    const timeout = input.waitTimeoutSeconds ?? plan.groups.find((g) => g.name === 'apps')?.waitTimeoutSeconds ?? 180;
    const run: MigrationRollback = { ctx, input, plan, db, apps, images, rb, timeout, approveFirst };
    return withDatabaseLock(db, holderOf(PROCEDURES.dbMigrationRollback, requestedBy), () => rollBackUnderLock(run));
  });
}

/** The steps of a migration rollback (the approval before or after the backup, see approveFirst), and what a stop in each leaves. */
function migrationRollbackContext(input: DbMigrationRollbackInput, requestedBy: string, approveFirst: boolean): RunContext {
  const gate: Array<[string, string]> = [['approve-rollback', 'Approve the rollback']];
  const ctx = new RunContext(PROCEDURES.dbMigrationRollback, requestedBy, [
    ['plan', 'Load configuration'],
    ['identify', 'Identify migrations and their down SQL'],
    ...(approveFirst ? gate : []),
    ['stop-apps', 'Stop application services'],
    ['backup', 'Pre-rollback backup'],
    ...(approveFirst ? [] : gate),
    ['rollback', 'Apply down migrations'],
    ['start-apps', 'Restart application services'],
    ['verify', 'Verify schema_migrations and health'],
  ]);
  // The compensation in rollBackUnderLock (apps started again, non-cancellable) also runs when the run is cancelled.
  const untouched = { state: 'nothing was rolled back; the application services run (started again if this run had stopped them)', next: 'run db-migration-rollback again' };
  for (const step of ['stop-apps', 'backup', 'approve-rollback']) ctx.hint(step, untouched);
  ctx.hint('rollback', {
    state: `the down migrations were interrupted (each runs in its own transaction, so ${input.database} is at one of the versions in between); the application services were started again as deployed`,
    next: 'run db-migration-rollback again (it rolls back only what is left), or restore the pre-rollback backup with db-restore',
  });
  ctx.hint('start-apps', { state: 'the migrations are rolled back; the application services may not all be running', next: 'run stack-start to bring the apps up' });
  return ctx;
}

interface MigrationRollback {
  ctx: RunContext;
  input: DbMigrationRollbackInput;
  plan: RunbookPlan;
  db: DatabasePlan;
  apps: PlanService[];
  images: Record<string, string>;
  rb: Awaited<ReturnType<Activities['planRollback']>>;
  timeout: number;
  approveFirst: boolean;
}

function approveMigrationRollback({ ctx, input, db, apps, rb }: MigrationRollback, backupId: string | undefined) {
  return ctx.requestApproval({
    step: 'approve-rollback',
    summary: [
      `Roll back ${rb.selected.length} migration(s) of ${db.database}, leaving it at version ${rb.to}. ` +
        (backupId
          ? `Backup ${backupId} was taken.`
          : `On approval: stop ${apps.map((a) => a.name).join(', ') || 'no app services'}, take and verify a backup, then apply the down SQL below; a failed backup stops the rollback and restarts the apps.`),
      ...rb.selected.map((m) => `-- ${m.version}_${m.description}.down.sql\n${rb.downSql[m.version] ?? ''}`),
    ].join('\n'),
    destructive: true,
    confirmPhrase: 'ROLLBACK',
    policy: policyOf(db),
    timeoutSeconds: input.approvalTimeoutSeconds ?? db.approvalTimeoutSeconds,
  });
}

/** Holding the database's lock: approval, apps stopped, backup, down migrations, apps restarted, verified; the apps come back whatever fails. */
async function rollBackUnderLock(run: MigrationRollback): Promise<DbMigrationRollbackResult> {
  const { ctx, input, plan, db, apps, images, rb, timeout, approveFirst } = run;
  if (approveFirst) RunContext.failUnlessApproved(await approveMigrationRollback(run, undefined), 'nothing was stopped, backed up or rolled back');
  const stopped = await ctx.step(
    'stop-apps',
    () => stopServices(apps),
    (r) => `${r.length} stopped${apps.length ? ` (${apps.map((s) => s.name).join(', ')})` : ''}`,
  );
  let rolledBack = false;
  try {
    const backup = await ctx.step('backup', () => takeBackup(db, { format: db.format, jobs: db.jobs }), (b) => `${b.manifest.id} (${mb(b.manifest.sizeBytes)}), verified`);
    if (!approveFirst) {
      RunContext.failUnlessApproved(await approveMigrationRollback(run, backup.manifest.id), `nothing was rolled back; the application services were restarted; backup ${backup.manifest.id} was kept`);
    }
    const done = await ctx.step(
      'rollback',
      () => rollbackMigrations({ database: db.database, to: rb.to, expect: rb.selected.map((m) => m.version) }),
      (r) => `rolled back ${r.rolledBack.map((m) => m.version).join(', ') || '(already done)'}`,
    );
    rolledBack = true;
    const { started, appRestarts } = await ctx.step(
      'start-apps',
      async () =>
        input.appVersion === 'current'
          ? { started: await startServices(apps, plan, timeout), appRestarts: null }
          : restartAppsAtPreviousVersion(apps, plan, timeout, images),
      (r) =>
        r.appRestarts
          ? r.appRestarts.map((a) => `${a.service}: ${a.version === 'previous' ? `previous version (${a.how})` : `as deployed (${a.note ?? a.how})`}`).join('; ') || 'no app services'
          : `${r.started.length} started as deployed`,
    );
    const health = await ctx.step(
      'verify',
      async () => {
        const left = rb.selected.filter((m) => done.remaining.includes(m.version));
        if (left.length > 0) {
          throw ApplicationFailure.nonRetryable(`schema_migrations still lists ${left.map((m) => m.version).join(', ')}`, ErrorTypes.MigrationFailed);
        }
        return apps.length ? checkHealth(plan, apps) : null;
      },
      (h: HealthCheckResult | null) => `schema_migrations at ${done.remaining[done.remaining.length - 1] ?? '(empty)'}${h ? `; ${summarizeHealth(h)}` : ''}`,
    );
    return {
      ok: health ? health.ok : true,
      database: db.database,
      rolledBack: rb.selected,
      downSql: rb.downSql,
      backupId: backup.manifest.id,
      remaining: done.remaining,
      stopped,
      started,
      appRestarts:
        appRestarts ??
        apps.map((s) => {
          const r = started.find((x) => x.service === s.name);
          return { service: s.name, version: 'deployed' as const, how: r ? ('start' as const) : ('already-running' as const), commands: r ? [r.command] : [] };
        }),
      health,
      approvals: ctx.approvals,
      refusals: ctx.refusals,
      refusalsDropped: ctx.refusalsDropped,
      progress: ctx.progress,
    };
  } catch (err) {
    // Compensation: the apps come back whatever happened (rejection, failed backup, failed down migration).
    if (!rolledBack) {
      await CancellationScope.nonCancellable(() => startServices(apps, plan, timeout).catch(() => []));
    }
    throw err;
  }
}

/** Tables over either threshold: AlphaPulse 3.4's n_dead_tup > 1000, or a dead ratio that high. */
function overThreshold(t: { deadTuples: number; deadRatio: number }, tuples: number, ratio: number): boolean {
  return t.deadTuples > tuples || (t.deadTuples > 0 && t.deadRatio > ratio);
}

/** `db-vacuum`: Fulcrum 4 / AlphaPulse 3.4 — bloat report, VACUUM ANALYZE, optional REINDEX CONCURRENTLY, VACUUM FULL behind an approval. */
async function dbVacuum(rawInput?: DbVacuumInput): Promise<DbVacuumResult> {
  const input = await RunContext.input(PROCEDURES.dbVacuum, rawInput);
  const requestedBy = input.requestedBy ?? 'unknown';
  const ctx = new RunContext(PROCEDURES.dbVacuum, requestedBy, [
    ['plan', 'Load configuration'],
    ['report', 'Bloat report'],
    ['vacuum', 'VACUUM ANALYZE tables over the threshold'],
  ]);
  if (input.reindex) ctx.addStep('reindex', 'REINDEX TABLE CONCURRENTLY');
  if (input.full) {
    ctx.addStep('approve-full', 'Approve VACUUM FULL (exclusive lock)');
    ctx.addStep('vacuum-full', 'VACUUM FULL');
  }
  ctx.addStep('report-after', 'Bloat report after');
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadDatabasePlan({ database: input.database, procedure: PROCEDURES.dbVacuum }));
    const tuples = input.deadTuplesThreshold ?? plan.vacuum.deadTuplesThreshold;
    const ratio = input.deadRatioThreshold ?? plan.vacuum.deadRatioThreshold;
    const before = await ctx.step('report', () => bloatReport({ database: plan.database, tables: input.tables }), (r) => `${r.length} tables, ${r.filter((t) => overThreshold(t, tuples, ratio)).length} over the threshold`);
    const selected = before.filter((t) => overThreshold(t, tuples, ratio)).map((t) => t.table);
    const vacuumed = selected.length
      ? await ctx.step('vacuum', () => vacuumTables({ database: plan.database, tables: selected, mode: 'analyze' }), (v) => v.join(', '))
      : (ctx.skip('vacuum', `no table over ${tuples} dead tuples or ${ratio} dead ratio`), []);
    let reindexed: string[] = [];
    if (input.reindex) {
      reindexed = vacuumed.length
        ? await ctx.step('reindex', () => vacuumTables({ database: plan.database, tables: vacuumed, mode: 'reindex' }), (v) => v.join(', '))
        : (ctx.skip('reindex', 'nothing was vacuumed'), []);
    }
    let vacuumedFull: string[] = [];
    if (input.full) {
      const targets = input.tables ?? selected;
      if (targets.length === 0) {
        ctx.skip('approve-full', 'no table to VACUUM FULL');
        ctx.skip('vacuum-full', 'no table to VACUUM FULL');
      } else {
        vacuumedFull = await withDatabaseLock(plan, holderOf(PROCEDURES.dbVacuum, requestedBy), async () => {
          const record = await ctx.requestApproval({
            step: 'approve-full',
            summary: `VACUUM FULL ${targets.join(', ')} in ${plan.database}: rewrites each table under an ACCESS EXCLUSIVE lock, blocking reads and writes until it finishes (${mb(before.filter((t) => targets.includes(t.table)).reduce((a, t) => a + t.sizeBytes, 0))} to rewrite).`,
            destructive: true,
            confirmPhrase: 'VACUUM FULL',
            policy: policyOf(plan),
            timeoutSeconds: input.approvalTimeoutSeconds ?? plan.approvalTimeoutSeconds,
          });
          RunContext.failUnlessApproved(record, 'no VACUUM FULL was run');
          return ctx.step('vacuum-full', () => vacuumTables({ database: plan.database, tables: targets, mode: 'full' }), (v) => v.join(', '));
        });
      }
    }
    const after = await ctx.step('report-after', () => bloatReport({ database: plan.database, tables: input.tables }), (r) => `${r.reduce((a, t) => a + t.deadTuples, 0)} dead tuples left`);
    return { ok: true, before, vacuumed, reindexed, vacuumedFull, after, approvals: ctx.approvals, refusals: ctx.refusals, refusalsDropped: ctx.refusalsDropped, progress: ctx.progress };
  });
}

/** `db-triage`: Fulcrum 3.2 / AlphaPulse 2.1 — connection and query diagnostics; remediations behind approvals. */
async function dbTriage(rawInput?: DbTriageInput): Promise<DbTriageResult> {
  const input = await RunContext.input(PROCEDURES.dbTriage, rawInput);
  const requestedBy = input.requestedBy ?? 'unknown';
  const ctx = new RunContext(PROCEDURES.dbTriage, requestedBy, [
    ['plan', 'Load configuration'],
    ['report', 'Diagnostics'],
  ]);
  const idle = input.terminateIdleOlderThanMinutes;
  const pids = { cancel: input.cancelPids ?? [], terminate: input.terminatePids ?? [] };
  if (idle !== undefined) {
    ctx.addStep('approve-idle', `Approve terminating connections idle over ${idle} min`);
    ctx.addStep('terminate-idle', 'Terminate idle connections');
  }
  if (pids.cancel.length + pids.terminate.length > 0) {
    ctx.addStep('approve-pids', 'Approve cancelling/terminating the given PIDs');
    ctx.addStep('signal-pids', 'Cancel/terminate the given PIDs');
  }
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadDatabasePlan({ database: input.database, procedure: PROCEDURES.dbTriage }));
    const report = await ctx.step(
      'report',
      () =>
        triageReport({
          database: plan.database,
          ...plan.triage,
          longQuerySeconds: input.longQuerySeconds ?? plan.triage.longQuerySeconds,
          idleMinutes: idle ?? plan.triage.idleMinutes,
        }),
      (r) => r.findings.map((f) => `${f.severity} ${f.check}: ${f.detail}`).join('; '),
    );
    const timeoutSeconds = input.approvalTimeoutSeconds ?? plan.approvalTimeoutSeconds;
    const actions: PidAction[] = [];
    if (idle !== undefined) {
      const idlePids = report.idleOlderThan.map((c) => c.pid);
      if (idlePids.length === 0) {
        ctx.skip('approve-idle', `no connection idle over ${idle} min`);
        ctx.skip('terminate-idle', `no connection idle over ${idle} min`);
      } else {
        const record = await ctx.requestApproval({
          step: 'approve-idle',
          summary: `Terminate ${idlePids.length} connection(s) to ${plan.database} idle over ${idle} min: ${report.idleOlderThan.map((c) => `${c.pid} (${c.user}, ${c.idleSeconds}s)`).join(', ')}. A connection that became active since is spared.`,
          destructive: true,
          policy: policyOf(plan),
          timeoutSeconds,
        });
        RunContext.failUnlessApproved(record, 'no connection was terminated');
        actions.push(
          ...(await ctx.step('terminate-idle', () => signalBackends({ database: plan.database, pids: idlePids, action: 'terminate', idleSinceMinutes: idle }), (a) => `${a.filter((x) => x.done).length} terminated`)),
        );
      }
    }
    if (pids.cancel.length + pids.terminate.length > 0) {
      const record = await ctx.requestApproval({
        step: 'approve-pids',
        summary: [
          pids.cancel.length ? `Cancel the running query of PID ${pids.cancel.join(', ')}` : '',
          pids.terminate.length ? `Terminate PID ${pids.terminate.join(', ')} (their transactions roll back)` : '',
        ]
          .filter(Boolean)
          .join('; '),
        destructive: true,
        policy: policyOf(plan),
        timeoutSeconds,
      });
      RunContext.failUnlessApproved(record, 'no backend was signalled');
      const done = await ctx.step(
        'signal-pids',
        async () => [
          ...(pids.cancel.length ? await signalBackends({ database: plan.database, pids: pids.cancel, action: 'cancel' }) : []),
          ...(pids.terminate.length ? await signalBackends({ database: plan.database, pids: pids.terminate, action: 'terminate' }) : []),
        ],
        (a) => a.map((x) => `${x.pid} ${x.done ? (x.action === 'cancel' ? 'cancelled' : 'terminated') : 'not found'}`).join(', '),
      );
      actions.push(...done);
    }
    return { ok: !report.findings.some((f) => f.severity === 'P1'), report, actions, approvals: ctx.approvals, refusals: ctx.refusals, refusalsDropped: ctx.refusalsDropped, progress: ctx.progress };
  });
}
