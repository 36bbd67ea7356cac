import { policyOf } from '../../common/approvals.js';
import { ApplicationFailure, CancellationScope, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { ErrorTypes } from '../../common/errors.js';
import type { DbBackupInput, DbRestoreInput, DbVolumeBackupResult, DbVolumeRestoreResult } from '../../common/database/types.js';
import { PROCEDURES } from '../../common/procedures.js';
import { withDatabaseLock } from './lock.js';
import { appServices, mb, shortRun, stamp, startServices, stopServices } from './services.js';
import { selectServices } from '../shared/health.js';
import { longRunning, quick } from '../shared/profiles.js';
import { RunContext } from '../shared/run-context.js';

/**
 * The Fulcrum runbook's Docker-volume variant of db-backup and db-restore (`mode:
 * "docker-volume"`): the database's compose service is stopped, its volume is tarred or
 * restored by a throwaway container, and it is started again. Both hold the database's lock.
 */

const { loadDatabasePlan, loadPlan, volumePlan, countDatabaseTables, volumeRetention, verifyVolumeRestore } = proxyActivities<Activities>(quick);
const { checkVolumeTarball, tarVolume, untarVolume, serviceAction } = proxyActivities<Activities>(longRunning);

const DEFAULT_WAIT_SECONDS = 180;

function notWithVolume(input: object, fields: string[]): void {
  const given = fields.filter((f) => (input as Record<string, unknown>)[f] !== undefined);
  if (given.length > 0) {
    throw ApplicationFailure.nonRetryable(`${given.join(', ')}: not used with mode docker-volume (the whole volume is copied); remove ${given.length > 1 ? 'them' : 'it'}`, ErrorTypes.InvalidInput);
  }
}

/** `db-backup` with `mode: "docker-volume"`: a cold tarball of the volume (a file copy of a running PostgreSQL is not consistent). */
export async function dbVolumeBackup(input: DbBackupInput & { services?: string[]; waitTimeoutSeconds?: number }): Promise<DbVolumeBackupResult> {
  notWithVolume(input, ['format', 'jobs']);
  const requestedBy = input.requestedBy ?? 'unknown';
  const ctx = new RunContext(PROCEDURES.dbBackup, requestedBy, [
    ['plan', 'Load configuration'],
    ['stop-apps', 'Stop application services'],
    ['count', 'Count rows of the verified tables'],
    ['stop-db', 'Stop the database service'],
    ['tar', 'Tar the volume (throwaway container)'],
    ['start', 'Start the database and application services'],
    ['retention', 'Apply retention'],
  ]);
  return ctx.run(async () => {
    const { plan, db, vol } = await ctx.step(
      'plan',
      async () => ({
        plan: await loadPlan({ procedure: PROCEDURES.dbBackup }),
        db: await loadDatabasePlan({ database: input.database, procedure: PROCEDURES.dbBackup }),
        vol: await volumePlan({ database: input.database }),
      }),
      (r) => `volume ${r.vol.volume} of service ${r.vol.service}, into ${r.vol.dir}`,
    );
    const [dbService] = selectServices(plan, [vol.service], 'databases.service');
    const apps = appServices(plan, input.services, db.appServices, vol.service);
    const timeout = input.waitTimeoutSeconds ?? DEFAULT_WAIT_SECONDS;
    const id = `${stamp()}-${shortRun()}`;
    const commands: string[] = [];

    return withDatabaseLock(db, { workflowId: workflowInfo().workflowId, procedure: PROCEDURES.dbBackup, requestedBy }, async () => {
      const stopped = await ctx.step('stop-apps', () => stopServices(apps), (r) => `${r.length} stopped`);
      commands.push(...stopped.map((r) => r.command));
      let tarred = false;
      try {
        const startedAt = new Date().toISOString();
        const rowCounts = await ctx.step(
          'count',
          () => countDatabaseTables({ database: db.database, tables: db.verifyTables }),
          (c) => Object.entries(c).map(([t, n]) => `${t}: ${n}`).join(', ') || 'no verifyTables configured',
        );
        const stop = await ctx.step('stop-db', () => serviceAction({ service: vol.service, action: 'stop' }), (r) => r.command);
        commands.push(stop.command);
        const tar = await ctx.step('tar', () => tarVolume({ database: db.database, id, workflowId: workflowInfo().workflowId, rowCounts, startedAt }), (t) => `${t.manifest.file}: ${mb(t.manifest.sizeBytes)}, sha256 ${t.manifest.sha256.slice(0, 12)}…`);
        tarred = true;
        commands.push(...tar.commands);
        const started = await ctx.step(
          'start',
          async () => [...(await startServices([dbService!], plan, timeout, { always: true })), ...(await startServices(apps, plan, timeout, { always: false }))],
          (r) => `${r.length} started`,
        );
        commands.push(...started.map((r) => r.command));
        const deleted = await ctx.step('retention', () => volumeRetention({ database: db.database, keep: vol.retention, protect: id }), (d) => (d.length ? `deleted ${d.join(', ')}` : `nothing over ${vol.retention}`));
        return { ok: true, mode: 'docker-volume' as const, backup: tar.manifest, commands, deleted, progress: ctx.progress };
      } catch (err) {
        // The database and the apps come back whatever failed; the volume was only read.
        if (!tarred) {
          await CancellationScope.nonCancellable(async () => {
            await startServices([dbService!], plan, timeout, { always: true }).catch(() => []);
            await startServices(apps, plan, timeout, { always: false }).catch(() => []);
          });
        }
        throw err;
      }
    });
  });
}

/**
 * `db-restore` with `mode: "docker-volume"`: Fulcrum's "stop, restore the volume from a
 * tarball, start". The tarball and its checksum are checked before anything stops; the
 * current contents are kept as a pre-restore tarball (keepCurrent) before they are replaced.
 */
export async function dbVolumeRestore(input: DbRestoreInput & { services?: string[]; waitTimeoutSeconds?: number }): Promise<DbVolumeRestoreResult> {
  notWithVolume(input, ['target', 'replace', 'dropReplaced']);
  const requestedBy = input.requestedBy ?? 'unknown';
  const ctx = new RunContext(PROCEDURES.dbRestore, requestedBy, [
    ['plan', 'Load configuration'],
    ['choose', 'Choose the tarball and check its sha256'],
    ['approve-replace', `Approve replacing the volume of ${input.database}`],
    ['stop-apps', 'Stop application services'],
    ['stop-db', 'Stop the database service'],
    ['keep-current', 'Keep the current volume as a tarball'],
    ['restore-volume', 'Empty the volume and unpack the tarball (throwaway containers)'],
    ['start-db', 'Start the database service and wait until healthy'],
    ['verify', 'Verify tables'],
    ['start-apps', 'Restart application services'],
  ]);
  return ctx.run(async () => {
    const started = Date.now();
    const { plan, db, vol } = await ctx.step(
      'plan',
      async () => ({
        plan: await loadPlan({ procedure: PROCEDURES.dbRestore }),
        db: await loadDatabasePlan({ database: input.database, procedure: PROCEDURES.dbRestore }),
        vol: await volumePlan({ database: input.database }),
      }),
      (r) => `volume ${r.vol.volume} of service ${r.vol.service}, tarballs in ${r.vol.dir}`,
    );
    const [dbService] = selectServices(plan, [vol.service], 'databases.service');
    const apps = appServices(plan, input.services, db.appServices, vol.service);
    const timeout = input.waitTimeoutSeconds ?? DEFAULT_WAIT_SECONDS;
    // Fails on a missing tarball, a missing or wrong checksum, an archive that does not read to its
    // end or holds no PostgreSQL data directory, before anything is stopped.
    const tarball = await ctx.step(
      'choose',
      () => checkVolumeTarball({ database: db.database, backupId: input.backupId }),
      (t) => `${t.file} (${mb(t.sizeBytes)}), sha256 ${t.sha256.slice(0, 12)}… verified${t.pgVersion ? `, PostgreSQL ${t.pgVersion} data directory, ${t.entries} entries` : ''}`,
    );
    const keepId = vol.keepCurrent ? `pre-restore-${stamp()}-${shortRun()}` : null;
    const commands: string[] = [];

    return withDatabaseLock(db, { workflowId: workflowInfo().workflowId, procedure: PROCEDURES.dbRestore, requestedBy }, async () => {
      const record = await ctx.requestApproval({
        step: 'approve-replace',
        summary: [
          `Replace the contents of Docker volume ${vol.volume} (database ${db.database}) with ${tarball.file} (${mb(tarball.sizeBytes)}, sha256 ${tarball.sha256.slice(0, 12)}…, verified).`,
          `Stops ${[...apps.map((s) => s.name), vol.service].join(', ')}; ${keepId ? `the current contents are first saved as ${keepId}.tar.gz in ${vol.dir}` : 'the current contents are LOST (keepCurrent is off)'}.`,
        ].join(' '),
        destructive: true,
        confirmPhrase: 'REPLACE',
        policy: policyOf(db),
        timeoutSeconds: input.approvalTimeoutSeconds ?? db.approvalTimeoutSeconds,
      });
      RunContext.failUnlessApproved(record, 'nothing was stopped or restored');
      const stopped = await ctx.step('stop-apps', () => stopServices(apps), (r) => `${r.length} stopped`);
      commands.push(...stopped.map((r) => r.command));
      let touched = false;
      try {
        const stop = await ctx.step('stop-db', () => serviceAction({ service: vol.service, action: 'stop' }), (r) => r.command);
        commands.push(stop.command);
        if (keepId) {
          const kept = await ctx.step('keep-current', () => tarVolume({ database: db.database, id: keepId, workflowId: workflowInfo().workflowId, rowCounts: {}, startedAt: new Date().toISOString() }), (k) => `${k.manifest.file} (${mb(k.manifest.sizeBytes)})`);
          commands.push(...kept.commands);
        } else {
          ctx.skip('keep-current', 'databaseOps.volumes keepCurrent is off');
        }
        touched = true;
        const restored = await ctx.step('restore-volume', () => untarVolume({ database: db.database, backupId: tarball.id }), () => `${vol.volume} now holds ${tarball.file}`);
        commands.push(...restored.commands);
        const dbStart = await ctx.step('start-db', () => startServices([dbService!], plan, timeout, { always: true }), (r) => r.map((x) => x.command).join('; '));
        commands.push(...dbStart.map((r) => r.command));
        const counts = await ctx.step(
          'verify',
          async () => {
            const c = await verifyVolumeRestore({ database: db.database, tables: db.verifyTables, expected: tarball.rowCounts });
            const bad = c.filter((x) => x.actual !== x.expected);
            if (bad.length > 0) {
              throw ApplicationFailure.nonRetryable(
                `restored volume of ${db.database} does not match ${tarball.file}: ${bad.map((b) => (b.actual < 0 ? `${b.table} is missing` : `${b.table} has ${b.actual} rows, expected ${b.expected}`)).join('; ')}; the application services were left stopped${keepId ? `; the previous contents are in ${keepId}.tar.gz` : ''}`,
                'RestoreVerificationFailed',
              );
            }
            return c;
          },
          (c) => c.map((x) => `${x.table}: ${x.actual}`).join(', ') || 'no verifyTables configured',
        );
        const appStart = await ctx.step('start-apps', () => startServices(apps, plan, timeout, { always: false }), (r) => `${r.length} started`);
        commands.push(...appStart.map((r) => r.command));
        return {
          ok: true,
          mode: 'docker-volume' as const,
          backupId: tarball.id,
          volume: vol.volume,
          keptAs: keepId,
          commands,
          counts,
          durationMs: Date.now() - started,
          approvals: ctx.approvals,
          refusals: ctx.refusals,
          refusalsDropped: ctx.refusalsDropped,
          progress: ctx.progress,
        };
      } catch (err) {
        // Before the volume is touched everything comes back as it was; after, a half-restored
        // data directory must not be started: a human decides, with the pre-restore tarball at hand.
        if (!touched) {
          await CancellationScope.nonCancellable(async () => {
            await startServices([dbService!], plan, timeout, { always: true }).catch(() => []);
            await startServices(apps, plan, timeout, { always: false }).catch(() => []);
          });
        }
        throw err;
      }
    });
  });
}
