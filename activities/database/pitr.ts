import { existsSync } from 'node:fs';
import { appendFile, chown, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../common/errors.js';
import type { PitrConfig } from '../../common/database/config.js';
import type { ArchiveStatus, BaseBackupManifest, PitrWindow } from '../../common/database/types.js';
import { runCommand } from '../../lib/exec.js';
import { freePort } from '../../lib/local/index.js';
import type { ActivityDeps } from '../deps.js';
import { backupsConfig } from './backup.js';
import { commandFailure, databaseOfUrl, heartbeating, libpqEnv, pgBinDir, quoteTable, resolveDb, tool, withClient } from './pg.js';

/**
 * Point-in-time recovery for a cluster the project manages: base backups with
 * pg_basebackup, WAL from the archive that archive_command fills, recovery into a new data
 * directory on a spare port, then a switch of the data directories. Server processes run
 * as the cluster's OS user; client tools connect over TCP.
 */

const WAL_SEGMENT = /^[0-9A-F]{24}$/;
const MANIFEST = 'manifest.json';
const MARKER = 'runbook-restore.json';

const isRoot = () => process.getuid?.() === 0;

export function pitrConfig(deps: ActivityDeps, database: string): PitrConfig {
  const c = deps.config.databaseOps?.pitr.find((p) => p.database === database);
  if (!c) {
    throw ApplicationFailure.nonRetryable(
      `database ${database} has no databaseOps.pitr entry: add one with dataDir, walArchive, baseBackups and restoreDir`,
      ErrorTypes.InvalidConfig,
    );
  }
  return c;
}

export function createPitrActivities(deps: ActivityDeps) {
  const log = deps.logger.child({ family: 'database', part: 'pitr' });
  const abs = (p: string) => path.resolve(deps.configDir, p);
  const bin = () => pgBinDir(deps.config.databaseOps?.backups?.binDir, deps.configDir);
  const ids = new Map<string, { uid: number; gid: number }>();

  const osIds = async (user: string) => {
    let v = ids.get(user);
    if (!v) {
      const [u, g] = await Promise.all([runCommand(['id', '-u', user]), runCommand(['id', '-g', user])]);
      v = { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
      ids.set(user, v);
    }
    return v;
  };
  /** PostgreSQL refuses to run as root: server-side programs run as the cluster's user. */
  const asUser = (c: PitrConfig, argv: string[]) => (isRoot() ? ['runuser', '-u', c.osUser, '--', ...argv] : argv);
  const own = async (c: PitrConfig, p: string) => {
    if (!isRoot()) return;
    const { uid, gid } = await osIds(c.osUser);
    await chown(p, uid, gid);
  };
  const ownedDir = async (c: PitrConfig, p: string) => {
    await mkdir(p, { recursive: true, mode: 0o700 });
    await own(c, p);
  };
  // runuser keeps the caller's cwd, which the server's user may not be allowed to enter.
  const serverOpts = { cwd: '/', logger: log };

  const readBase = async (dir: string): Promise<BaseBackupManifest | undefined> => {
    try {
      return JSON.parse(await readFile(path.join(dir, MANIFEST), 'utf8')) as BaseBackupManifest;
    } catch {
      return undefined;
    }
  };

  const listBase = async (c: PitrConfig): Promise<BaseBackupManifest[]> => {
    const root = abs(c.baseBackups);
    if (!existsSync(root)) return [];
    const out: BaseBackupManifest[] = [];
    for (const id of await readdir(root)) {
      const m = await readBase(path.join(root, id));
      if (m) out.push(m);
    }
    return out.sort((a, b) => a.endedAt.localeCompare(b.endedAt));
  };

  const pgCtl = (c: PitrConfig, dataDir: string, ...args: string[]) => asUser(c, [tool(bin(), 'pg_ctl'), '-D', dataDir, ...args]);

  const running = async (c: PitrConfig, dataDir: string) =>
    existsSync(path.join(dataDir, 'PG_VERSION')) && (await runCommand(pgCtl(c, dataDir, 'status'), serverOpts).then(() => true, () => false));

  return {
    async archiveStatus(req: { database: string }): Promise<ArchiveStatus> {
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
    },

    /** pg_basebackup (plain format, WAL streamed) into `<baseBackups>/<id>/data`; a finished id is returned as is. */
    async baseBackup(req: { database: string; id: string; workflowId: string }): Promise<BaseBackupManifest> {
      const c = pitrConfig(deps, req.database);
      const db = resolveDb(deps, req.database);
      const dir = path.join(abs(c.baseBackups), req.id);
      const done = await readBase(dir);
      if (done) return done;
      await rm(dir, { recursive: true, force: true });
      await ownedDir(c, abs(c.baseBackups));
      await ownedDir(c, dir);
      const startedAt = new Date().toISOString();
      const argv = asUser(c, [tool(bin(), 'pg_basebackup'), '-D', path.join(dir, 'data'), '-Fp', '-X', 'stream', '-c', 'fast', '--no-password']);
      await heartbeating(
        () => ({ baseBackup: req.id }),
        (signal) => runCommand(argv, { ...serverOpts, env: libpqEnv(db.url), secrets: db.secrets, signal, timeoutMs: 6 * 3600_000 }),
      ).catch(commandFailure);
      const label = await readFile(path.join(dir, 'data', 'backup_label'), 'utf8');
      const m: BaseBackupManifest = {
        id: req.id,
        database: req.database,
        startedAt,
        endedAt: new Date().toISOString(),
        startLsn: /START WAL LOCATION: (\S+)/.exec(label)?.[1] ?? '',
        sizeBytes: 0,
        workflowId: req.workflowId,
      };
      const du = await runCommand(['du', '-sb', path.join(dir, 'data')]);
      m.sizeBytes = Number(du.stdout.split(/\s/)[0]);
      await writeFile(path.join(dir, MANIFEST), `${JSON.stringify(m, null, 2)}\n`);
      return m;
    },

    /** Keeps the newest databaseOps.pitr[].retention base backups. */
    async baseRetention(req: { database: string; protect: string }): Promise<string[]> {
      const c = pitrConfig(deps, req.database);
      const all = (await listBase(c)).reverse();
      const doomed = all.slice(c.retention).filter((m) => m.id !== req.protect);
      for (const m of doomed) await rm(path.join(abs(c.baseBackups), m.id), { recursive: true, force: true });
      return doomed.map((m) => m.id);
    },

    /** What can be recovered: base backups (oldest first) and the time of the newest archived WAL segment. */
    async pitrWindow(req: { database: string }): Promise<PitrWindow> {
      const c = pitrConfig(deps, req.database);
      const archive = abs(c.walArchive);
      let last = 0;
      let segments = 0;
      if (existsSync(archive)) {
        for (const f of await readdir(archive)) {
          if (!WAL_SEGMENT.test(f)) continue;
          segments += 1;
          last = Math.max(last, (await stat(path.join(archive, f))).mtimeMs);
        }
      }
      return { backups: await listBase(c), lastArchivedAt: last ? new Date(last).toISOString() : null, segments };
    },

    /**
     * Copies a base backup into `<restoreDir>/<restoreId>`, configures recovery (restore_command
     * from the archive; recovery_target_time when given, else everything archived) and starts it
     * on a spare port with archiving off. A retry finds the server it already started.
     */
    async startRecovery(req: { database: string; baseBackupId: string; restoreId: string; targetTime?: string }): Promise<{ dataDir: string; port: number }> {
      const c = pitrConfig(deps, req.database);
      const dataDir = path.join(abs(c.restoreDir), req.restoreId);
      const markerFile = path.join(abs(c.restoreDir), `${req.restoreId}.${MARKER}`);
      if (existsSync(markerFile) && (await running(c, dataDir))) {
        return JSON.parse(await readFile(markerFile, 'utf8')) as { dataDir: string; port: number };
      }
      await rm(dataDir, { recursive: true, force: true });
      await ownedDir(c, abs(c.restoreDir));
      const source = path.join(abs(c.baseBackups), req.baseBackupId, 'data');
      await heartbeating(
        () => ({ copying: req.baseBackupId }),
        (signal) => runCommand(asUser(c, ['cp', '-a', source, dataDir]), { ...serverOpts, signal, timeoutMs: 6 * 3600_000 }),
      ).catch(commandFailure);
      const q = (v: string) => `'${v.replace(/'/g, "''")}'`;
      const archive = abs(c.walArchive);
      const settings = [
        '',
        '# added by durable-runbooks pitr-restore',
        `restore_command = ${q(`cp "${archive}/%f" "%p"`)}`,
        ...(req.targetTime ? [`recovery_target_time = ${q(pgTimestamp(req.targetTime))}`, `recovery_target_action = 'promote'`] : []),
        '',
      ];
      // A base backup of a cluster that was itself recovered carries that recovery's settings.
      await stripRecoverySettings(path.join(dataDir, 'postgresql.auto.conf'));
      await appendFile(path.join(dataDir, 'postgresql.auto.conf'), settings.join('\n'));
      await writeFile(path.join(dataDir, 'recovery.signal'), '');
      await own(c, path.join(dataDir, 'recovery.signal'));
      await rm(path.join(dataDir, 'postmaster.pid'), { force: true });
      const port = await freePort();
      const logFile = path.join(abs(c.restoreDir), `${req.restoreId}.log`);
      await runCommand(
        pgCtl(c, dataDir, '-l', logFile, '-t', '60', '-o', `-p ${port} -k ${abs(c.restoreDir)} -c listen_addresses=127.0.0.1 -c archive_mode=off`, 'start'),
        { ...serverOpts, timeoutMs: 120_000 },
      ).catch(async (err: unknown) => {
        const tail = await readFile(logFile, 'utf8').catch(() => '');
        throw ApplicationFailure.retryable(`${(err as Error).message}\nserver log:\n${tail.trim().split('\n').slice(-8).join('\n')}`, ErrorTypes.CommandFailed);
      });
      await writeFile(markerFile, JSON.stringify({ dataDir, port }));
      return { dataDir, port };
    },

    /** Polls until the recovered server has promoted; fails with its log when it stopped instead. */
    async waitRecovered(req: { database: string; restoreId: string; port: number; timeoutSeconds: number }): Promise<{ recoveredTo: string | null }> {
      const c = pitrConfig(deps, req.database);
      const db = resolveDb(deps, req.database);
      const dataDir = path.join(abs(c.restoreDir), req.restoreId);
      const ctx = Context.current();
      const deadline = Date.now() + req.timeoutSeconds * 1000;
      const url = urlOnPort(db.url, req.port);
      for (;;) {
        ctx.heartbeat({ waiting: req.restoreId });
        const state = await withClient(url, db.secrets, async (cl) => {
          const r = await cl.query<{ rec: boolean; ts: Date | null }>('SELECT pg_is_in_recovery() AS rec, pg_last_xact_replay_timestamp() AS ts');
          return r.rows[0]!;
        }).catch(() => undefined);
        if (state && !state.rec) return { recoveredTo: state.ts?.toISOString() ?? null };
        if (!state && !(await running(c, dataDir))) {
          const tail = await readFile(path.join(abs(c.restoreDir), `${req.restoreId}.log`), 'utf8').catch(() => '');
          throw ApplicationFailure.nonRetryable(`the recovering server stopped: ${tail.trim().split('\n').slice(-8).join('\n')}`, 'RecoveryFailed');
        }
        if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`recovery not finished after ${req.timeoutSeconds}s`, 'RecoveryFailed');
        await sleep(300, undefined, { signal: ctx.cancellationSignal });
      }
    },

    /** Row counts in the recovered server: what the operator checks before switching. */
    async countRecovered(req: { database: string; port: number; tables: string[] }): Promise<Record<string, number>> {
      const db = resolveDb(deps, req.database);
      return withClient(urlOnPort(db.url, req.port), db.secrets, async (cl) => {
        const out: Record<string, number> = {};
        for (const t of req.tables) {
          const exists = await cl.query<{ r: string | null }>('SELECT to_regclass($1) AS r', [quoteTable(cl, t)]);
          out[t] = exists.rows[0]?.r ? Number((await cl.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteTable(cl, t)}`)).rows[0]!.n) : -1;
        }
        return out;
      });
    },

    async stopRecovered(req: { database: string; restoreId: string; remove: boolean }): Promise<void> {
      const c = pitrConfig(deps, req.database);
      const dataDir = path.join(abs(c.restoreDir), req.restoreId);
      if (await running(c, dataDir)) await runCommand(pgCtl(c, dataDir, '-m', 'fast', '-w', '-t', '120', 'stop'), { ...serverOpts, timeoutMs: 180_000 }).catch(commandFailure);
      if (req.remove) {
        await rm(dataDir, { recursive: true, force: true });
        await rm(path.join(abs(c.restoreDir), `${req.restoreId}.${MARKER}`), { force: true });
        await rm(path.join(abs(c.restoreDir), `${req.restoreId}.log`), { force: true });
      }
    },

    /**
     * Puts the recovered data directory in place of the live one (stopped by then), keeping the
     * old one beside it. Checks names before each rename, so a retry resumes where it stopped.
     */
    async switchDataDir(req: { database: string; restoreId: string; stamp: string }): Promise<{ oldDataDir: string }> {
      const c = pitrConfig(deps, req.database);
      const live = abs(c.dataDir);
      const restored = path.join(abs(c.restoreDir), req.restoreId);
      const old = `${live}.pre-pitr-${req.stamp}`;
      if (await running(c, live)) {
        throw ApplicationFailure.nonRetryable(`the live cluster in ${live} is still running: stop its service first`, 'RecoveryFailed');
      }
      if (existsSync(restored)) {
        if (await running(c, restored)) await runCommand(pgCtl(c, restored, '-m', 'fast', '-w', 'stop'), { ...serverOpts, timeoutMs: 180_000 }).catch(commandFailure);
        // The promoted cluster no longer needs them, and its future base backups must not inherit them.
        await stripRecoverySettings(path.join(restored, 'postgresql.auto.conf'));
        if (existsSync(live) && !existsSync(old)) await rename(live, old);
        await rename(restored, live);
      }
      await rm(path.join(abs(c.restoreDir), `${req.restoreId}.${MARKER}`), { force: true });
      await rm(path.join(abs(c.restoreDir), `${req.restoreId}.log`), { force: true });
      return { oldDataDir: old };
    },

    async removeOldDataDir(req: { database: string; path: string }): Promise<boolean> {
      const c = pitrConfig(deps, req.database);
      if (!req.path.startsWith(`${abs(c.dataDir)}.pre-pitr-`)) {
        throw ApplicationFailure.nonRetryable(`refusing to remove ${req.path}: not a pre-PITR copy of ${abs(c.dataDir)}`, ErrorTypes.InvalidInput);
      }
      await rm(req.path, { recursive: true, force: true });
      return true;
    },

    /** POSTs a JSON report to the DR webhook; returns false when none is configured. */
    async notifyDr(req: { subject: string; report: Record<string, unknown> }): Promise<boolean> {
      const url = deps.config.databaseOps?.disasterRecovery.notifyUrl;
      if (!url) {
        log.warn({ ...req }, 'DR objective missed (no databaseOps.disasterRecovery.notifyUrl to notify)');
        return false;
      }
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req) });
      if (!res.ok) throw new Error(`DR notification to ${url} answered ${res.status}`);
      return true;
    },

    /** Whether logical backups are configured too (the drill restores both kinds when they are). */
    async drillSources(req: { database: string }): Promise<{ logical: boolean; pitr: boolean }> {
      let logical = true;
      try {
        backupsConfig(deps);
      } catch {
        logical = false;
      }
      return { logical, pitr: Boolean(deps.config.databaseOps?.pitr.some((p) => p.database === req.database)) };
    },
  };
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

