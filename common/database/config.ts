import { z } from 'zod';
import { threshold } from '../thresholds.js';

/**
 * The `databaseOps` config section: backup repository, destructive-run lock, vacuum
 * and triage thresholds, and the Temporal Schedules `runbook schedules apply` keeps in
 * sync. Defaults are the runbooks' values (AlphaPulse 3.4 and 5.1, Fulcrum 4 and 8.2).
 */

const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'expected a lower-case name of letters, digits, ".", "_" or "-" (max 63)');

/** `table` or `schema.table`, as written in SQL without quotes. */
const tableName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/, 'expected a table name like "policies" or "public.policies"');

export const backupsSchema = z.strictObject({
  repository: z
    .string()
    .min(1)
    .describe('directory holding one folder per backup; relative to the config file; may use ${NAME} or ${NAME:-fallback} from the worker environment'),
  retention: z.number().int().min(1).default(7).describe('backups kept per database; older ones are deleted after a verified backup'),
  format: z.enum(['custom', 'directory']).default('custom'),
  jobs: z.number().int().min(1).max(64).default(1).describe('pg_dump/pg_restore --jobs (directory format only for pg_dump)'),
  verifyTables: z.record(z.string(), z.array(tableName)).default({}).describe('database name -> tables whose row counts a restore must reproduce'),
  binDir: z.string().optional().describe('where pg_dump, pg_restore, pg_basebackup and psql (single-table restore) live (default: newest /usr/lib/postgresql/*/bin, else PATH)'),
  timeoutSeconds: z.number().int().positive().default(7200),
});

export const scheduleSchema = z.strictObject({
  id: name,
  procedure: z.string().min(1).describe('the runbook to start, e.g. db-backup'),
  cron: z.array(z.string().min(1)).min(1).optional().describe('cron expressions, e.g. ["0 2 * * *"], in databaseOps.timezone'),
  everySeconds: z.number().int().min(1).optional().describe('an interval instead of cron'),
  input: z.record(z.string(), z.unknown()).default({}),
  paused: z.boolean().default(false),
  note: z.string().optional(),
});

/** A value that must come from the worker's environment: `${NAME}`, never written in the config. */
const fromEnv = (what: string) =>
  z
    .string()
    .regex(/^\$\{[A-Za-z_][A-Za-z0-9_]*\}$/, `${what} must not be written in the config: write \${NAME} and set NAME in the worker's environment`);

/**
 * Off-host copies of the backups in an S3-compatible store (AlphaPulse 3.4: daily dumps uploaded
 * to object storage; 5.2: restored from it). Credentials come from the environment only.
 */
export const objectStorageSchema = z
  .strictObject({
    endpoint: z
      .string()
      .min(1)
      .optional()
      .describe('S3 endpoint URL, e.g. https://s3.eu-central-1.amazonaws.com or http://127.0.0.1:7070 (default: AWS for the region); may use ${NAME}'),
    region: z.string().min(1).default('us-east-1'),
    bucket: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'expected an S3 bucket name: 3-63 lower-case letters, digits, "." or "-"'),
    prefix: z
      .string()
      .regex(/^([A-Za-z0-9!_.*'()-]+\/)*[A-Za-z0-9!_.*'()-]*$/, 'expected a key prefix like "backups" or "prod/db" (no leading "/", no "//")')
      .default('durable-runbooks')
      .describe('objects are <prefix>/<database>/<backup id>/<file>; base backups under <prefix>/<database>/base/, WAL under <prefix>/<database>/wal/'),
    forcePathStyle: z.boolean().default(false).describe('bucket in the path (http://host/bucket/key), as MinIO/Versity gateways usually need'),
    accessKeyId: fromEnv('accessKeyId').optional().describe('${NAME} of the access key id; without it the AWS SDK default chain (AWS_ACCESS_KEY_ID, profile, instance role)'),
    secretAccessKey: fromEnv('secretAccessKey').optional().describe('${NAME} of the secret access key'),
    sessionToken: fromEnv('sessionToken').optional(),
    partSizeMiB: z.number().int().min(5).max(5120).default(16).describe('multipart part size; files larger than one part are uploaded in parts'),
    queueSize: z.number().int().min(1).max(16).default(4).describe('parts uploaded at once (memory used: queueSize x partSizeMiB)'),
  })
  .refine((o) => !o.accessKeyId === !o.secretAccessKey, { message: 'give both accessKeyId and secretAccessKey, or neither (the SDK default chain)', path: ['secretAccessKey'] });

