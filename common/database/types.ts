import type { ApprovalPolicy } from '../approvals.js';
import type { ApprovalRecord, MigrationInfo, RefusedApproval, RunProgress, ServiceActionResult, HealthCheckResult } from '../types.js';
export type { DbBackupInput, DbRestoreInput, DbMigrationRollbackInput, DbVacuumInput, DbTriageInput, DbBaseBackupInput, PitrRestoreInput, RestoreDrillInput } from './inputs.js';
export type { RedisRestoreInput, RedisSnapshotInput } from './inputs.js';
export type { DbMigrateInput } from './inputs.js';

/** Workflow-safe shapes of the database runbooks: inputs, activity requests and results. Plain JSON only. */

export interface DatabasePlan {
  environment: string;
  database: string;
  /** The service hosting the database, when configured. */
  service?: string;
  hasMigrations: boolean;
  backupsConfigured: boolean;
  /** `s3://bucket/prefix/` of databaseOps.objectStorage (no credentials), when configured. */
  objectStorage?: string | null;
  /** databaseOps.pitr[].objectStorage of this database: base backups and WAL in the store. */
  pitrObjectStorage?: boolean;
  format: 'custom' | 'directory';
  jobs: number;
  retention: number;
  /** Tables a restore must show: databaseOps.pitr[].verifyTables, else backups.verifyTables.<database>. */
  verifyTables: string[];
  /** Services of the `apps` group: what a rollback takes down (those whose driver can stop them). */
  appServices: string[];
  approvalPolicy: ApprovalPolicy;
  approvalTimeoutSeconds: number;
  lock: { mode: 'wait' | 'fail'; waitTimeoutSeconds: number; pollSeconds: number };
  vacuum: { deadTuplesThreshold: number; deadRatioThreshold: number };
  /** AlphaPulse 5.1 objectives a restore drill is measured against. */
  dr: { rtoSeconds: number; rpoSeconds: number };
  triage: { connectionsAlertPercent: number; longQuerySeconds: number; idleMinutes: number; seqScanMinRows: number; cacheHitWarnRatio: number };
}

export interface BackupManifest {
  id: string;
  database: string;
  format: 'custom' | 'directory';
  /** Path of the dump file or directory, relative to the backup's folder. */
  file: string;
  sizeBytes: number;
  /** sha256 of the dump file; for directory format, of "<name> <sha256>\n" lines of its files in name order. */
  sha256: string;
  startedAt: string;
  endedAt: string;
  serverVersion: string;
  /** pg_current_wal_lsn() when the dump started. */
  walLsn: string;
  /** Row counts of the configured verifyTables at dump time (a restore must reproduce them). */
  rowCounts: Record<string, number>;
  /** Entries of `pg_restore --list` (TOC), checked at verification. */
  tocEntries: number;
  workflowId: string;
  /** The dump sent to the object store while it was written (the manifest still goes up after verification). */
  streamedTo?: StreamedDump;
}

/** A dump uploaded while pg_dump wrote it: where, and the checksum the store reported for it. */
export interface StreamedDump {
  key: string;
  /** The store's SHA-256 of the object (base64; "<base64>-N" for a multipart upload of N parts). */
  checksum: string;
  parts: number;
  durationMs: number;
}

export interface DbBackupResult {
  ok: boolean;
  backup: BackupManifest;
  verified: { checksum: boolean; tocEntries: number };
  deleted: string[];
  throughputMBps: number;
  /** The off-host copy in databaseOps.objectStorage; absent when none is configured. */
  upload?: BackupUpload | null;
  progress: RunProgress;
}

/** A backup's upload to the object store, each object's SHA-256 checked by the server and compared after. */
export interface BackupUpload {
  /** `s3://bucket/<prefix>/<database>/<id>/` */
  location: string;
  objects: number;
  bytes: number;
  /** Multipart parts (1 per file uploaded in a single PUT). */
  parts: number;
  durationMs: number;
  throughputMBps: number;
  /** The store already held this backup with the same checksum (a retried upload). */
  already: boolean;
  /** The dump went up while pg_dump wrote it; this step checked the stored object and added the manifest. */
  duringDump?: boolean;
}

