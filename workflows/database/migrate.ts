import { ApplicationFailure, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { policyOf } from '../../common/approvals.js';
import type { DatabasePlan, DbMigrateInput, DbMigrateResult, MigrationPlan } from '../../common/database/types.js';
import { ErrorTypes } from '../../common/errors.js';
import { PROCEDURES } from '../../common/procedures.js';
import type { MigrationInfo } from '../../common/types.js';
import { longRunning, quick } from '../shared/profiles.js';
import { RunContext } from '../shared/run-context.js';
import { withDatabaseLock } from './lock.js';
import { mb, shortRun, stamp } from './services.js';

const { loadDatabasePlan, planMigrations, schemaObjects } = proxyActivities<Activities>(quick);
const { dumpDatabase, verifyBackup, applyMigrations } = proxyActivities<Activities>(longRunning);

/** The approval shows each migration's SQL up to this many characters (the whole SQL is in the plan step's result). */
const SQL_SHOWN = 2000;
const SUMMARY_SQL_TOTAL = 12_000;

const named = (m: MigrationInfo) => `${m.version}_${m.description}`;

function sqlText(selected: MigrationInfo[], upSql: Record<string, string>): string {
  let left = SUMMARY_SQL_TOTAL;
  const parts: string[] = [];
  for (const m of selected) {
    const sql = (upSql[m.version] ?? '').trim();
    const shown = sql.length > Math.min(SQL_SHOWN, left) ? `${sql.slice(0, Math.max(0, Math.min(SQL_SHOWN, left)))}\n-- … (${sql.length} characters; the whole file is in the plan step's result)` : sql;
    left -= Math.min(sql.length, SQL_SHOWN);
    parts.push(`-- ${named(m)}.up.sql\n${shown}`);
  }
  return parts.join('\n');
}

function fail(message: string, type: string = ErrorTypes.InvalidInput): never {
  throw ApplicationFailure.nonRetryable(message, type);
}

/**
 * `db-migrate`: Fulcrum 4.1 — migrations as a procedure of their own. `plan` (default) is the
 * runbook's `--dry-run`: the pending migrations and the SQL each would run, nothing changed.
 * `status` is its "view applied migrations". `apply`: an approval showing the SQL, a verified
 * pre-migration backup, the migrations (up to `to`), then schema_migrations and the schema checked.
 */
export async function dbMigrate(rawInput?: DbMigrateInput): Promise<DbMigrateResult> {
  const input = await RunContext.input(PROCEDURES.dbMigrate, rawInput);
  const mode = input.mode ?? 'plan';
  if (mode !== 'apply' && input.backup !== undefined) fail(`backup: only used with mode apply (this run is mode ${mode} and changes nothing)`);
  if (mode === 'status' && input.to !== undefined) fail('to: not used with mode status (it lists every migration); use mode plan to see what applying up to a migration would run');
  const requestedBy = input.requestedBy ?? 'unknown';
  const ctx = new RunContext(PROCEDURES.dbMigrate, requestedBy, [
    ['plan', 'Load configuration'],
    ['pending', mode === 'status' ? 'List applied and pending migrations' : 'List pending migrations and their SQL'],
  ]);
  if (mode === 'apply') {
    ctx.addStep('approve-migrate', `Approve applying migrations to ${input.database}`);
    ctx.addStep('backup', 'Pre-migration backup');
    ctx.addStep('apply', 'Apply migrations');
    ctx.addStep('verify', 'Verify schema_migrations and the schema');
    const untouched = { state: 'no migration was applied', next: 'run db-migrate again' };
    ctx.hint('approve-migrate', untouched);
    ctx.hint('backup', { state: 'no migration was applied (a backup may have been written)', next: 'run db-migrate again' });
    ctx.hint('apply', {
      state: `migrations were interrupted: each runs in its own transaction with its schema_migrations row, so ${input.database} is at one of the versions in between`,
      next: 'run db-migrate with mode status to see where it stands, then apply again (applied ones are skipped), or db-migration-rollback',
    });
  }
  return ctx.run(async () => {
    const db = await ctx.step('plan', () => loadDatabasePlan({ database: input.database, procedure: PROCEDURES.dbMigrate }));
    if (!db.hasMigrations) {
      fail(`databases.${db.database}.migrationsDir is not set: db-migrate needs the directory of its <version>_<description>.up.sql files`, ErrorTypes.InvalidConfig);
    }
    const plan = await ctx.step(
      'pending',
      () => planMigrations({ database: db.database, to: input.to }),
      (p) =>
        mode === 'status'
          ? `${p.applied.length} applied (newest ${p.applied.at(-1) ? `${named(p.applied.at(-1)!)} at ${p.applied.at(-1)!.appliedAt}` : 'none'}), ${p.pending.length} pending${p.pending.length ? `: ${p.pending.map(named).join(', ')}` : ''}`
          : p.selected.length
            ? `${p.selected.length} to apply: ${p.selected.map(named).join(', ')}`
            : `nothing to apply${p.to ? ` up to ${p.to}` : ''} (${p.applied.length} applied)`,
    );
    const base: DbMigrateResult = {
      ok: true,
      mode,
      database: db.database,
      applied: plan.applied,
      pending: plan.pending,
      selected: mode === 'status' ? [] : plan.selected,
      upSql: mode === 'status' ? {} : plan.upSql,
      appliedNow: [],
      after: null,
      backupId: null,
      schemaChanges: null,
      approvals: [],
      refusals: [],
      progress: ctx.progress,
    };
    if (mode !== 'apply') return base;
    if (plan.selected.length === 0) {
      for (const s of ['approve-migrate', 'backup', 'apply', 'verify']) ctx.skip(s, 'nothing to apply');
      return base;
    }
    if (input.backup === true && !db.backupsConfigured) {
      fail('backup: databaseOps.backups is not configured: add databaseOps.backups.repository to the config, or leave backup out', ErrorTypes.InvalidConfig);
    }
    return withDatabaseLock(db, { workflowId: workflowInfo().workflowId, procedure: PROCEDURES.dbMigrate, requestedBy }, () => applyUnderLock(ctx, input, db, plan, base));
  });
}

async function applyUnderLock(ctx: RunContext, input: DbMigrateInput, db: DatabasePlan, plan: MigrationPlan, base: DbMigrateResult): Promise<DbMigrateResult> {
  const backup = input.backup ?? db.backupsConfigured;
  const last = plan.selected[plan.selected.length - 1]!;
  const record = await ctx.requestApproval({
    step: 'approve-migrate',
    summary: [
      `Apply ${plan.selected.length} migration(s) to ${db.database} (${plan.applied.length} applied, newest ${plan.applied.at(-1) ? named(plan.applied.at(-1)!) : 'none'}), up to ${named(last)}. ` +
        (backup ? 'On approval: take and verify a pg_dump backup, then run the SQL below, each file in its own transaction.' : 'No backup is taken (backup: false or databaseOps.backups not configured); the applied set before is recorded in the result.'),
      sqlText(plan.selected, plan.upSql),
    ].join('\n'),
    destructive: true,
    confirmPhrase: 'MIGRATE',
    policy: policyOf(db),
    timeoutSeconds: input.approvalTimeoutSeconds ?? db.approvalTimeoutSeconds,
  });
  RunContext.failUnlessApproved(record, 'no migration was applied and no backup taken');
  let backupId: string | null = null;
  if (backup) {
    const taken = await ctx.step(
      'backup',
      async () => {
        const manifest = await dumpDatabase({ database: db.database, id: `${stamp()}-${shortRun()}`, format: db.format, jobs: db.jobs, workflowId: workflowInfo().workflowId });
        await verifyBackup({ database: db.database, id: manifest.id, justWritten: true });
        return manifest;
      },
      (m) => `${m.id} (${mb(m.sizeBytes)}), verified`,
    );
    backupId = taken.id;
  } else {
    ctx.skip('backup', `no backup (${input.backup === false ? 'backup: false' : 'databaseOps.backups is not configured'}); applied before: ${plan.applied.map((a) => a.version).join(', ') || 'none'}`);
  }
  const schemaBefore = await schemaObjects({ database: db.database });
  const done = await ctx.step(
    'apply',
    () => applyMigrations({ database: db.database, to: last.version, expect: plan.selected.map((m) => m.version) }),
    (r) => `applied ${r.applied.map(named).join(', ') || '(already applied by an earlier attempt)'}`,
  );
  const schemaChanges = await ctx.step(
    'verify',
    async () => {
      const appliedNow = new Set(done.after.map((a) => a.version));
      const missing = plan.selected.filter((m) => !appliedNow.has(m.version));
      if (missing.length > 0) fail(`schema_migrations does not list ${missing.map(named).join(', ')} after applying`, ErrorTypes.MigrationFailed);
      const after = await schemaObjects({ database: db.database });
      const was = new Set(schemaBefore);
      const now = new Set(after);
      return { added: after.filter((o) => !was.has(o)), removed: schemaBefore.filter((o) => !now.has(o)) };
    },
    (c) =>
      `schema_migrations at ${done.after.at(-1)?.version ?? '(empty)'}; ${c.added.length} table/column(s) added, ${c.removed.length} removed` +
      (c.added.length ? ` (+${c.added.slice(0, 5).join(', +')}${c.added.length > 5 ? ', …' : ''})` : ''),
  );
  return {
    ...base,
    appliedNow: done.applied,
    after: done.after,
    backupId,
    schemaChanges,
    approvals: ctx.approvals,
    refusals: ctx.refusals,
    refusalsDropped: ctx.refusalsDropped,
    progress: ctx.progress,
  };
}