/** A cluster this project manages for point-in-time recovery (continuous WAL archiving + base backups). */
export const pitrSchema = z.strictObject({
  database: name.describe('a databases[] entry on this cluster: its URL is used for pg_basebackup and verification'),
  dataDir: z.string().min(1).describe("the live cluster's data directory (switched to the restored one after a PITR)"),
  walArchive: z.string().min(1).describe("where archive_command copies WAL, e.g. archive_command = 'cp %p /backups/wal/%f'"),
  baseBackups: z.string().min(1).describe('directory of pg_basebackup backups, one folder each'),
  restoreDir: z.string().min(1).describe('where restored data directories are created; same filesystem as dataDir'),
  osUser: z.string().default('postgres').describe('the OS user PostgreSQL runs as (server processes never run as root)'),
  retention: z.number().int().min(1).default(3),
  verifyTables: z.array(tableName).default([]),
  recoveryTimeoutSeconds: z.number().int().positive().default(3600),
  objectStorage: z
    .boolean()
    .default(false)
    .describe('AlphaPulse 5.2: base backups uploaded to databaseOps.objectStorage, WAL archived there by archive_command = \'runbook wal push %p %f --database <name>\'; PITR and drills fetch both'),
});

/**
 * The Fulcrum runbook's Docker-volume variant: the database's data directory lives in a Docker
 * volume, backed up and restored as a tarball by a throwaway container, while its compose
 * service (databases[].service, compose driver) is stopped.
 */
export const volumeSchema = z.strictObject({
  database: name.describe('a databases[] entry whose service uses the compose driver'),
  volume: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{1,254}$/, 'expected a Docker volume name (letters, digits, "_", "." or "-"), e.g. fulcrum-postgres-data')
    .describe('the Docker volume holding the data directory, as `docker volume ls` names it'),
  repository: z
    .string()
    .min(1)
    .regex(/^[^,:]+$/, 'a directory without "," or ":" (it is bind-mounted into the tar container)')
    .describe('directory of <id>.tar.gz tarballs, each with <id>.tar.gz.sha256 beside it; relative to the config file; on the Docker host'),
  image: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/, 'expected an image reference like alpine:3.20 or registry.example/tools/alpine@sha256:...')
    .default('alpine:3.20')
    .describe('image of the throwaway container that runs tar (needs tar, gzip and find)'),
  retention: z.number().int().min(1).default(3).describe('tarballs taken by db-backup kept; pre-restore copies are never deleted'),
  keepCurrent: z.boolean().default(true).describe('before a restore, tar the current volume into the repository as pre-restore-<time>'),
  timeoutSeconds: z.number().int().positive().default(3600),
});

/**
 * A Redis this project snapshots and restores (AlphaPulse 5.3): its service (a redis probe for
 * the connection, a driver that can stop and start it) and the directory of its RDB snapshots.
 * The worker must see the server's `dir` (same host, or a bind mount named by dataDir).
 */
export const redisOpsSchema = z.strictObject({
  service: name.describe('a services[] entry with a redis probe (the connection) and a driver with stop and start'),
  snapshots: z
    .string()
    .min(1)
    .describe('directory of <service>/<id>.rdb snapshots (with <id>.json from redis-snapshot); relative to the config file; may use ${NAME}'),
  dataDir: z.string().min(1).optional().describe("where the worker sees Redis's dump file (default: the server's CONFIG GET dir)"),
  binDir: z.string().min(1).optional().describe('where redis-server and redis-check-rdb live (default: PATH)'),
  readyTimeoutSeconds: z.number().int().positive().default(1800).describe('AlphaPulse 5.1: Redis RTO 30 minutes; how long a restored Redis may take to load'),
  snapshotTimeoutSeconds: z.number().int().positive().default(3600).describe('how long a BGSAVE may take'),
});

/** An IANA time zone name, as Temporal Schedules take it. */
const timeZone = z
  .string()
  .min(1)
  .refine((tz) => {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  }, 'unknown IANA time zone: expected e.g. Europe/Berlin or UTC');

