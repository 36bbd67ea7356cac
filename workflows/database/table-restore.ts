import { ApplicationFailure, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { policyOf } from '../../common/approvals.js';
import type { DbRestoreInput, DbRestoreResult } from '../../common/database/types.js';
import { ErrorTypes } from '../../common/errors.js';
import { PROCEDURES } from '../../common/procedures.js';
import { longRunning, quick } from '../shared/profiles.js';
import { RunContext } from '../shared/run-context.js';
import { withDatabaseLock } from './lock.js';
import { mb, requireBackups } from './services.js';

const { loadDatabasePlan, chooseBackup } = proxyActivities<Activities>(quick);
const { verifyBackup, checkTableRestore, restoreTables } = proxyActivities<Activities>(longRunning);

/** Fields of a whole-database restore that a single-table restore would otherwise ignore. */
const NOT_WITH_TABLES = ['replace', 'target', 'dropReplaced', 'services', 'waitTimeoutSeconds'] as const;

/**
 * `db-restore` with `tables`: AlphaPulse 3.4's selective restore (`pg_restore -t trades`).
 * The backup and the tables are checked first (every table in the dump, existing live, no
 * foreign key into it from a table left out); after an approval confirmed with RESTORE
 * TABLES, the tables' rows are replaced by the backup's in one transaction. Other tables are
 * untouched, and the apps keep running (see docs/runbooks/database.md).
 */
export async function dbRestoreTables(input: DbRestoreInput & { tables: string[] }): Promise<DbRestoreResult> {
  if (input.mode === 'docker-volume') {
    throw ApplicationFailure.nonRetryable('tables: not with mode docker-volume (a volume is restored whole); use a logical backup', ErrorTypes.InvalidInput);
  }
  const given = NOT_WITH_TABLES.filter((f) => input[f] !== undefined);
  if (given.length > 0) {
    throw ApplicationFailure.nonRetryable(
      `${given.join(', ')}: not used with tables (a single-table restore loads rows into the live database, stops no service); remove ${given.length === 1 ? 'it' : 'them'} or tables`,
      ErrorTypes.InvalidInput,
    );
  }
  if (input.tables.length === 0) {
    throw ApplicationFailure.nonRetryable('tables: give at least one table, e.g. ["trades"] (or leave the field out to restore the whole backup)', ErrorTypes.InvalidInput);
  }
  const requestedBy = input.requestedBy ?? 'unknown';
  const ctx = new RunContext(PROCEDURES.dbRestore, requestedBy, [
    ['plan', 'Load configuration'],
    ['choose', 'Choose and verify the backup'],
    ['check', 'Check the tables in the backup and the database'],
    ['approve-tables', `Approve restoring ${input.tables.join(', ')}`],
    ['restore-tables', "Replace the tables' rows with the backup's"],
    ['verify', 'Verify row counts'],
  ]);
  ctx.hint('approve-tables', { state: 'no table was changed', next: 'run db-restore again' });
  ctx.hint('restore-tables', { state: 'the tables are as before or fully restored (one transaction)', next: 'check the tables, or run db-restore again' });
  return ctx.run(async () => {
    const started = Date.now();
    const plan = await ctx.step('plan', () => loadDatabasePlan({ database: input.database, procedure: PROCEDURES.dbRestore }));
    requireBackups(plan);
    const backup = await ctx.step(
      'choose',
      async () => {
        const b = await chooseBackup({ database: plan.database, backupId: input.backupId });
        await verifyBackup({ database: plan.database, id: b.id });
        return b;
      },
      (b) => `${b.id} (${mb(b.sizeBytes)}, taken ${b.startedAt}), checksum verified`,
    );
    const checked = await ctx.step(
      'check',
      () => checkTableRestore({ database: plan.database, backupId: backup.id, tables: input.tables }),
      (c) => c.map((t) => `${t.table}: ${t.rowsInBackup} rows in the backup, ${t.rowsLive} live`).join('; '),
    );
    const tables = checked.map((t) => t.table);
    const counts = await withDatabaseLock(plan, { workflowId: workflowInfo().workflowId, procedure: PROCEDURES.dbRestore, requestedBy }, async () => {
      const record = await ctx.requestApproval({
        step: 'approve-tables',
        summary:
          `Restore the rows of ${tables.join(', ')} in database ${plan.database} from backup ${backup.id} (taken ${backup.startedAt}): ` +
          `${checked.map((t) => `${t.table} now has ${t.rowsLive} rows, the backup ${t.rowsInBackup}`).join('; ')}. ` +
          'In one transaction the tables are truncated and reloaded (their current rows are not kept: run db-backup first to keep them); ' +
          'other tables are untouched; the apps keep running and wait on the tables\' lock while it loads.',
        destructive: true,
        confirmPhrase: 'RESTORE TABLES',
        policy: policyOf(plan),
        timeoutSeconds: input.approvalTimeoutSeconds ?? plan.approvalTimeoutSeconds,
      });
      RunContext.failUnlessApproved(record, 'no table was changed');
      return ctx.step(
        'restore-tables',
        () => restoreTables({ database: plan.database, backupId: backup.id, tables }),
        (c) => c.map((x) => `${x.table}: ${x.actual} rows`).join(', '),
      );
    });
    await ctx.step(
      'verify',
      async () => {
        const bad = counts.filter((c) => c.actual !== c.expected);
        if (bad.length > 0) {
          throw ApplicationFailure.nonRetryable(
            `after the restore from backup ${backup.id}: ${bad.map((b) => `${b.table} has ${b.actual} rows, the backup ${b.expected}`).join('; ')} (written to since?)`,
            'RestoreVerificationFailed',
          );
        }
        return counts;
      },
      (c) => c.map((x) => `${x.table}: ${x.actual} = backup`).join(', '),
    );
    return {
      ok: true,
      backupId: backup.id,
      target: plan.database,
      replaced: false,
      keptAs: null,
      tables,
      counts,
      durationMs: Date.now() - started,
      approvals: ctx.approvals,
      refusals: ctx.refusals,
      refusalsDropped: ctx.refusalsDropped,
      progress: ctx.progress,
    };
  });
}
