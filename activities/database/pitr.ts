import { existsSync } from 'node:fs';
import { appendFile, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import pg from 'pg';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../common/errors.js';
import type { PitrConfig } from '../../common/database/config.js';
import type { ArchiveStatus, BaseBackupManifest, PitrWindow, WalRetention } from '../../common/database/types.js';
import { runCommand } from '../../lib/exec.js';
import { freePort } from '../../lib/local/index.js';
import { heartbeating } from '../context.js';
import type { ActivityDeps } from '../deps.js';
import { backupsConfig } from './backup-repo.js';
import { abs, asUser, MANIFEST, own, ownedDir, pitrConfig, type PitrDeps, readBase } from './pitr-files.js';
import { requireStore } from './backup-store.js';
import { deleteStoredBase, fetchStoredBase, ownTree, storedBases, uploadBaseBackup } from './base-store.js';
import { listWal, pruneWal, syncWal } from './wal-store.js';
import { commandFailure, countTables, databaseOfUrl, libpqEnv, pgBinDir, resolveDb, tool, withClient } from './pg.js';

/**
 * Point-in-time recovery for a cluster the project manages: base backups with
 * pg_basebackup, WAL from the archive that archive_command fills, recovery into a new data
 * directory on a spare port, then a switch of the data directories. Server processes run
 * as the cluster's OS user; client tools connect over TCP.
 */

const WAL_SEGMENT = /^[0-9A-F]{24}$/;
const MARKER = 'runbook-restore.json';




export function createPitrActivities(deps: ActivityDeps) {
  const d: PitrDeps = { ...deps, log: deps.logger.child({ family: 'database', part: 'pitr' }), osIds: new Map() };
  return {
    archiveStatus: (req: { database: string }) => archiveStatus(d, req),
    baseBackup: (req: { database: string; id: string; workflowId: string }) => baseBackup(d, req),
    uploadBaseBackup: (req: { database: string; id: string }) => uploadBaseBackup(d, req),
    baseRetention: (req: { database: string; protect: string }) => baseRetention(d, req),
    walRetention: (req: { database: string }) => walRetention(d, req),
    pitrWindow: (req: { database: string }) => pitrWindow(d, req),
    startRecovery: (req: RecoveryRequest) => startRecovery(d, req),
    waitRecovered: (req: { database: string; restoreId: string; port: number; timeoutSeconds: number }) => waitRecovered(d, req),
    countRecovered: (req: { database: string; port: number; tables: string[] }) => countRecovered(d, req),
    stopRecovered: (req: { database: string; restoreId: string; remove: boolean }) => stopRecovered(d, req),
    switchDataDir: (req: { database: string; restoreId: string; stamp: string }) => switchDataDir(d, req),
    removeOldDataDir: (req: { database: string; path: string }) => removeOldDataDir(d, req),
    notifyDr: (req: { subject: string; report: Record<string, unknown> }) => notifyDr(d, req),
    drillSources: (req: { database: string }) => drillSources(d, req),
  };
}

const bin = (deps: ActivityDeps) => pgBinDir(deps.config.databaseOps?.backups?.binDir, deps.configDir);
// runuser keeps the caller's cwd, which the server's user may not be allowed to enter.
const serverOpts = (d: PitrDeps) => ({ cwd: '/', logger: d.log });






/** Base backups with a manifest, here or (pitr[].objectStorage) in the store, oldest first. */
async function listBase(deps: ActivityDeps, c: PitrConfig): Promise<BaseBackupManifest[]> {
  const root = abs(deps, c.baseBackups);
  const out: BaseBackupManifest[] = [];
  if (existsSync(root)) {
    for (const id of await readdir(root)) {
      const m = await readBase(path.join(root, id));
      if (m) out.push(m);
    }
  }
  const ids = new Set(out.map((m) => m.id));
  if (c.objectStorage) out.push(...(await storedBases(deps, c)).filter((m) => !ids.has(m.id)));
  return out.sort((a, b) => a.endedAt.localeCompare(b.endedAt));
}

const pgCtl = (deps: ActivityDeps, c: PitrConfig, dataDir: string, ...args: string[]) => asUser(c, [tool(bin(deps), 'pg_ctl'), '-D', dataDir, ...args]);

/**
 * Whether a server runs in `dataDir`, as `pg_ctl status` answers it (postmaster.pid names a live
 * process) but read here: pg_ctl through runuser cost about 100 ms per check on a loaded machine,
 * and the switch asks three times. A process that exists but cannot be signalled counts as
 * running; a pid file that cannot be read is left to pg_ctl.
 */
async function running(d: PitrDeps, c: PitrConfig, dataDir: string): Promise<boolean> {
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) return false;
  let text: string;
  try {
    text = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    return runCommand(pgCtl(d, c, dataDir, 'status'), serverOpts(d)).then(() => true, () => false);
  }
  // A negative pid is a single-user server's.
  const pid = Math.abs(Number(text.split('\n')[0]!.trim()));
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The last lines of a server log, for an error message. */
async function logTail(file: string): Promise<string> {
  const tail = await readFile(file, 'utf8').catch(() => '');
  return tail.trim().split('\n').slice(-8).join('\n');
}

export async function archiveStatus(deps: ActivityDeps, req: { database: string }): Promise<ArchiveStatus> {
  const db = resolveDb(deps, req.database);
  return withClient(db.url, db.secrets, async (cl) => {
    const r = await cl.query<{ archived_count: string; failed_count: string; last_archived_wal: string | null; last_archived_time: Date | null; last_failed_time: Date | null }>(
      'SELECT archived_count, failed_count, last_archived_wal, last_archived_time, last_failed_time FROM pg_stat_archiver',
    );
    const a = r.rows[0]!;
    return {
      archivedCount: Number(a.archived_count),
      failedCount: Number(a.failed_count),
      lastArchivedWal: a.last_archived_wal,
      lastArchivedAt: a.last_archived_time?.toISOString() ?? null,
      lastFailedAt: a.last_failed_time?.toISOString() ?? null,
    };
  });
}

/** pg_basebackup (plain format, WAL streamed) into `<baseBackups>/<id>/data`; a finished id is returned as is. */
export async function baseBackup(d: PitrDeps, req: { database: string; id: string; workflowId: string }): Promise<BaseBackupManifest> {
  const c = pitrConfig(d, req.database);
  const db = resolveDb(d, req.database);
  const dir = path.join(abs(d, c.baseBackups), req.id);
  const done = await readBase(dir);
  if (done) return done;
  await rm(dir, { recursive: true, force: true });
  await ownedDir(d, c, abs(d, c.baseBackups));
  await ownedDir(d, c, dir);
  const startedAt = new Date().toISOString();
  const argv = asUser(c, [tool(bin(d), 'pg_basebackup'), '-D', path.join(dir, 'data'), '-Fp', '-X', 'stream', '-c', 'fast', '--no-password']);
  await heartbeating(
    () => ({ baseBackup: req.id }),
    (signal) => runCommand(argv, { ...serverOpts(d), env: libpqEnv(db.url), secrets: db.secrets, signal, timeoutMs: 6 * 3600_000 }),
  ).catch(commandFailure);
  const label = await readFile(path.join(dir, 'data', 'backup_label'), 'utf8');
  const m: BaseBackupManifest = {
    id: req.id,
    database: req.database,
    startedAt,
    endedAt: new Date().toISOString(),
    startLsn: /START WAL LOCATION: (\S+)/.exec(label)?.[1] ?? '',
    startWal: /START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)/.exec(label)?.[1],
    sizeBytes: 0,
    workflowId: req.workflowId,
  };
  const du = await runCommand(['du', '-sb', path.join(dir, 'data')]);
  m.sizeBytes = Number(du.stdout.split(/\s/)[0]);
  await writeFile(path.join(dir, MANIFEST), `${JSON.stringify(m, null, 2)}\n`);
  return m;
}

