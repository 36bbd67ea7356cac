/** The database runbook family; each workflow is exported under its kebab-case procedure id (workflows/index.ts re-exports them). */
export {
  dbBackup as 'db-backup',
  dbRestore as 'db-restore',
  dbMigrationRollback as 'db-migration-rollback',
  dbVacuum as 'db-vacuum',
  dbTriage as 'db-triage',
} from './database.js';
export { dbLock as 'db-lock' } from './lock.js';
export { dbBaseBackup as 'db-base-backup', pitrRestore as 'pitr-restore', restoreDrill as 'restore-drill' } from './pitr.js';
export { dbMigrate as 'db-migrate' } from './migrate.js';
export { redisRestore as 'redis-restore', redisSnapshot as 'redis-snapshot' } from './redis.js';