export interface TableCount {
  table: string;
  expected: number;
  actual: number;
}

export interface DbRestoreResult {
  ok: boolean;
  backupId: string;
  target: string;
  replaced: boolean;
  /** Where the replaced database went (renamed), or null when dropped or nothing was replaced. */
  keptAs: string | null;
  /** A single-table restore (input `tables`): the tables whose rows were restored into the live database. */
  tables?: string[];
  counts: TableCount[];
  durationMs: number;
  approvals: ApprovalRecord[];
  refusals: RefusedApproval[];
  /** Refused answers beyond those kept in `refusals`. */
  refusalsDropped?: number;
  progress: RunProgress;
}

/** How one app service came back after a migration rollback. */
export interface AppRestart {
  service: string;
  /** `previous` when it runs its previous version now; `deployed` when it was (re)started as deployed. */
  version: 'previous' | 'deployed';
  how: 'rollout-undo' | 'previous-image' | 'rollback-command' | 'start' | 'already-running';
  commands: string[];
  /** Why a service that could not go back to its previous version was started as deployed. */
  note?: string;
}

export interface DbMigrationRollbackResult {
  ok: boolean;
  database: string;
  rolledBack: MigrationInfo[];
  downSql: Record<string, string>;
  backupId: string;
  remaining: string[];
  stopped: ServiceActionResult[];
  started: ServiceActionResult[];
  /** Per app service: at which version it runs again and by which command. */
  appRestarts: AppRestart[];
  health: HealthCheckResult | null;
  approvals: ApprovalRecord[];
  refusals: RefusedApproval[];
  /** Refused answers beyond those kept in `refusals`. */
  refusalsDropped?: number;
  progress: RunProgress;
}

export interface TableBloat {
  table: string;
  liveTuples: number;
  deadTuples: number;
  deadRatio: number;
  sizeBytes: number;
  lastVacuum: string | null;
  lastAutovacuum: string | null;
}

export interface DbVacuumResult {
  ok: boolean;
  before: TableBloat[];
  vacuumed: string[];
  reindexed: string[];
  vacuumedFull: string[];
  after: TableBloat[];
  approvals: ApprovalRecord[];
  refusals: RefusedApproval[];
  /** Refused answers beyond those kept in `refusals`. */
  refusalsDropped?: number;
  progress: RunProgress;
}

export interface TriageFinding {
  severity: 'OK' | 'P1' | 'P2';
  check: string;
  detail: string;
}

export interface TriageReport {
  maxConnections: number;
  connectionsByState: Record<string, number>;
  connectionsPercent: number;
  longRunning: Array<{ pid: number; state: string; seconds: number; query: string; user: string }>;
  blocked: Array<{ blockedPid: number; blockedQuery: string; blockingPid: number; blockingQuery: string; seconds: number }>;
  /** pg_stat_statements of this database, slowest mean first (Fulcrum 4.2); null without the extension. */
  topStatements: Array<{ query: string; calls: number; totalMs: number; meanMs: number; maxMs?: number }> | null;
  statStatementsNote: string;
  /** The plan of the slowest explainable statement: EXPLAIN without ANALYZE, so it never runs. */
  worstPlan?: { query: string; meanMs: number; plan: string[]; seqScans: string[] } | null;
  worstPlanNote?: string;
  /** Tables with over 100 sequential scans, most first, with their share of index scans (Fulcrum 4.2). */
  seqScanHeavy: Array<{ table: string; seqScans: number; seqRows: number; indexScans: number; idxHitRate?: number }>;
  cacheHitRatio: number | null;
  idleOlderThan: Array<{ pid: number; user: string; idleSeconds: number }>;
  /** AlphaPulse 2.1 Replication Lag; absent in reports recorded before it. */
  replication?: ReplicationReport;
  findings: TriageFinding[];
}

