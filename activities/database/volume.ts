import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../common/errors.js';
import type { VolumeConfig } from '../../common/database/config.js';
import type { TableCount, VolumeBackupManifest, VolumePlan, VolumeTarball } from '../../common/database/types.js';
import { heartbeating } from '../context.js';
import { tailLines } from '../../lib/exec.js';
import type { ActivityDeps, LoggingDeps } from '../deps.js';
import { invoke, invokeForAnswer } from '../drivers/support.js';
import { checksum } from './backup.js';
import { listTarball } from './tarball.js';
import { countTables, databaseNamed, resolveDb, withClient } from './pg.js';

/**
 * The Fulcrum runbook's Docker-volume variant ("stop, restore the volume from a tarball,
 * start"): tarballs of the volume that holds a database's data directory, made and unpacked
 * by a throwaway container while the database's compose service is stopped. Every docker
 * command is an argv (never a shell); names come from the validated config, ids are checked.
 *
 * `<repository>/<database>/<id>.tar.gz` with `<id>.tar.gz.sha256` (sha256sum format) beside
 * it, and `<id>.json` when db-backup made it. The repository is bind-mounted into the
 * container, so it must be a directory on the Docker host (the worker runs there).
 */

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const TAR = '.tar.gz';
export const PRE_RESTORE = 'pre-restore-';
/** Ids db-backup gives its tarballs (`<UTC time>-<run>`): only those are subject to retention. */
const TAKEN_BY_BACKUP = /^\d{8}T\d{6}Z-[a-z0-9]+$/;

function invalid(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ErrorTypes.InvalidInput);
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

/** The first field of a `sha256sum` line, or undefined when the file holds no sha256. */
function parseSha256File(text: string): string | undefined {
  const first = text.trim().split(/\s+/)[0]?.toLowerCase();
  return first && /^[0-9a-f]{64}$/.test(first) ? first : undefined;
}

export type VolumeDeps = LoggingDeps;

export function createVolumeActivities(deps: ActivityDeps) {
  const d: VolumeDeps = { ...deps, log: deps.logger.child({ family: 'database', variant: 'docker-volume' }) };
  return {
    volumePlan: (req: { database: string }) => volumePlan(d, req),
    checkVolumeTarball: (req: { database: string; backupId?: string }) => checkVolumeTarball(d, req),
    countDatabaseTables: (req: { database: string; tables: string[] }) => countDatabaseTables(d, req),
    tarVolume: (req: TarRequest) => tarVolume(d, req),
    untarVolume: (req: { database: string; backupId: string }) => untarVolume(d, req),
    volumeRetention: (req: { database: string; keep: number; protect: string }) => volumeRetention(d, req),
    verifyVolumeRestore: (req: { database: string; tables: string[]; expected: Record<string, number> }) => verifyVolumeRestore(d, req),
  };
}

type PlanWithTimeout = VolumePlan & { timeoutMs: number };

function volumeEntry(deps: ActivityDeps, database: string): VolumeConfig {
  const volumes = deps.config.databaseOps?.volumes ?? [];
  const found = volumes.find((v) => v.database === database);
  if (!found) {
    throw ApplicationFailure.nonRetryable(
      `databaseOps.volumes has no entry for database ${database}: add { database: ${database}, volume: <docker volume>, repository: <directory> } to use mode docker-volume`,
      ErrorTypes.InvalidConfig,
    );
  }
  return found;
}

