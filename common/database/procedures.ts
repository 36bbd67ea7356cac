/** The database runbook family: procedure ids, which are the workflow types (their inputs: inputs.ts). */
export const DATABASE_PROCEDURES = {
  dbBackup: 'db-backup',
  dbRestore: 'db-restore',
  dbMigrationRollback: 'db-migration-rollback',
  dbVacuum: 'db-vacuum',
  dbTriage: 'db-triage',
  dbBaseBackup: 'db-base-backup',
  pitrRestore: 'pitr-restore',
  restoreDrill: 'restore-drill',
  dbMigrate: 'db-migrate',
  redisSnapshot: 'redis-snapshot',
  redisRestore: 'redis-restore',
} as const;

export type DatabaseProcedureId = (typeof DATABASE_PROCEDURES)[keyof typeof DATABASE_PROCEDURES];