/** What the replica reports about itself. */
export interface ReplicaSide {
  inRecovery: boolean;
  /** pg_last_xact_replay_timestamp(). */
  replayTimestamp: string | null;
  /** now() - pg_last_xact_replay_timestamp() (AlphaPulse 2.1): grows on an idle primary too. */
  replayAgeSeconds: number | null;
  /** Everything received is replayed (the age above is then no lag). */
  caughtUp: boolean | null;
  /** pg_stat_wal_receiver.status ('streaming'), null without a receiver. */
  receiverStatus: string | null;
}

export interface ReplicationReport {
  /** The configured database's own role (pg_is_in_recovery()). */
  role: 'primary' | 'replica';
  /** pg_stat_replication on the primary; lags in seconds, lagBytes = pg_wal_lsn_diff(current, replay). */
  senders: Array<{
    applicationName: string;
    clientAddr: string | null;
    state: string;
    sentLsn: string | null;
    writeLsn: string | null;
    flushLsn: string | null;
    replayLsn: string | null;
    writeLagSeconds: number | null;
    flushLagSeconds: number | null;
    replayLagSeconds: number | null;
    lagBytes: number | null;
  }>;
  /** pg_replication_slots on the primary: an inactive slot keeps WAL (retainedBytes) until its replica returns. */
  slots?: Array<{ name: string; type: string; active: boolean; walStatus: string | null; retainedBytes: number | null }>;
  /** When the configured database is itself a replica. */
  self?: ReplicaSide;
  /** databases[].replicas, each read on the replica. */
  replicas: Array<{ name: string; applicationName: string; reachable: boolean; error?: string } & Partial<ReplicaSide>>;
}

export interface PidAction {
  pid: number;
  action: 'cancel' | 'terminate';
  done: boolean;
}

export interface DbTriageResult {
  ok: boolean;
  report: TriageReport;
  actions: PidAction[];
  approvals: ApprovalRecord[];
  refusals: RefusedApproval[];
  /** Refused answers beyond those kept in `refusals`. */
  refusalsDropped?: number;
  progress: RunProgress;
}

export interface DbLockInput {
  database: string;
  holder: { workflowId: string; procedure: string; requestedBy: string };
}

export interface BaseBackupManifest {
  id: string;
  database: string;
  startedAt: string;
  /** The backup is consistent from here on: the earliest time a PITR from it can reach. */
  endedAt: string;
  startLsn: string;
  /** The first WAL segment the backup needs (backup_label's "file"). */
  startWal?: string;
  sizeBytes: number;
  workflowId: string;
}

export interface ArchiveStatus {
  archivedCount: number;
  failedCount: number;
  lastArchivedWal: string | null;
  lastArchivedAt: string | null;
  lastFailedAt: string | null;
}

export interface DbBaseBackupResult {
  ok: boolean;
  backup: BaseBackupManifest;
  /** The tar of the data directory in databaseOps.objectStorage (pitr[].objectStorage). */
  upload?: BackupUpload | null;
  archive: ArchiveStatus;
  deleted: string[];
  /** WAL in the store that no kept base backup needs, deleted after base backup retention (pitr[].objectStorage). */
  walRetention?: WalRetention | null;
  progress: RunProgress;
}

/** What the WAL retention of the store did: WAL before the oldest kept base backup's first segment is deleted. */
export interface WalRetention {
  /** The first segment kept: the start of the oldest kept base backup (null when nothing could be decided). */
  keepFrom: string | null;
  /** The base backup whose start that is. */
  oldestBaseBackupId: string | null;
  deleted: number;
  deletedBytes: number;
  /** The first and last deleted files (oldest first), when any. */
  firstDeleted?: string;
  lastDeleted?: string;
  /** WAL files left in the store. */
  remaining: number;
  /** Why nothing was deleted, when the run could not tell what is safe to delete. */
  skipped?: string;
}

export interface PitrWindow {
  backups: BaseBackupManifest[];
  /** mtime of the newest WAL segment in the archive: nothing later is recoverable. */
  lastArchivedAt: string | null;
  segments: number;
  /** The oldest WAL segment in the archive (local and store); retention moves it forward. */
  firstSegment?: string | null;
}