function planFor(deps: ActivityDeps, database: string): PlanWithTimeout {
  const db = databaseNamed(deps, database);
  const cfg = volumeEntry(deps, database);
  if (!db.service) {
    throw ApplicationFailure.nonRetryable(
      `databases.${db.name}.service is not set: mode docker-volume stops and starts the database through its compose service`,
      ErrorTypes.InvalidConfig,
    );
  }
  const svc = deps.config.services.find((s) => s.name === db.service);
  if (svc?.driver.type !== 'compose') {
    throw ApplicationFailure.nonRetryable(
      `services.${db.service}.driver.type is ${svc?.driver.type ?? '(no such service)'}: mode docker-volume needs the compose driver, whose project owns the volume ${cfg.volume}`,
      ErrorTypes.InvalidConfig,
    );
  }
  return {
    database: db.name,
    service: db.service,
    volume: cfg.volume,
    dir: path.join(path.resolve(deps.configDir, cfg.repository), db.name),
    image: cfg.image,
    keepCurrent: cfg.keepCurrent,
    retention: cfg.retention,
    timeoutMs: cfg.timeoutSeconds * 1000,
  };
}

/**
 * `docker run` of the tar image with the volume at /data and, when asked, the repository at
 * /backup. Mounts say `ro`, which Docker and podman both accept (podman refuses `readonly`).
 * No `--rm`: see runContainer.
 */
export function container(p: VolumePlan, name: string, mounts: Mounts, command: string[]): string[] {
  return [
    'docker',
    'run',
    '--name',
    name,
    // The container only moves bytes between two mounts.
    '--network',
    'none',
    '--mount',
    `type=volume,source=${p.volume},target=/data${mounts.data === 'ro' ? ',ro' : ''}`,
    ...(mounts.backup ? ['--mount', `type=bind,source=${p.dir},target=/backup${mounts.backup === 'ro' ? ',ro' : ''}`] : []),
    p.image,
    ...command,
  ];
}

interface Mounts {
  data: 'ro' | 'rw';
  backup?: 'ro' | 'rw';
}

/**
 * The throwaway container's name: the same for every attempt of one activity, so a retry
 * (after its worker was killed, say) finds and removes what the last attempt left running.
 */
