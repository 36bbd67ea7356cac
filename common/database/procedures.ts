import { COMMON_FIELDS, type FieldSpec } from '../field-spec.js';

/** The database runbook family: procedure ids (the workflow types) and their input fields. */
export const DATABASE_PROCEDURES = {
  dbBackup: 'db-backup',
  dbRestore: 'db-restore',
  dbMigrationRollback: 'db-migration-rollback',
  dbVacuum: 'db-vacuum',
  dbTriage: 'db-triage',
  dbBaseBackup: 'db-base-backup',
  pitrRestore: 'pitr-restore',
  restoreDrill: 'restore-drill',
} as const;

export type DatabaseProcedureId = (typeof DATABASE_PROCEDURES)[keyof typeof DATABASE_PROCEDURES];

const database: FieldSpec = { kind: 'name', required: true, ref: 'database', help: 'a database name from the config (databases[].name)' };

export const DATABASE_INPUTS: Record<DatabaseProcedureId, Record<string, FieldSpec>> = {
  'db-backup': {
    ...COMMON_FIELDS,
    database,
    mode: { kind: 'enum', values: ['logical', 'docker-volume'], help: 'logical (pg_dump, default) or docker-volume (stop, tar the volume, start; databaseOps.volumes)' },
    services: { kind: 'string-list', ref: 'service', help: 'docker-volume: app services stopped around the copy (default: the apps group)' },
    waitTimeoutSeconds: { kind: 'positive-integer', help: 'docker-volume: seconds to wait for the services to be healthy again' },
    format: { kind: 'enum', values: ['custom', 'directory'], help: 'pg_dump format (default databaseOps.backups.format)' },
    jobs: { kind: 'positive-integer', help: 'parallel pg_dump jobs, directory format only' },
    retention: { kind: 'positive-integer', help: 'backups to keep for this database (default databaseOps.backups.retention)' },
  },
  'db-restore': {
    ...COMMON_FIELDS,
    database,
    mode: { kind: 'enum', values: ['logical', 'docker-volume'], help: 'logical (pg_restore, default) or docker-volume (approval, stop, restore the volume from a tarball, start)' },
    services: { kind: 'string-list', ref: 'service', help: 'docker-volume: app services stopped around the restore (default: the apps group)' },
    waitTimeoutSeconds: { kind: 'positive-integer', help: 'docker-volume: seconds to wait for the services to be healthy again' },
    backupId: { kind: 'id', help: 'backup id as listed in the repository (default: the newest)' },
    target: { kind: 'name', help: 'new database to restore into (default <database>_restored_<time>)' },
    replace: { kind: 'boolean', help: 'replace the database itself, after an approval confirmed with REPLACE' },
    dropReplaced: { kind: 'boolean', help: 'drop the replaced database instead of keeping it renamed' },
  },
  'db-migration-rollback': {
    ...COMMON_FIELDS,
    database,
    steps: { kind: 'positive-integer', help: 'roll back the last N migrations (default 1)' },
    to: { kind: 'string', help: 'roll back every migration newer than this version ("0" = all)' },
    services: { kind: 'string-list', ref: 'service', help: 'app services to stop and restart (default: the apps group)' },
    waitTimeoutSeconds: { kind: 'positive-integer', help: 'seconds to wait for the apps to be healthy again' },
    appVersion: {
      kind: 'enum',
      values: ['previous', 'current'],
      help: 'restart the apps at their previous version where the driver can (default: kubectl rollout undo, compose previousImages, command driver rollback), or as deployed',
    },
    previousImages: { kind: 'object', help: 'compose services: the previous image to run, e.g. {"api": "ghcr.io/org/api:1.4.2"}' },
  },
  'db-vacuum': {
    ...COMMON_FIELDS,
    database,
    tables: { kind: 'table-list', help: 'tables to consider (default: all user tables)' },
    reindex: { kind: 'boolean', help: 'REINDEX TABLE CONCURRENTLY the vacuumed tables' },
    full: { kind: 'boolean', help: 'VACUUM FULL (exclusive lock) after an approval confirmed with VACUUM FULL' },
    deadTuplesThreshold: { kind: 'non-negative-integer', help: 'dead tuples over which a table is vacuumed' },
    deadRatioThreshold: { kind: 'number', help: 'dead/(live+dead) ratio over which a table is vacuumed, 0..1' },
  },
  'db-triage': {
    ...COMMON_FIELDS,
    database,
    longQuerySeconds: { kind: 'number', help: 'a query running longer than this is reported' },
    terminateIdleOlderThanMinutes: { kind: 'number', help: 'terminate connections idle longer than this, after an approval' },
    cancelPids: { kind: 'integer-list', help: 'backend PIDs whose query to cancel, after an approval' },
    terminatePids: { kind: 'integer-list', help: 'backend PIDs to terminate, after an approval' },
  },
  'db-base-backup': {
    ...COMMON_FIELDS,
    database,
  },
  'pitr-restore': {
    ...COMMON_FIELDS,
    database,
    targetTime: { kind: 'datetime', required: true, help: 'the moment to recover to' },
    services: { kind: 'string-list', ref: 'service', help: 'app services to stop during the switch (default: the apps group)' },
    waitTimeoutSeconds: { kind: 'positive-integer', help: 'seconds to wait for the services to be healthy again' },
  },
  'restore-drill': {
    ...COMMON_FIELDS,
    database,
  },
};
