import type { ApprovalPolicy } from '../approvals.js';
import type { ApprovalRecord, MigrationInfo, RefusedApproval, RunProgress, ServiceActionResult, HealthCheckResult } from '../types.js';
export type { DbBackupInput, DbRestoreInput, DbMigrationRollbackInput, DbVacuumInput, DbTriageInput, DbBaseBackupInput, PitrRestoreInput, RestoreDrillInput } from './inputs.js';

/** Workflow-safe shapes of the database runbooks: inputs, activity requests and results. Plain JSON only. */

export interface DatabasePlan {
  environment: string;
  database: string;
  /** The service hosting the database, when configured. */
  service?: string;
  hasMigrations: boolean;
  backupsConfigured: boolean;
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
}

export interface DbBackupResult {
  ok: boolean;
  backup: BackupManifest;
  verified: { checksum: boolean; tocEntries: number };
  deleted: string[];
  throughputMBps: number;
  progress: RunProgress;
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
  topStatements: Array<{ query: string; calls: number; totalMs: number; meanMs: number }> | null;
  statStatementsNote: string;
  seqScanHeavy: Array<{ table: string; seqScans: number; seqRows: number; indexScans: number }>;
  cacheHitRatio: number | null;
  idleOlderThan: Array<{ pid: number; user: string; idleSeconds: number }>;
  findings: TriageFinding[];
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
  archive: ArchiveStatus;
  deleted: string[];
  progress: RunProgress;
}

export interface PitrWindow {
  backups: BaseBackupManifest[];
  /** mtime of the newest WAL segment in the archive: nothing later is recoverable. */
  lastArchivedAt: string | null;
  segments: number;
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
  logical: { backupId: string; restoreMs: number; counts: TableCount[] } | null;
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