export function containerName(purpose: string): string {
  const info = Context.current().info;
  const key = `${info.workflowExecution?.workflowId}/${info.workflowExecution?.runId}/${info.activityId}/${purpose}`;
  return `runbook-${purpose}-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

const QUERY_TIMEOUT_MS = 60_000;

/**
 * An exit code of tar or find itself: the same archive fails the same way again, so the step is
 * not retried (a retry would only empty the volume again). 125 is the engine's own error, 126
 * and 127 a command that could not run, 128 and above a signal (the OOM killer, say): retried.
 */
function commandsOwn(code: number): boolean {
  return code >= 1 && code <= 124;
}

function ownFailure(err: unknown): err is ApplicationFailure {
  const exitCode = (err as ApplicationFailure | undefined)?.details?.[0] as { exitCode?: unknown } | undefined;
  return err instanceof ApplicationFailure && err.type === ErrorTypes.CommandFailed && typeof exitCode?.exitCode === 'number' && commandsOwn(exitCode.exitCode);
}

/**
 * Runs a throwaway container and reads its exit code back from the engine: through podman's
 * Docker API (before podman 4.6) `docker run --rm` exits 0 even when the command failed, so
 * the exit status of `docker run` alone cannot say that a tarball was written or unpacked.
 */
async function runContainer(d: VolumeDeps, p: PlanWithTimeout, purpose: string, mounts: Mounts, command: string[], what: string): Promise<string> {
  const name = containerName(purpose);
  const base = { env: d.env, logger: d.log, configDir: d.configDir };
  const remove = (signal?: AbortSignal) => invokeForAnswer({ argv: ['docker', 'rm', '--force', name], timeoutMs: QUERY_TIMEOUT_MS }, { ...base, signal }, `removing container ${name}`);
  return heartbeating(
    () => ({ running: `${purpose} of volume ${p.volume}`, container: name }),
    async (signal) => {
      const ctx = { ...base, signal };
      // An earlier attempt may have left its container behind, still running if its worker was killed.
      await remove(signal);
      try {
        const run = await invoke({ argv: container(p, name, mounts, command), timeoutMs: p.timeoutMs }, ctx, what).catch((err: unknown) => {
          throw ownFailure(err) ? ApplicationFailure.create({ type: err.type ?? ErrorTypes.CommandFailed, message: err.message, details: err.details ?? [], nonRetryable: true }) : err;
        });
        const { stdout } = await invoke({ argv: ['docker', 'inspect', '--format', '{{.State.ExitCode}}', name], timeoutMs: QUERY_TIMEOUT_MS }, ctx, `exit code of container ${name}`);
        const code = Number(stdout.trim());
        if (stdout.trim() === '' || code !== 0) {
          throw ApplicationFailure.create({
            type: ErrorTypes.CommandFailed,
            message: `${what}: the container exited with ${stdout.trim() || 'no exit code'} although docker run exited 0: ${tailLines(`${run.stdout}\n${run.stderr}`.trim(), 5) || 'no output'}`,
            details: [{ command: run.command, exitCode: Number.isInteger(code) ? code : null, stderrTail: tailLines(run.stderr, 20), timedOut: false, notFound: false }],
            nonRetryable: Number.isInteger(code) && commandsOwn(code),
          });
        }
        return run.command;
      } finally {
        await remove().catch((err: unknown) => d.log.warn({ err, container: name }, 'could not remove the throwaway container'));
      }
    },
  );
}

async function readVolumeManifest(dir: string, id: string): Promise<VolumeBackupManifest | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, `${id}.json`), 'utf8')) as VolumeBackupManifest;
  } catch {
    return undefined;
  }
}

/** What the docker-volume mode needs from the config; fails naming the field when it cannot work. */
export async function volumePlan(deps: ActivityDeps, req: { database: string }): Promise<VolumePlan> {
  const { timeoutMs: _t, ...plan } = planFor(deps, req.database);
  return plan;
}

/** The id of the tarball a restore uses: the given one (which must exist), else the newest not made by a restore. */
async function pickTarball(p: VolumePlan, backupId: string | undefined): Promise<string> {
  const names = existsSync(p.dir) ? (await readdir(p.dir)).filter((f) => f.endsWith(TAR)) : [];
  if (backupId !== undefined) {
    if (!ID.test(backupId)) throw invalid(`backupId: "${backupId}" is not a tarball id (letters, digits, ".", "_", "-"; the file name without ${TAR})`);
    if (!names.includes(`${backupId}${TAR}`)) {
      throw invalid(`backupId: no tarball ${backupId}${TAR} in ${p.dir} (have: ${names.map((n) => n.slice(0, -TAR.length)).join(', ') || 'none'}); nothing was stopped`);
    }
    return backupId;
  }
  const candidates = await Promise.all(
    names
      .filter((n) => !n.startsWith(PRE_RESTORE) && ID.test(n.slice(0, -TAR.length)))
      .map(async (n) => ({ id: n.slice(0, -TAR.length), mtime: (await stat(path.join(p.dir, n))).mtimeMs })),
  );
  const newest = candidates.sort((a, b) => b.mtime - a.mtime || b.id.localeCompare(a.id))[0];
  if (!newest) {
    throw invalid(`no volume tarball of ${p.database} in ${p.dir}: run db-backup with mode docker-volume, or put <name>${TAR} and its .sha256 there; nothing was stopped`);
  }
  return newest.id;
}

/**
 * The tarball a restore uses (the given id, else the newest not made by a restore) with its
 * checksum checked against `<id>.tar.gz.sha256`. Runs before anything is stopped.
 */
export interface CheckedVolumeTarball extends VolumeTarball {
  /** Read from the archive itself: gunzipped to its end, its tar headers walked. */
  entries: number;
  /** PG_VERSION of the data directory in it, and where ('.' for the archive's root). */
  pgVersion: string;
  pgDataDir: string;
}

export async function checkVolumeTarball(deps: ActivityDeps, req: { database: string; backupId?: string }): Promise<CheckedVolumeTarball> {
  const p = planFor(deps, req.database);
  const id = await pickTarball(p, req.backupId);
  const file = path.join(p.dir, `${id}${TAR}`);
  const sumText = await readFile(`${file}.sha256`, 'utf8').catch(() => undefined);
  const expected = sumText === undefined ? undefined : parseSha256File(sumText);
  if (!expected) {
    throw ApplicationFailure.nonRetryable(
      `${file} has no usable checksum file ${path.basename(file)}.sha256: after checking the tarball, write one with \`sha256sum ${path.basename(file)} > ${path.basename(file)}.sha256\`; nothing was stopped`,
      'BackupInvalid',
    );
  }
  const actual = await heartbeating(() => ({ checksum: id }), () => checksum(file));
  if (actual !== expected) {
    throw ApplicationFailure.nonRetryable(
      `tarball ${file} is corrupt or was changed: its sha256 ${actual} differs from ${path.basename(file)}.sha256 (${expected}); nothing was stopped`,
      'BackupInvalid',
    );
  }
  // A checksum written after the damage (a truncated copy summed again) passes: read the archive itself too.
  const listing = await heartbeating(() => ({ listing: id }), () => listTarball(file)).catch((err: unknown) => {
    throw ApplicationFailure.nonRetryable(`tarball ${file} cannot be read to its end (${err instanceof Error ? err.message : String(err)}): it is truncated or not a gzip-compressed tar; nothing was stopped`, 'BackupInvalid');
  });
  if (!listing.complete) {
    throw ApplicationFailure.nonRetryable(`tarball ${file} is truncated: its tar stream ends inside an entry (${listing.entries} entries read); nothing was stopped`, 'BackupInvalid');
  }
  if (listing.pgVersion === undefined) {
    throw ApplicationFailure.nonRetryable(`tarball ${file} holds no PostgreSQL data directory (PG_VERSION beside global/pg_control) in its ${listing.entries} entries; nothing was stopped`, 'BackupInvalid');
  }
  const manifest = await readVolumeManifest(p.dir, id);
  return {
    id,
    file: `${id}${TAR}`,
    sizeBytes: (await stat(file)).size,
    sha256: actual,
    rowCounts: manifest?.rowCounts ?? {},
    entries: listing.entries,
    pgVersion: listing.pgVersion,
    pgDataDir: listing.pgDataDir ?? '.',
  };
}

