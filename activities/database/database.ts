import { approvalPolicyFor } from '../../common/approvals.js';
import { threshold } from '../../common/thresholds.js';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../common/errors.js';
import type { DatabasePlan } from '../../common/database/types.js';
import type { MigrationInfo } from '../../common/types.js';
import type { ActivityDeps } from '../deps.js';
import { createMigrateActivities, migratorFor } from './migrate.js';
import { createAppVersionActivities } from './apps.js';
import { createBackupActivities } from './backup.js';
import { createMaintenanceActivities } from './maintenance.js';
import { createPitrActivities } from './pitr.js';
import { createRedisOpsActivities } from './redis.js';
import { createVolumeActivities } from './volume.js';
import { createTableRestoreActivities } from './table-restore.js';
import { databaseNamed } from './pg.js';

/** Activities of the database runbook family; spread into the worker's activities by activities/index.ts. */
export function createDatabaseActivities(deps: ActivityDeps) {
  return {
    ...createAppVersionActivities(deps),
    ...createBackupActivities(deps),
    ...createMaintenanceActivities(deps),
    ...createPitrActivities(deps),
    ...createRedisOpsActivities(deps),
    ...createVolumeActivities(deps),
    ...createMigrateActivities(deps),
    ...createTableRestoreActivities(deps),
    loadDatabasePlan: (req: { database: string; procedure: string }) => loadDatabasePlan(deps, req),
    planRollback: (req: { database: string; steps?: number; to?: string }) => planRollback(deps, req),
    rollbackMigrations: (req: { database: string; to: string; expect: string[] }) => rollbackMigrations(deps, req),
  };
}

/** What a database runbook needs from the config, captured once per run. */
export async function loadDatabasePlan(deps: ActivityDeps, req: { database: string; procedure: string }): Promise<DatabasePlan> {
  const { config } = deps;
  const db = databaseNamed(deps, req.database);
  const ops = config.databaseOps;
  const b = ops?.backups;
  return {
    environment: config.environment,
    database: db.name,
    service: db.service,
    hasMigrations: Boolean(db.migrationsDir),
    backupsConfigured: Boolean(b),
    pitrObjectStorage: Boolean(ops?.objectStorage && ops.pitr.find((p) => p.database === db.name)?.objectStorage),
    objectStorage: ops?.objectStorage ? `s3://${ops.objectStorage.bucket}/${ops.objectStorage.prefix.replace(/\/+$/, '')}${ops.objectStorage.prefix ? '/' : ''}` : null,
    format: b?.format ?? 'custom',
    jobs: b?.jobs ?? 1,
    retention: b?.retention ?? 7,
    verifyTables: ops?.pitr.find((p) => p.database === db.name)?.verifyTables ?? b?.verifyTables[db.name] ?? [],
    dr: { rtoSeconds: ops?.disasterRecovery.rtoSeconds ?? 3600, rpoSeconds: ops?.disasterRecovery.rpoSeconds ?? 900 },
    appServices: config.services.filter((s) => s.group === 'apps').map((s) => s.name),
    approvalPolicy: approvalPolicyFor(config.approvals, req.procedure),
    approvalTimeoutSeconds: config.approvals.timeoutSeconds,
    lock: ops?.lock ?? { mode: 'fail', waitTimeoutSeconds: 3600, pollSeconds: 5 },
    vacuum: ops?.vacuum ?? { deadTuplesThreshold: 1000, deadRatioThreshold: 0.1 },
    triage: ops?.triage ?? { connectionsAlertPercent: threshold('db-connection-pool').value, longQuerySeconds: threshold('slow-query').value / 1000, idleMinutes: 10, seqScanMinRows: 10000, cacheHitWarnRatio: 0.99 },
  };
}

/**
 * What a rollback would do, changing nothing: the selected migrations (newest first) with
 * their down SQL, and the version the database is left at. Fails when a down file is missing.
 */
export async function planRollback(
  deps: ActivityDeps,
  req: { database: string; steps?: number; to?: string },
): Promise<{ selected: MigrationInfo[]; downSql: Record<string, string>; to: string; applied: string[] }> {
  const m = migratorFor(deps, req.database);
  try {
    const dry = await m.down({ steps: req.to === undefined ? (req.steps ?? 1) : undefined, to: req.to, dryRun: true });
    const status = await m.status();
    const applied = status.applied.map((a) => a.version);
    const chosen = new Set(dry.pending.map((p) => p.version));
    const remaining = applied.filter((v) => !chosen.has(v));
    return { selected: dry.pending, downSql: dry.downSql, to: remaining[remaining.length - 1] ?? '0', applied };
  } finally {
    await m.close();
  }
}

/**
 * Rolls back every migration newer than `to`, which must be exactly `expect`: a retry after
 * a crash finds some already rolled back and does only the rest, never more.
 */
export async function rollbackMigrations(
  deps: ActivityDeps,
  req: { database: string; to: string; expect: string[] },
): Promise<{ rolledBack: MigrationInfo[]; remaining: string[] }> {
  const m = migratorFor(deps, req.database);
  const ctx = Context.current();
  try {
    const before = (await m.status()).applied.map((a) => a.version);
    const newer = before.filter((v) => BigInt(v) > BigInt(req.to));
    const unexpected = newer.filter((v) => !req.expect.includes(v));
    if (unexpected.length > 0) {
      throw ApplicationFailure.nonRetryable(
        `database ${req.database}: migrations ${unexpected.join(', ')} were applied after the rollback was planned; nothing was rolled back by this step`,
        ErrorTypes.MigrationFailed,
      );
    }
    const res = newer.length === 0 ? { applied: [] } : await m.down({ to: req.to, onProgress: (x) => ctx.heartbeat({ rollingBack: x.version }) });
    const after = (await m.status()).applied.map((a) => a.version);
    return { rolledBack: res.applied, remaining: after };
  } finally {
    await m.close();
  }
}