export const databaseOpsSchema = z
  .strictObject({
    timezone: timeZone.default('UTC').describe('time zone of the schedules\' cron expressions (daylight saving time included)'),
    backups: backupsSchema.optional(),
    objectStorage: objectStorageSchema.optional().describe('S3-compatible store for off-host copies of db-backup dumps'),
    lock: z
      .strictObject({
        mode: z.enum(['wait', 'fail']).default('fail').describe('what a destructive run does when another holds its database'),
        waitTimeoutSeconds: z.number().int().positive().default(3600),
        pollSeconds: z.number().positive().default(5),
      })
      .prefault({}),
    vacuum: z
      .strictObject({
        deadTuplesThreshold: z.number().int().min(0).default(1000).describe('AlphaPulse 3.4: n_dead_tup > 1000'),
        deadRatioThreshold: z.number().min(0).max(1).default(0.1).describe('dead / (live + dead) over which a table is vacuumed'),
      })
      .prefault({}),
    triage: z
      .strictObject({
        connectionsAlertPercent: z.number().min(1).max(100).default(threshold('db-connection-pool').value).describe('AlphaPulse 4.2 DB Connection Pool: >80% connections used'),
        longQuerySeconds: z.number().positive().default(threshold('slow-query').value / 1000).describe('AlphaPulse 2.1 Slow Queries: active queries running longer than 1 second'),
        idleMinutes: z.number().positive().default(10),
        seqScanMinRows: z.number().int().min(0).default(10000),
        cacheHitWarnRatio: z.number().min(0).max(1).default(0.99),
      })
      .prefault({}),
    schedules: z.array(scheduleSchema).default([]),
    pitr: z.array(pitrSchema).default([]),
    volumes: z.array(volumeSchema).default([]),
    redis: z.array(redisOpsSchema).default([]),
    disasterRecovery: z
      .strictObject({
        rtoSeconds: z.number().positive().default(3600).describe('AlphaPulse 5.1: PostgreSQL RTO 1 hour'),
        rpoSeconds: z.number().positive().default(900).describe('AlphaPulse 5.1: PostgreSQL RPO 15 minutes'),
        notifyUrl: z.string().url().optional().describe('webhook POSTed a JSON report when a restore drill misses an objective'),
      })
      .prefault({}),
  })
  .superRefine((ops, ctx) => {
    ops.pitr.forEach((p, i) => {
      if (p.objectStorage && !ops.objectStorage) {
        ctx.addIssue({ code: 'custom', path: ['pitr', i, 'objectStorage'], message: 'needs databaseOps.objectStorage (endpoint, bucket and credentials of the store)' });
      }
    });
    const withVolume = new Set<string>();
    ops.volumes.forEach((v, i) => {
      if (withVolume.has(v.database)) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'database'], message: `database "${v.database}" already has a volume entry` });
      withVolume.add(v.database);
    });
    const withRedis = new Set<string>();
    ops.redis.forEach((r, i) => {
      if (withRedis.has(r.service)) ctx.addIssue({ code: 'custom', path: ['redis', i, 'service'], message: `service "${r.service}" already has a redis entry` });
      withRedis.add(r.service);
    });
    const ids = new Set<string>();
    ops.schedules.forEach((s, i) => {
      if (ids.has(s.id)) ctx.addIssue({ code: 'custom', path: ['schedules', i, 'id'], message: `duplicate schedule id "${s.id}"` });
      ids.add(s.id);
      if (!s.cron === !s.everySeconds) {
        ctx.addIssue({ code: 'custom', path: ['schedules', i], message: 'give exactly one of cron or everySeconds' });
      }
    });
  });

export type DatabaseOpsConfig = z.output<typeof databaseOpsSchema>;
export type BackupsConfig = z.output<typeof backupsSchema>;
export type ScheduleConfig = z.output<typeof scheduleSchema>;
export type PitrConfig = z.output<typeof pitrSchema>;
export type VolumeConfig = z.output<typeof volumeSchema>;
export type ObjectStorageConfig = z.output<typeof objectStorageSchema>;
export type RedisOpsConfig = z.output<typeof redisOpsSchema>;