export interface PitrRestoreResult {
  ok: boolean;
  baseBackupId: string;
  targetTime: string;
  /** Time of the last transaction replayed (pg_last_xact_replay_timestamp). */
  recoveredTo: string | null;
  dataDir: string;
  oldDataDir: string | null;
  oldDataDirRemoved: boolean;
  counts: Record<string, number>;
  durationMs: number;
  approvals: ApprovalRecord[];
  refusals: RefusedApproval[];
  /** Refused answers beyond those kept in `refusals`. */
  refusalsDropped?: number;
  progress: RunProgress;
}

export interface RestoreDrillResult {
  ok: boolean;
  /** fetchedFrom: the object-storage location the backup was downloaded from (no local copy). */
  logical: { backupId: string; restoreMs: number; counts: TableCount[]; fetchedFrom?: string } | null;
  pitr: { baseBackupId: string; targetTime: string; recoveredTo: string | null; restoreMs: number; counts: Record<string, number> } | null;
  rtoSeconds: number;
  rpoSeconds: number;
  objectives: { rtoSeconds: number; rpoSeconds: number };
  withinObjectives: boolean;
  notified: boolean;
  progress: RunProgress;
}

/** The Docker-volume variant of a database (databaseOps.volumes), resolved for a run. */
export interface VolumePlan {
  database: string;
  /** The compose service holding the volume (databases[].service). */
  service: string;
  volume: string;
  /** Absolute path of `<repository>/<database>` on the worker (and Docker) host. */
  dir: string;
  image: string;
  keepCurrent: boolean;
  retention: number;
}

/** Written as `<id>.json` beside `<id>.tar.gz` by a volume backup; a hand-made tarball has only its `.sha256`. */
export interface VolumeBackupManifest {
  id: string;
  database: string;
  volume: string;
  file: string;
  sizeBytes: number;
  sha256: string;
  startedAt: string;
  endedAt: string;
  /** Row counts of verifyTables just before the database was stopped for the copy. */
  rowCounts: Record<string, number>;
  workflowId: string;
}

/** A tarball whose checksum was just verified against its `.sha256`. */
export interface VolumeTarball {
  id: string;
  file: string;
  sizeBytes: number;
  sha256: string;
  /** From `<id>.json` when db-backup made it; empty for a hand-made tarball. */
  rowCounts: Record<string, number>;
}

export interface DbVolumeBackupResult {
  ok: boolean;
  mode: 'docker-volume';
  backup: VolumeBackupManifest;
  /** Every docker command run, in order (argv joined). */
  commands: string[];
  deleted: string[];
  progress: RunProgress;
}

export interface DbVolumeRestoreResult {
  ok: boolean;
  mode: 'docker-volume';
  backupId: string;
  volume: string;
  /** The tarball of the volume as it was before the restore (keepCurrent), or null. */
  keptAs: string | null;
  commands: string[];
  counts: TableCount[];
  durationMs: number;
  approvals: ApprovalRecord[];
  refusals: RefusedApproval[];
  /** Refused answers beyond those kept in `refusals`. */
  refusalsDropped?: number;
  progress: RunProgress;
}

// ---------------------------------------------------------------- Redis (AlphaPulse 5.3)

/** Keys per logical database, as INFO keyspace reports them: `{ db0: { keys: 12, expires: 3 } }`. */
export type RedisKeyCounts = Record<string, { keys: number; expires: number }>;

/** What redis-restore needs from databaseOps.redis[] and the service, captured once per run. */
export interface RedisOpsPlan {
  service: string;
  /** `<snapshots>/<service>`, resolved. */
  snapshotsDir: string;
  readyTimeoutSeconds: number;
  snapshotTimeoutSeconds: number;
  /** The service's driver can stop and start it. */
  managed: boolean;
  /** databaseOps.lock: redis-restore holds the lock `redis:<service>` as the database runbooks hold theirs. */
  lock: { mode: 'wait' | 'fail'; waitTimeoutSeconds: number; pollSeconds: number };
}

/** `<id>.json` beside a snapshot redis-snapshot took. */
export interface RedisSnapshotManifest {
  id: string;
  service: string;
  file: string;
  sizeBytes: number;
  sha256: string;
  /** The BGSAVE's LASTSAVE, ISO time. */
  takenAt: string;
  redisVersion: string;
  /** INFO keyspace just before the BGSAVE (writes during it may be in the file or not). */
  keyCountsAtSnapshot: RedisKeyCounts;
}