/** Row counts of `tables` in the live database (-1 for a table that does not exist). */
export async function countDatabaseTables(deps: ActivityDeps, req: { database: string; tables: string[] }): Promise<Record<string, number>> {
  const db = resolveDb(deps, req.database);
  return withClient(db.url, db.secrets, (c) => countTables(c, req.tables));
}

export interface TarRequest {
  database: string;
  id: string;
  workflowId: string;
  rowCounts: Record<string, number>;
  startedAt: string;
}

/**
 * `tar czf` of the whole volume into `<id>.tar.gz` (written as `.partial`, renamed when
 * complete), then its `.sha256` and `<id>.json`. The database must be stopped. A retry
 * finds a finished tarball by its manifest and does nothing.
 */
export async function tarVolume(d: VolumeDeps, req: TarRequest): Promise<{ manifest: VolumeBackupManifest; commands: string[] }> {
  const p = planFor(d, req.database);
  if (!ID.test(req.id)) throw invalid(`tarball id "${req.id}" is not valid`);
  const done = await readVolumeManifest(p.dir, req.id);
  if (done) return { manifest: done, commands: [] };
  await mkdir(p.dir, { recursive: true });
  const name = `${req.id}${TAR}`;
  const partial = path.join(p.dir, `${name}.partial`);
  await rm(partial, { force: true });
  const command = await runContainer(d, p, 'tar', { data: 'ro', backup: 'rw' }, ['tar', '--numeric-owner', '-czf', `/backup/${name}.partial`, '-C', '/data', '.'], `tar of volume ${p.volume}`);
  if (!existsSync(partial)) {
    throw ApplicationFailure.nonRetryable(
      `docker run reported success but ${partial} does not exist: databaseOps.volumes repository must be a directory on the Docker host, where the worker runs`,
      ErrorTypes.InvalidConfig,
    );
  }
  const file = path.join(p.dir, name);
  await rename(partial, file);
  const sha256 = await heartbeating(() => ({ checksum: req.id }), () => checksum(file));
  await writeAtomically(`${file}.sha256`, `${sha256}  ${name}\n`);
  const manifest: VolumeBackupManifest = {
    id: req.id,
    database: p.database,
    volume: p.volume,
    file: name,
    sizeBytes: (await stat(file)).size,
    sha256,
    startedAt: req.startedAt,
    endedAt: new Date().toISOString(),
    rowCounts: req.rowCounts,
    workflowId: req.workflowId,
  };
  await writeAtomically(path.join(p.dir, `${req.id}.json`), `${JSON.stringify(manifest, null, 2)}\n`);
  d.log.info({ database: p.database, id: req.id, sizeBytes: manifest.sizeBytes }, 'volume tarball written');
  return { manifest, commands: [command] };
}

