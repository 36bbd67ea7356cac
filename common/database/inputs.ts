import { z } from 'zod';
import { field, IMAGE_PATTERN, NAME_PATTERN, procedureInput } from '../input-fields.js';
import type { DatabaseProcedureId } from './procedures.js';

/** The database family's inputs: one schema per procedure, the types are inferred from them. */

const database = field.name('a database name from the config (databases[].name)', { ref: 'database' });
const volumeServices = (what: string) =>
  field.nameList(`docker-volume: app services stopped around the ${what} (default: the apps group)`, { ref: 'service' }).optional();
const volumeWait = field.positiveInteger('docker-volume: seconds to wait for the services to be healthy again').optional();

const dbBackup = procedureInput({
  database,
  mode: field
    .enum(['logical', 'docker-volume'], 'logical (pg_dump, default) or docker-volume (stop, tar the volume, start; databaseOps.volumes)')
    .optional(),
  services: volumeServices('copy'),
  waitTimeoutSeconds: volumeWait,
  format: field.enum(['custom', 'directory'], 'pg_dump format (default databaseOps.backups.format)').optional(),
  jobs: field.positiveInteger('parallel pg_dump jobs, directory format only').optional(),
  retention: field.positiveInteger('backups to keep for this database (default databaseOps.backups.retention)').optional(),
});

const dbRestore = procedureInput({
  database,
  mode: field
    .enum(['logical', 'docker-volume'], 'logical (pg_restore, default) or docker-volume (approval, stop, restore the volume from a tarball, start)')
    .optional(),
  services: volumeServices('restore'),
  waitTimeoutSeconds: volumeWait,
  backupId: field.id('backup id as listed in the repository (default: the newest)').optional(),
  target: field.name('new database to restore into (default <database>_restored_<time>)').optional(),
  replace: field.boolean('replace the database itself, after an approval confirmed with REPLACE').optional(),
  dropReplaced: field.boolean('drop the replaced database instead of keeping it renamed').optional(),
  tables: field
    .tableList('restore only these tables\' rows from the backup into the live database (pg_restore -t), after an approval confirmed with RESTORE TABLES')
    .optional(),
});

const previousImages = z.record(z.string().regex(NAME_PATTERN), z.string().regex(IMAGE_PATTERN));

const dbMigrationRollback = procedureInput({
  database,
  steps: field.positiveInteger('roll back the last N migrations (default 1)').optional(),
  to: field.text('roll back every migration newer than this version ("0" = all)').optional(),
  services: field.nameList('app services to stop and restart (default: the apps group)', { ref: 'service' }).optional(),
  waitTimeoutSeconds: field.positiveInteger('seconds to wait for the apps to be healthy again').optional(),
  appVersion: field
    .enum(
      ['previous', 'current'],
      'restart the apps at their previous version where the driver can (default: kubectl rollout undo, compose previousImages, command driver rollback), or as deployed',
    )
    .optional(),
  previousImages: field
    .shaped('compose services: the previous image to run, e.g. {"api": "ghcr.io/org/api:1.4.2"}', previousImages)
    .optional(),
});

const dbVacuum = procedureInput({
  database,
  tables: field.tableList('tables to consider (default: all user tables)').optional(),
  reindex: field.boolean('REINDEX TABLE CONCURRENTLY the vacuumed tables').optional(),
  full: field.boolean('VACUUM FULL (exclusive lock) after an approval confirmed with VACUUM FULL').optional(),
  deadTuplesThreshold: field.nonNegativeInteger('dead tuples over which a table is vacuumed').optional(),
  deadRatioThreshold: field.number('dead/(live+dead) ratio over which a table is vacuumed, 0..1').optional(),
});

const dbTriage = procedureInput({
  database,
  longQuerySeconds: field.number('a query running longer than this is reported').optional(),
  terminateIdleOlderThanMinutes: field.number('terminate connections idle longer than this, after an approval').optional(),
  cancelPids: field.integerList('backend PIDs whose query to cancel, after an approval').optional(),
  terminatePids: field.integerList('backend PIDs to terminate, after an approval').optional(),
});

const dbBaseBackup = procedureInput({ database });

const pitrRestore = procedureInput({
  database,
  targetTime: field.datetime('the moment to recover to'),
  services: field.nameList('app services to stop during the switch (default: the apps group)', { ref: 'service' }).optional(),
  waitTimeoutSeconds: field.positiveInteger('seconds to wait for the services to be healthy again').optional(),
});

const restoreDrill = procedureInput({ database });

const dbMigrate = procedureInput({
  database,
  mode: field
    .enum(['plan', 'status', 'apply'], 'plan (dry run: pending migrations and their SQL, default), status (applied with times, and pending) or apply (approval, backup, apply, verify)')
    .optional(),
  to: field.id('plan/apply: stop after this migration, a version or <version>_<description> of databases[].migrationsDir (default: all pending)').optional(),
  backup: field.boolean('apply: take a verified pg_dump before applying (default: true when databaseOps.backups is configured)').optional(),
});

const redisService = field.name('a Redis service from databaseOps.redis[].service (it has a redis probe)', { ref: 'service' });

const redisSnapshot = procedureInput({ service: redisService });

const redisRestore = procedureInput({
  service: redisService,
  snapshotId: field.id('snapshot id: <id>.rdb in the snapshots directory (default: the most recently written)').optional(),
  waitTimeoutSeconds: field.positiveInteger('seconds to wait for Redis to answer PING and finish loading (default databaseOps.redis[].readyTimeoutSeconds)').optional(),
});

export const DATABASE_INPUTS = {
  'db-backup': dbBackup,
  'db-restore': dbRestore,
  'db-migration-rollback': dbMigrationRollback,
  'db-vacuum': dbVacuum,
  'db-triage': dbTriage,
  'db-base-backup': dbBaseBackup,
  'pitr-restore': pitrRestore,
  'restore-drill': restoreDrill,
  'db-migrate': dbMigrate,
  'redis-snapshot': redisSnapshot,
  'redis-restore': redisRestore,
} satisfies Record<DatabaseProcedureId, z.ZodType>;

export type DbBackupInput = z.output<typeof dbBackup>;
export type DbRestoreInput = z.output<typeof dbRestore>;
export type DbMigrationRollbackInput = z.output<typeof dbMigrationRollback>;
export type DbVacuumInput = z.output<typeof dbVacuum>;
export type DbTriageInput = z.output<typeof dbTriage>;
export type DbBaseBackupInput = z.output<typeof dbBaseBackup>;
export type PitrRestoreInput = z.output<typeof pitrRestore>;
export type RestoreDrillInput = z.output<typeof restoreDrill>;
export type DbMigrateInput = z.output<typeof dbMigrate>;
export type RedisSnapshotInput = z.output<typeof redisSnapshot>;
export type RedisRestoreInput = z.output<typeof redisRestore>;