/** Keeps the newest databaseOps.pitr[].retention base backups. */
export async function baseRetention(deps: ActivityDeps, req: { database: string; protect: string }): Promise<string[]> {
  const c = pitrConfig(deps, req.database);
  const all = (await listBase(deps, c)).reverse();
  const doomed = all.slice(c.retention).filter((m) => m.id !== req.protect);
  for (const m of doomed) {
    await rm(path.join(abs(deps, c.baseBackups), m.id), { recursive: true, force: true });
    if (c.objectStorage) await deleteStoredBase(deps, c, m.id);
  }
  return doomed.map((m) => m.id);
}

/**
 * The store's share of base backup retention (the same policy, pitr[].retention, no approval: a
 * schedule runs it): archived WAL before the first segment of the oldest kept base backup is
 * deleted, as nothing can replay from there any more. It deletes nothing when it cannot tell what
 * is safe: no base backup kept, one without its start segment recorded, or a pg_basebackup in
 * progress on the cluster (a base backup not listed yet that may need older WAL).
 */
export async function walRetention(d: PitrDeps, req: { database: string }): Promise<WalRetention> {
  const c = pitrConfig(d, req.database);
  const none = (skipped: string, remaining = 0): WalRetention => ({ keepFrom: null, oldestBaseBackupId: null, deleted: 0, deletedBytes: 0, remaining, skipped });
  if (!c.objectStorage) return none('pitr[].objectStorage is off');
  const store = requireStore(d);
  const kept = await listBase(d, c);
  const count = async () => (await listWal(store, req.database)).length;
  if (kept.length === 0) return none('no base backup is kept', await count());
  const unknown = kept.find((b) => !b.startWal);
  if (unknown) return none(`base backup ${unknown.id} has no start segment in its manifest`, await count());
  const db = resolveDb(d, req.database);
  const inProgress = await withClient(db.url, db.secrets, async (cl) => Number((await cl.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_progress_basebackup')).rows[0]!.n)).catch(
    (err: unknown) => `the cluster cannot say whether a base backup is in progress (${(err as Error).message})`,
  );
  if (inProgress !== 0) return none(typeof inProgress === 'string' ? inProgress : 'a pg_basebackup is in progress on the cluster', await count());
  const oldest = kept.reduce((a, b) => (b.startWal!.slice(8) < a.startWal!.slice(8) ? b : a));
  let deleted = 0;
  const r = await heartbeating(
    () => ({ pruningWalBefore: oldest.startWal, deleted }),
    () => pruneWal(store, req.database, oldest.startWal!, (n) => (deleted = n)),
  );
  d.log.info({ database: req.database, keepFrom: oldest.startWal, deleted: r.deleted.length, remaining: r.remaining }, 'archived WAL before the oldest kept base backup deleted');
  return {
    keepFrom: oldest.startWal!,
    oldestBaseBackupId: oldest.id,
    deleted: r.deleted.length,
    deletedBytes: r.deleted.reduce((n, f) => n + f.size, 0),
    ...(r.deleted.length ? { firstDeleted: r.deleted[0]!.name, lastDeleted: r.deleted[r.deleted.length - 1]!.name } : {}),
    remaining: r.remaining,
  };
}

/** What can be recovered: base backups (oldest first) and the time of the newest archived WAL segment. */
export async function pitrWindow(deps: ActivityDeps, req: { database: string }): Promise<PitrWindow> {
  const c = pitrConfig(deps, req.database);
  const archive = abs(deps, c.walArchive);
  let last = 0;
  const names = new Set<string>();
  if (existsSync(archive)) {
    for (const f of await readdir(archive)) {
      if (!WAL_SEGMENT.test(f)) continue;
      names.add(f);
      last = Math.max(last, (await stat(path.join(archive, f))).mtimeMs);
    }
  }
  if (c.objectStorage) {
    for (const o of await listWal(requireStore(deps), req.database)) {
      if (!WAL_SEGMENT.test(o.name)) continue;
      names.add(o.name);
      last = Math.max(last, o.lastModified.getTime());
    }
  }
  const segments = names.size;
  const firstSegment = [...names].sort((a, b) => a.slice(8).localeCompare(b.slice(8)))[0] ?? null;
  return { backups: await listBase(deps, c), lastArchivedAt: last ? new Date(last).toISOString() : null, segments, firstSegment };
}

export interface RecoveryRequest {
  database: string;
  baseBackupId: string;
  restoreId: string;
  targetTime?: string;
}

/**
 * Copies a base backup into `<restoreDir>/<restoreId>`, configures recovery (restore_command
 * from the archive; recovery_target_time when given, else everything archived) and starts it
 * on a spare port with archiving off. A retry finds the server it already started.
 */
export async function startRecovery(d: PitrDeps, req: RecoveryRequest): Promise<{ dataDir: string; port: number }> {
  const c = pitrConfig(d, req.database);
  const restoreDir = abs(d, c.restoreDir);
  const dataDir = path.join(restoreDir, req.restoreId);
  const markerFile = path.join(restoreDir, `${req.restoreId}.${MARKER}`);
  if (existsSync(markerFile) && (await running(d, c, dataDir))) {
    return JSON.parse(await readFile(markerFile, 'utf8')) as { dataDir: string; port: number };
  }
  // A repeat replaces the scratch copy whole; a server an earlier attempt left running in it goes first.
  if (await running(d, c, dataDir)) await runCommand(pgCtl(d, c, dataDir, '-m', 'immediate', '-w', 'stop'), { ...serverOpts(d), timeoutMs: 180_000 }).catch(commandFailure);
  await rm(dataDir, { recursive: true, force: true });
  await rm(path.join(restoreDir, `${req.restoreId}.log`), { force: true });
  await ownedDir(d, c, restoreDir);
  const source = path.join(abs(d, c.baseBackups), req.baseBackupId, 'data');
  let walDir: string | undefined;
  if (c.objectStorage && !existsSync(source)) {
    await fetchStoredBase(d, c, req.database, req.baseBackupId, dataDir);
  } else {
    await heartbeating(
      () => ({ copying: req.baseBackupId }),
      (signal) => runCommand(asUser(c, ['cp', '-a', source, dataDir]), { ...serverOpts(d), signal, timeoutMs: 6 * 3600_000 }),
    ).catch(commandFailure);
  }
  if (c.objectStorage) {
    // AlphaPulse 5.2 step 3: the archived WAL from the store, from the base backup's first segment on.
    walDir = path.join(restoreDir, `${req.restoreId}.wal`);
    const startWal = (await listBase(d, c)).find((b) => b.id === req.baseBackupId)?.startWal;
    let got = { files: 0, bytes: 0 };
    await heartbeating(
      () => ({ fetchingWal: got.files, bytes: got.bytes }),
      () => syncWal(requireStore(d), req.database, walDir!, startWal, (files, bytes) => (got = { files, bytes })),
    );
    await ownTree(d, c, walDir);
  }
  await configureRecovery(d, c, dataDir, req.targetTime, walDir);
  const port = await freePort();
  const logFile = path.join(restoreDir, `${req.restoreId}.log`);
  await runCommand(
    pgCtl(d, c, dataDir, '-l', logFile, '-t', '60', '-o', `-p ${port} -k ${restoreDir} -c listen_addresses=127.0.0.1 -c archive_mode=off`, 'start'),
    { ...serverOpts(d), timeoutMs: 120_000 },
  ).catch(async (err: unknown) => {
    // Replay began (pg_ctl gave up waiting, or the server stopped before the target because the
    // archive lacks a segment): that is the recover step's to wait for or to report, with the log.
    if (/redo starts at|consistent recovery state reached/.test(await readFile(logFile, 'utf8').catch(() => ''))) return;
    throw ApplicationFailure.retryable(`${(err as Error).message}\nserver log:\n${await logTail(logFile)}`, ErrorTypes.CommandFailed);
  });
  await writeFile(markerFile, JSON.stringify({ dataDir, port }));
  return { dataDir, port };
}

/** Recovery settings (restore_command from the archive, the target time when given) and recovery.signal in a copied data directory. */
async function configureRecovery(d: PitrDeps, c: PitrConfig, dataDir: string, targetTime: string | undefined, walDir?: string): Promise<void> {
  const q = (v: string) => `'${v.replace(/'/g, "''")}'`;
  const archive = abs(d, c.walArchive);
  const fromStore = walDir ? ` || cp "${walDir}/%f" "%p"` : '';
  const settings = [
    '',
    '# added by durable-runbooks pitr-restore',
    `restore_command = ${q(`cp "${archive}/%f" "%p" 2>/dev/null${fromStore}`)}`,
    ...(targetTime ? [`recovery_target_time = ${q(pgTimestamp(targetTime))}`, `recovery_target_action = 'promote'`] : []),
    '',
  ];
  // A base backup of a cluster that was itself recovered carries that recovery's settings.
  await stripRecoverySettings(path.join(dataDir, 'postgresql.auto.conf'));
  await appendFile(path.join(dataDir, 'postgresql.auto.conf'), settings.join('\n'));
  await writeFile(path.join(dataDir, 'recovery.signal'), '');
  await own(d, c, path.join(dataDir, 'recovery.signal'));
  await rm(path.join(dataDir, 'postmaster.pid'), { force: true });
}

/** Polls until the recovered server has promoted; fails with its log when it stopped instead. */
export async function waitRecovered(d: PitrDeps, req: { database: string; restoreId: string; port: number; timeoutSeconds: number }): Promise<{ recoveredTo: string | null }> {
  const c = pitrConfig(d, req.database);
  const db = resolveDb(d, req.database);
  const dataDir = path.join(abs(d, c.restoreDir), req.restoreId);
  const ctx = Context.current();
  const deadline = Date.now() + req.timeoutSeconds * 1000;
  const url = urlOnPort(db.url, req.port);
  // One connection for all the polls (promotion keeps it open): a new one each time cost more
  // than the query on a loaded machine. Dropped and opened again after any error.
  let cl: pg.Client | undefined;
  const poll = async (): Promise<{ rec: boolean; ts: Date | null } | undefined> => {
    try {
      if (!cl) {
        cl = new pg.Client({ connectionString: url, application_name: 'durable-runbooks' });
        cl.on('error', () => undefined);
        await cl.connect();
      }
      return (await cl.query<{ rec: boolean; ts: Date | null }>('SELECT pg_is_in_recovery() AS rec, pg_last_xact_replay_timestamp() AS ts')).rows[0]!;
    } catch {
      await cl?.end().catch(() => undefined);
      cl = undefined;
      return undefined;
    }
  };
  try {
    for (;;) {
      ctx.heartbeat({ waiting: req.restoreId });
      const state = await poll();
      if (state && !state.rec) return { recoveredTo: state.ts?.toISOString() ?? null };
      if (!state && !(await running(d, c, dataDir))) {
        const tail = await logTail(path.join(abs(d, c.restoreDir), `${req.restoreId}.log`));
        const short = /recovery ended before configured recovery target was reached/.test(tail)
          ? ` before the target: the archive (${abs(d, c.walArchive)}${c.objectStorage ? ' and the object store' : ''}) lacks a WAL segment between the base backup and the target; put it back, then resume this run (runbook resume)`
          : '';
        throw ApplicationFailure.nonRetryable(`the recovering server stopped${short}: ${tail}`, 'RecoveryFailed');
      }
      if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`recovery not finished after ${req.timeoutSeconds}s`, 'RecoveryFailed');
      // By hand one asks every 100 ms or so; a coarser poll only lengthens the outage.
      await sleep(50, undefined, { signal: ctx.cancellationSignal });
    }
  } finally {
    await cl?.end().catch(() => undefined);
  }
}

/** Row counts in the recovered server: what the operator checks before switching. */
export async function countRecovered(deps: ActivityDeps, req: { database: string; port: number; tables: string[] }): Promise<Record<string, number>> {
  const db = resolveDb(deps, req.database);
  return withClient(urlOnPort(db.url, req.port), db.secrets, (cl) => countTables(cl, req.tables));
}

export async function stopRecovered(d: PitrDeps, req: { database: string; restoreId: string; remove: boolean }): Promise<void> {
  const c = pitrConfig(d, req.database);
  const dataDir = path.join(abs(d, c.restoreDir), req.restoreId);
  if (await running(d, c, dataDir)) await runCommand(pgCtl(d, c, dataDir, '-m', 'fast', '-w', '-t', '120', 'stop'), { ...serverOpts(d), timeoutMs: 180_000 }).catch(commandFailure);
  if (req.remove) {
    await rm(dataDir, { recursive: true, force: true });
    await rm(`${dataDir}.wal`, { recursive: true, force: true });
    await rm(path.join(abs(d, c.restoreDir), `${req.restoreId}.${MARKER}`), { force: true });
    await rm(path.join(abs(d, c.restoreDir), `${req.restoreId}.log`), { force: true });
  }
}

/**
 * Puts the recovered data directory in place of the live one (stopped by then), keeping the
 * old one beside it. Checks names before each rename, so a retry resumes where it stopped.
 */
export async function switchDataDir(d: PitrDeps, req: { database: string; restoreId: string; stamp: string }): Promise<{ oldDataDir: string }> {
  const c = pitrConfig(d, req.database);
  const live = abs(d, c.dataDir);
  const restored = path.join(abs(d, c.restoreDir), req.restoreId);
  const old = `${live}.pre-pitr-${req.stamp}`;
  if (await running(d, c, live)) {
    throw ApplicationFailure.nonRetryable(`the live cluster in ${live} is still running: stop its service first`, 'RecoveryFailed');
  }
  if (existsSync(restored)) {
    if (await running(d, c, restored)) await runCommand(pgCtl(d, c, restored, '-m', 'fast', '-w', 'stop'), { ...serverOpts(d), timeoutMs: 180_000 }).catch(commandFailure);
    // The promoted cluster no longer needs them, and its future base backups must not inherit them.
    await stripRecoverySettings(path.join(restored, 'postgresql.auto.conf'));
    if (existsSync(live) && !existsSync(old)) await rename(live, old);
    await rename(restored, live);
  }
  await rm(`${restored}.wal`, { recursive: true, force: true });
  await rm(path.join(abs(d, c.restoreDir), `${req.restoreId}.${MARKER}`), { force: true });
  await rm(path.join(abs(d, c.restoreDir), `${req.restoreId}.log`), { force: true });
  return { oldDataDir: old };
}

export async function removeOldDataDir(deps: ActivityDeps, req: { database: string; path: string }): Promise<boolean> {
  const c = pitrConfig(deps, req.database);
  if (!req.path.startsWith(`${abs(deps, c.dataDir)}.pre-pitr-`)) {
    throw ApplicationFailure.nonRetryable(`refusing to remove ${req.path}: not a pre-PITR copy of ${abs(deps, c.dataDir)}`, ErrorTypes.InvalidInput);
  }
  await rm(req.path, { recursive: true, force: true });
  return true;
}

/** POSTs a JSON report to the DR webhook; returns false when none is configured. */
export async function notifyDr(d: PitrDeps, req: { subject: string; report: Record<string, unknown> }): Promise<boolean> {
  const url = d.config.databaseOps?.disasterRecovery.notifyUrl;
  if (!url) {
    d.log.warn({ ...req }, 'DR objective missed (no databaseOps.disasterRecovery.notifyUrl to notify)');
    return false;
  }
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req) });
  if (!res.ok) throw new Error(`DR notification to ${url} answered ${res.status}`);
  return true;
}

/** Whether logical backups are configured too (the drill restores both kinds when they are). */
export async function drillSources(deps: ActivityDeps, req: { database: string }): Promise<{ logical: boolean; pitr: boolean }> {
  let logical = true;
  try {
    backupsConfig(deps);
  } catch {
    logical = false;
  }
  return { logical, pitr: Boolean(deps.config.databaseOps?.pitr.some((p) => p.database === req.database)) };
}

async function stripRecoverySettings(file: string): Promise<void> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const kept = text.split('\n').filter((l) => !/^\s*(restore_command|recovery_target\w*)\s*=/.test(l) && l !== '# added by durable-runbooks pitr-restore');
  await writeFile(file, kept.join('\n'));
}

/** PostgreSQL's timestamptz input does not take ISO 8601's "T…Z" form in recovery_target_time. */
function pgTimestamp(iso: string): string {
  return new Date(iso).toISOString().replace('T', ' ').replace('Z', '+00');
}

function urlOnPort(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  u.pathname = `/${encodeURIComponent(databaseOfUrl(url))}`;
  return u.toString();
}