/**
 * Empties the volume and unpacks the tarball into it, each in a throwaway container. The
 * database must be stopped. Repeating it gives the same volume, so a retry is safe.
 */
export async function untarVolume(d: VolumeDeps, req: { database: string; backupId: string }): Promise<{ commands: string[] }> {
  const p = planFor(d, req.database);
  if (!ID.test(req.backupId)) throw invalid(`backupId: "${req.backupId}" is not a tarball id`);
  const name = `${req.backupId}${TAR}`;
  if (!existsSync(path.join(p.dir, name))) throw invalid(`backupId: no tarball ${name} in ${p.dir}`);
  // Files of the old data directory left beside the restored ones would corrupt the cluster.
  const wipe = await runContainer(d, p, 'wipe', { data: 'rw' }, ['find', '/data', '-mindepth', '1', '-delete'], `emptying volume ${p.volume}`);
  // Owners by number: the data directory's user (postgres, 999 in the official image) may have another number, or none, in the tar image.
  const unpack = await runContainer(d, p, 'untar', { data: 'rw', backup: 'ro' }, ['tar', '--numeric-owner', '-xzf', `/backup/${name}`, '-C', '/data'], `restoring volume ${p.volume}`);
  return { commands: [wipe, unpack] };
}

/** Keeps the newest `keep` tarballs db-backup made; hand-made and pre-restore tarballs are never deleted. */
export async function volumeRetention(deps: ActivityDeps, req: { database: string; keep: number; protect: string }): Promise<string[]> {
  const p = planFor(deps, req.database);
  if (!existsSync(p.dir)) return [];
  const ids = (await readdir(p.dir))
    .filter((f) => f.endsWith(TAR) && TAKEN_BY_BACKUP.test(f.slice(0, -TAR.length)))
    .map((f) => f.slice(0, -TAR.length))
    .sort()
    .reverse();
  const doomed = ids.slice(req.keep).filter((id) => id !== req.protect);
  for (const id of doomed) {
    for (const f of [`${id}${TAR}`, `${id}${TAR}.sha256`, `${id}.json`]) await rm(path.join(p.dir, f), { force: true });
  }
  return doomed;
}

/** Row counts after a restore against what the tarball's manifest recorded (a table without a record only has to exist). */
export async function verifyVolumeRestore(deps: ActivityDeps, req: { database: string; tables: string[]; expected: Record<string, number> }): Promise<TableCount[]> {
  const tables = [...new Set([...req.tables, ...Object.keys(req.expected)])];
  const actual = await countDatabaseTables(deps, { database: req.database, tables });
  return tables.map((table) => ({ table, actual: actual[table]!, expected: req.expected[table] ?? Math.max(actual[table]!, 0) }));
}