export interface RedisSnapshotCheck {
  id: string;
  file: string;
  sizeBytes: number;
  sha256: string;
  /** The first 9 bytes: "REDIS" and a 4-digit RDB version. */
  header: string;
  /** redis-check-rdb passed, or only the header was checked (the tool was not found). */
  checkedWith: 'redis-check-rdb' | 'header';
  /** Keys in the file: loaded into a scratch redis-server, else the manifest's count at snapshot time. */
  expected: RedisKeyCounts;
  expectedFrom: 'scratch-load' | 'manifest';
  takenAt: string | null;
}

export interface RedisServerState {
  pid: number;
  runId: string;
  role: string;
  redisVersion: string;
  dir: string;
  dbfilename: string;
  appendonly: boolean;
  keyCounts: RedisKeyCounts;
}

export interface RedisCountCheck {
  db: string;
  expected: number;
  actual: number;
  /** Keys with a TTL in the snapshot: they may expire between the check and the load. */
  volatile: number;
  ok: boolean;
}

export interface RedisSnapshotResult {
  ok: boolean;
  snapshot: RedisSnapshotManifest;
  progress: RunProgress;
}

export interface RedisRestoreResult {
  ok: boolean;
  service: string;
  snapshotId: string;
  expectedFrom: 'scratch-load' | 'manifest';
  before: RedisKeyCounts;
  after: RedisKeyCounts;
  counts: RedisCountCheck[];
  /** Where the replaced dump file was kept (never deleted). */
  keptAs: string | null;
  pidBefore: number;
  pidAfter: number;
  commands: string[];
  durationMs: number;
  approvals: ApprovalRecord[];
  refusals: RefusedApproval[];
  refusalsDropped?: number;
  progress: RunProgress;
}

// ---------------------------------------------------------------- db-migrate (Fulcrum 4.1)

/** A row of schema_migrations. */
export interface AppliedMigration extends MigrationInfo {
  appliedAt: string;
}

/** What db-migrate would do, read without changing anything. */
export interface MigrationPlan {
  /** The migrations directory, as configured (databases[].migrationsDir). */
  dir: string;
  /** Every migration file there, in version order, as <version>_<description>. */
  known: string[];
  applied: AppliedMigration[];
  /** Every pending migration, in order. */
  pending: MigrationInfo[];
  /** The pending ones up to `to` (all without it): what apply runs. */
  selected: MigrationInfo[];
  /** The up SQL of each selected migration, by version, as its file holds it. */
  upSql: Record<string, string>;
  /** `to` resolved to a version, or null when not given. */
  to: string | null;
}

export interface DbMigrateResult {
  ok: boolean;
  mode: 'plan' | 'status' | 'apply';
  database: string;
  /** schema_migrations when the run looked (before anything was applied). */
  applied: AppliedMigration[];
  pending: MigrationInfo[];
  /** plan and apply: the migrations selected (up to `to`) and their SQL. */
  selected: MigrationInfo[];
  upSql: Record<string, string>;
  /** apply: what this run applied, and schema_migrations afterwards. */
  appliedNow: MigrationInfo[];
  after: AppliedMigration[] | null;
  /** apply: the verified pre-migration backup, or null (skipped: see the backup step's detail). */
  backupId: string | null;
  /** apply: tables and columns ("table", "table.column type") that appeared or went away. */
  schemaChanges: { added: string[]; removed: string[] } | null;
  approvals: ApprovalRecord[];
  refusals: RefusedApproval[];
  /** Refused answers beyond those kept in `refusals`. */
  refusalsDropped?: number;
  progress: RunProgress;
}

/** A table of a single-table restore, checked against the backup and the live database before the approval. */
export interface TableRestoreCheck {
  table: string;
  /** Rows of the table in the backup (COPY lines of its TABLE DATA). */
  rowsInBackup: number;
  /** Rows in the live table now, which the restore replaces. */
  rowsLive: number;
}
