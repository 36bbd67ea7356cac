import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { ApplicationFailure } from '@temporalio/common';
import type pg from 'pg';
import type { BackupsConfig } from '../../common/database/config.js';
import type { BackupManifest, StreamedDump, TableCount } from '../../common/database/types.js';
import { ErrorTypes } from '../../common/errors.js';
import { runCommand } from '../../lib/exec.js';
import { heartbeating } from '../context.js';
import { backupsConfig, MANIFEST, readManifest, repoDir } from './backup-repo.js';
import { deleteStoredBackup, type Fetched, fetchStoredBackup, storedBackups, uploadBackup } from './backup-store.js';
import { Hasher, objectStore, type ObjectStore, openUpload, storeKey } from './object-store.js';
import type { ActivityDeps, LoggingDeps } from '../deps.js';
import { commandFailure, countTables, type ResolvedDb, libpqEnv, pgBinDir, resolveDb, tool, urlWithDatabase, withClient } from './pg.js';

/**
 * Logical backups (pg_dump) into a repository directory: `<repository>/<database>/<id>/`
 * holding the dump and `manifest.json`. A backup exists once its manifest does; a
 * retried dump first removes what a crashed attempt left.
 */

/** Set on a database while a run restores into it; the run's own partial restore may be dropped on retry. */
const RESTORING = 'durable-runbooks: restoring';
const MIB = 1024 * 1024;
const RESTORED = 'durable-runbooks: restored';



async function sizeOf(p: string): Promise<number> {
  const s = await stat(p).catch(() => undefined);
  if (!s) return 0;
  if (!s.isDirectory()) return s.size;
  let total = 0;
  for (const e of await readdir(p)) total += await sizeOf(path.join(p, e));
  return total;
}

/**
 * Read in 4 MiB blocks into one reused buffer, each hashed as it arrives: about 100 ms for a 65 MB
 * dump just written (page cache), where piping a read stream into the hash took 300–550 ms in
 * the worker's process.
 */
async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 * MIB);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** A file's sha256; a directory's is over "<name> <sha256>" lines of its files in name order. */
export async function checksum(p: string): Promise<string> {
  if (!(await stat(p)).isDirectory()) return sha256File(p);
  const files = (await readdir(p)).sort();
  const lines: string[] = [];
  for (const f of files) lines.push(`${f} ${await sha256File(path.join(p, f))}\n`);
  return createHash('sha256').update(lines.join('')).digest('hex');
}

/** Row counts of the tables that exist (a missing table has no entry). */
async function countRows(client: pg.Client, tables: string[]): Promise<Record<string, number>> {
  return Object.fromEntries(Object.entries(await countTables(client, tables)).filter(([, n]) => n >= 0));
}


async function writeManifest(dir: string, m: BackupManifest & { verifiedAt?: string }): Promise<void> {
  const tmp = path.join(dir, `${MANIFEST}.tmp`);
  await writeFile(tmp, `${JSON.stringify(m, null, 2)}\n`);
  await rename(tmp, path.join(dir, MANIFEST));
}

/** Backups of a database with a manifest, newest first. */
export async function listBackups(deps: ActivityDeps, database: string): Promise<Array<BackupManifest & { verifiedAt?: string }>> {
  const dir = repoDir(deps, database);
  if (!existsSync(dir)) return [];
  const out: Array<BackupManifest & { verifiedAt?: string }> = [];
  for (const id of await readdir(dir)) {
    const m = await readManifest(path.join(dir, id));
    if (m) out.push(m);
  }
  return out.sort((a, b) => b.startedAt.localeCompare(a.startedAt) || b.id.localeCompare(a.id));
}

async function tocEntries(deps: ActivityDeps, file: string, signal: AbortSignal): Promise<number> {
  const bin = pgBinDir(backupsConfig(deps).binDir, deps.configDir);
  const res = await runCommand([tool(bin, 'pg_restore'), '--list', file], { signal, timeoutMs: 600_000, maxBuffer: 256 * 1024 * 1024 }).catch(commandFailure);
  return res.stdout.split('\n').filter((l) => l.trim() !== '' && !l.startsWith(';')).length;
}

export type BackupDeps = LoggingDeps;

export function createBackupActivities(deps: ActivityDeps) {
  const d: BackupDeps = { ...deps, log: deps.logger.child({ family: 'database' }) };
  return {
    dumpDatabase: (req: DumpRequest) => dumpDatabase(d, req),
    verifyBackup: (req: { database: string; id: string; justWritten?: boolean }) => verifyBackup(d, req),
    applyRetention: (req: RetentionRequest) => applyRetention(d, req),
    uploadBackup: (req: { database: string; id: string }) => uploadBackup(d, req),
    chooseBackup: (req: { database: string; backupId?: string }) => chooseBackup(d, req),
    databaseState: (req: { database: string; name: string }) => databaseState(d, req),
    restoreInto: (req: RestoreRequest) => restoreInto(d, req),
    dropRestored: (req: { database: string; name: string; backupId: string; workflowId: string }) => dropRestored(d, req),
    verifyRestore: (req: { database: string; backupId: string; target: string }) => verifyRestore(d, req),
    swapDatabases: (req: SwapRequest) => swapDatabases(d, req),
  };
}

export interface DumpRequest {
  database: string;
  id: string;
  format: 'custom' | 'directory';
  jobs: number;
  workflowId: string;
  /** Send a custom-format dump to databaseOps.objectStorage while it is written (db-backup's upload step adds the manifest). */
  upload?: boolean;
}

/**
 * pg_dump into `<repository>/<database>/<id>/`; returns the existing manifest when this id is already done.
 * The dump is written under a temporary name, renamed once pg_dump exited 0 and `pg_restore --list`
 * reads its TOC, and the manifest comes last: a failed or truncated dump leaves nothing behind.
 */
export async function dumpDatabase(d: BackupDeps, req: DumpRequest): Promise<BackupManifest> {
  const cfg = backupsConfig(d);
  const db = resolveDb(d, req.database);
  const dir = path.join(repoDir(d, req.database), req.id);
  const done = await readManifest(dir);
  if (done) return done;
  // What a crashed attempt left is incomplete by definition (no manifest): start over.
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const file = req.format === 'directory' ? 'dump.d' : 'dump.pgcustom';
  const target = path.join(dir, file);
  const store = req.upload && req.format === 'custom' ? objectStore(d) : undefined;

  const startedAt = new Date().toISOString();
  try {
    const { written, ...facts } = await dumpInSnapshot(d, cfg, db, req, (argv, signal, exited) =>
      store
        ? dumpStreamed({ d, cfg, db, req, argv, target, signal, exited }, { store, key: storeKey(store, req.database, req.id, file) })
        : dumpToFile({ d, cfg, db, req, argv, target, signal, exited }),
    );
    const manifest: BackupManifest = {
      id: req.id,
      database: req.database,
      format: req.format,
      file,
      sizeBytes: written.sizeBytes,
      sha256: written.sha256,
      startedAt,
      endedAt: new Date().toISOString(),
      ...facts,
      tocEntries: written.tocEntries,
      workflowId: req.workflowId,
      ...(written.streamedTo ? { streamedTo: written.streamedTo } : {}),
    };
    await writeManifest(dir, manifest);
    d.log.info({ database: req.database, id: req.id, sizeBytes: manifest.sizeBytes }, 'backup written');
    return manifest;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** One pg_dump run: its settings, argv, where it writes, its abort signal, and `exited` to call once it exited 0. */
interface DumpRun {
  d: BackupDeps;
  cfg: BackupsConfig;
  db: ResolvedDb;
  req: DumpRequest;
  argv: string[];
  target: string;
  signal: AbortSignal;
  exited: () => void;
}

interface Written {
  sizeBytes: number;
  sha256: string;
  tocEntries: number;
  streamedTo?: StreamedDump;
}

/** Entries of the dump's TOC; a dump pg_restore cannot list, or with none, is refused. */
async function checkedToc(d: BackupDeps, req: { database: string; id: string }, file: string, signal: AbortSignal): Promise<number> {
  const entries = await tocEntries(d, file, signal);
  if (entries === 0) throw ApplicationFailure.nonRetryable(`backup ${req.id} of ${req.database}: pg_restore --list shows no entries`, 'BackupInvalid');
  return entries;
}

/**
 * A custom-format dump through pg_dump's stdout: hashed on the way to `<target>.partial` (and
 * to the object store when given, as a multipart upload with a SHA-256 per part), backpressure
 * all along, so the dump is read once. Only an exit code 0 and a readable TOC rename the file
 * and complete the upload; anything else removes the file and aborts the upload.
 */
async function dumpStreamed({ d, cfg, db, req, argv, target, signal, exited }: DumpRun, upload?: { store: ObjectStore; key: string }): Promise<Written> {
  const partial = `${target}.partial`;
  // The whole dump's SHA-256; the upload hashes each part it sends itself.
  const hasher = new Hasher();
  const up = upload ? openUpload(upload.store, upload.key) : undefined;
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  const started = Date.now();
  // Created by the first write; closed once all is written (or when the pipeline is torn down).
  const file = createWriteStream(partial, { flags: 'wx', highWaterMark: 4 * MIB });
  try {
    // Buffers of a few MiB between the pipe and the disk (and the store): pg_dump keeps writing
    // while a write or a part is in flight, instead of waiting on a 64 KiB pipe at every chunk.
    const sink = new Writable({
      highWaterMark: 4 * MIB,
      write(chunk: Buffer, _enc, cb) {
        if (up?.body.destroyed) return cb(up.body.errored ?? new Error('the upload stopped'));
        const waits: Array<Promise<unknown>> = [];
        if (!file.write(chunk)) waits.push(once(file, 'drain', { signal: stop.signal }));
        if (up && !up.body.write(chunk)) waits.push(once(up.body, 'drain', { signal: stop.signal }));
        if (waits.length === 0) cb();
        else Promise.all(waits).then(() => cb(), cb);
      },
      final(cb) {
        file.end();
        finished(file).then(() => cb(), cb);
      },
    });
    file.on('error', (err) => sink.destroy(err));
    let consumed: Promise<void> | undefined;
    const ran = runCommand(argv, {
      env: libpqEnv(db.url),
      secrets: db.secrets,
      signal: stop.signal,
      timeoutMs: cfg.timeoutSeconds * 1000,
      logger: d.log,
      onStdout: (out) => {
        consumed = pipeline(out, hasher, sink);
        // The disk or the store failed: stop pg_dump rather than leave it blocked on a full pipe.
        consumed.catch(() => stop.abort());
      },
    });
    const [cmd, out] = await Promise.allSettled([ran, ran.then(() => consumed, () => consumed)]);
    // A consumer that failed is why pg_dump was stopped: its error first. Then pg_dump's own exit.
    if (out.status === 'rejected') throw out.reason;
    if (cmd.status === 'rejected') commandFailure(cmd.reason);
    exited();
    // As pg_dump does before it exits 0: the dump is on disk before anything calls it a backup.
    await syncFile(partial);
    const entries = await checkedToc(d, req, partial, signal);
    await rename(partial, target);
    if (!up) return { sizeBytes: hasher.bytes, sha256: hasher.whole.digest('hex'), tocEntries: entries };
    const stored = await up.finish(hasher);
    return {
      sizeBytes: hasher.bytes,
      sha256: stored.sha256,
      tocEntries: entries,
      streamedTo: { key: stored.key, checksum: stored.checksum, parts: stored.parts, durationMs: Date.now() - started },
    };
  } catch (err) {
    await up?.abort(err instanceof Error ? err : new Error(String(err)));
    throw err;
  } finally {
    signal.removeEventListener('abort', onAbort);
    file.destroy();
  }
}

/**
 * pg_dump writes the dump itself (`--file`: a custom-format file, or a directory, in parallel with
 * jobs); once it exited 0, the SHA-256 (read back from the page cache), `pg_restore --list` and,
 * for a custom-format file, the fsync run side by side (pg_dump is told `--no-sync` for that file,
 * so its sync no longer comes before the hash; a directory pg_dump syncs itself). Nothing goes
 * through this process while pg_dump runs: reading its stdout here cost about 1–1.5 s of this
 * process's CPU per 65 MB of dump, taken from pg_dump and the server on a 2-core machine. A
 * custom-format file written this way also carries the data offsets in its TOC (pg_dump rewrites
 * the TOC once the data is written, which is also why it cannot be hashed while it is written).
 * Only an exit code 0, a readable TOC and a completed sync rename it.
 */
async function dumpToFile({ d, cfg, db, req, argv, target, signal, exited }: DumpRun): Promise<Written> {
  const partial = `${target}.partial`;
  const file = req.format === 'custom';
  await runCommand([...argv, ...(file ? ['--no-sync'] : []), `--file=${partial}`], {
    env: libpqEnv(db.url),
    secrets: db.secrets,
    signal,
    timeoutMs: cfg.timeoutSeconds * 1000,
    logger: d.log,
  }).catch(commandFailure);
  exited();
  const [sha256, entries] = await Promise.all([checksum(partial), checkedToc(d, req, partial, signal), file ? syncFile(partial) : undefined]);
  await rename(partial, target);
  return { sizeBytes: await sizeOf(target), sha256, tocEntries: entries };
}

async function syncFile(p: string): Promise<void> {
  const fh = await open(p, 'r+');
  await fh.sync().finally(() => fh.close());
}

/**
 * Runs pg_dump (`dump` gets its argv and appends where the output goes) on an exported snapshot.
 * One snapshot for the dump and the row counts: the counts are exactly what the dump holds even
 * under concurrent writes. They are taken once pg_dump exited 0 (`dump` calls `exited`), beside
 * the hash and the TOC check, rather than while pg_dump runs: on 2 cores a `count(*)` of a
 * 750 k-row table slowed pg_dump by about its own length.
 */
async function dumpInSnapshot(
  d: BackupDeps,
  cfg: BackupsConfig,
  db: ResolvedDb,
  req: DumpRequest,
  dump: (argv: string[], signal: AbortSignal, exited: () => void) => Promise<Written>,
): Promise<Pick<BackupManifest, 'serverVersion' | 'walLsn' | 'rowCounts'> & { written: Written }> {
  const bin = pgBinDir(cfg.binDir, d.configDir);
  return withClient(db.url, db.secrets, async (c) => {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const snap = await c.query<{ snapshot: string; v: string; lsn: string }>(
      `SELECT pg_export_snapshot() AS snapshot, current_setting('server_version') AS v,
              (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn`,
    );
    const { snapshot, v, lsn } = snap.rows[0]!;
    const argv = [
      tool(bin, 'pg_dump'),
      req.format === 'directory' ? '--format=directory' : '--format=custom',
      ...(req.format === 'directory' && req.jobs > 1 ? [`--jobs=${req.jobs}`] : []),
      `--snapshot=${snapshot}`,
      '--no-password',
    ];
    let exited!: () => void;
    const counted = new Promise<void>((resolve) => (exited = resolve)).then(() => countRows(c, cfg.verifyTables[req.database] ?? []));
    // Failing with the dump's error when both fail; a count never started (pg_dump failed) stays pending and is dropped.
    counted.catch(() => undefined);
    // The count heartbeats too: on a big table it can outlast the hash and the TOC check.
    const { written, rowCounts } = await heartbeating(
      () => ({ database: req.database, id: req.id }),
      async (signal) => {
        const w = await dump(argv, signal, exited);
        return { written: w, rowCounts: await counted };
      },
    );
    await c.query('COMMIT');
    return { serverVersion: v, walLsn: lsn, rowCounts, written };
  });
}

/**
 * Checks a backup before it is trusted. Right after db-backup's dump (`justWritten`), whose SHA-256
 * was computed as the bytes went to disk: the file's size against the manifest and the TOC with
 * `pg_restore --list` (it reads the TOC only), without reading the dump again. Otherwise (a restore
 * of an older backup) the whole checksum against the manifest as well. Records verifiedAt.
 */
export async function verifyBackup(
  d: BackupDeps,
  req: { database: string; id: string; justWritten?: boolean },
): Promise<{ checksum: boolean; tocEntries: number; fetched?: Fetched }> {
  const dir = path.join(repoDir(d, req.database), req.id);
  // Only the object store has it (another machine took it, or the local copy is gone): fetch, checking the SHA-256 on the way.
  const fetched = (await readManifest(dir)) ? undefined : await fetchStoredBackup(d, req);
  const m = await readManifest(dir);
  if (!m) throw ApplicationFailure.nonRetryable(`backup ${req.id} of ${req.database} has no manifest in ${dir}`, 'BackupInvalid');
  const file = path.join(dir, m.file);
  const quick = Boolean(req.justWritten && !fetched && m.tocEntries > 0);
  // In parallel. A checksum or size mismatch explains a failed listing, so it is reported first.
  const [sum, listed] = await heartbeating(
    () => ({ verifying: req.id }),
    (signal) => Promise.allSettled([quick ? sizeOf(file) : checksum(file), tocEntries(d, file, signal)]),
  );
  if (sum.status === 'rejected') throw sum.reason;
  if (quick && sum.value !== m.sizeBytes) {
    throw ApplicationFailure.nonRetryable(`backup ${req.id} of ${req.database} is corrupt: ${sum.value} bytes on disk, the dump wrote ${m.sizeBytes}`, 'BackupInvalid');
  }
  if (!quick && sum.value !== m.sha256) {
    throw ApplicationFailure.nonRetryable(`backup ${req.id} of ${req.database} is corrupt: sha256 ${sum.value} differs from the manifest's ${m.sha256}`, 'BackupInvalid');
  }
  if (listed.status === 'rejected') throw listed.reason;
  const entries = listed.value;
  if (entries === 0) throw ApplicationFailure.nonRetryable(`backup ${req.id} of ${req.database}: pg_restore --list shows no entries`, 'BackupInvalid');
  if (quick && entries !== m.tocEntries) {
    throw ApplicationFailure.nonRetryable(`backup ${req.id} of ${req.database} changed since it was written: ${entries} TOC entries, the dump had ${m.tocEntries}`, 'BackupInvalid');
  }
  await writeManifest(dir, { ...m, tocEntries: entries, verifiedAt: new Date().toISOString() });
  return { checksum: true, tocEntries: entries, ...(fetched ? { fetched } : {}) };
}

export interface RetentionRequest {
  database: string;
  keep: number;
  protect: string;
  dryRun?: boolean;
  only?: string[];
}

/**
 * Keeps the newest `keep` backups of a database; never deletes `protect`, nor anything outside
 * `only` when given (the list an approver saw). With `dryRun`, only says which would go.
 */
export async function applyRetention(d: BackupDeps, req: RetentionRequest): Promise<string[]> {
  // The same policy over the local repository and the object store: a backup is one id in either or both.
  const all = withStored(await listBackups(d, req.database), await storedBackups(d, req.database));
  const doomed = all.slice(req.keep).filter((m) => m.id !== req.protect && (!req.only || req.only.includes(m.id)));
  if (req.dryRun) return doomed.map((m) => m.id);
  for (const m of doomed) {
    await rm(path.join(repoDir(d, req.database), m.id), { recursive: true, force: true });
    await deleteStoredBackup(d, req.database, m.id);
  }
  return doomed.map((m) => m.id);
}

/** Local and stored manifests by id (the local one where both are), newest first. */
function withStored<T extends BackupManifest>(local: T[], stored: T[]): T[] {
  const ids = new Set(local.map((m) => m.id));
  return [...local, ...stored.filter((m) => !ids.has(m.id))].sort((a, b) => b.startedAt.localeCompare(a.startedAt) || b.id.localeCompare(a.id));
}

/** The backup a restore uses: the given id, else the newest verified one. */
export async function chooseBackup(d: BackupDeps, req: { database: string; backupId?: string }): Promise<BackupManifest> {
  const all = withStored(await listBackups(d, req.database), await storedBackups(d, req.database));
  const m = req.backupId ? all.find((b) => b.id === req.backupId) : all.find((b) => b.verifiedAt);
  if (!m) {
    throw ApplicationFailure.nonRetryable(
      req.backupId
        ? `backupId: no backup "${req.backupId}" of ${req.database} (have: ${all.map((b) => b.id).join(', ') || 'none'})`
        : `no verified backup of ${req.database} in ${repoDir(d, req.database)}: run db-backup first`,
      ErrorTypes.InvalidInput,
    );
  }
  return m;
}

/** The rows of pg_database named `name` (none or one) with its comment, where a restore keeps its marker. */
async function databaseComments(c: pg.Client, name: string): Promise<Array<{ comment: string | null }>> {
  const r = await c.query<{ comment: string | null }>('SELECT shobj_description(oid, $2) AS comment FROM pg_database WHERE datname = $1', [name, 'pg_database']);
  return r.rows;
}

/** Whether a database exists on the server of `database`, and its restore marker if any. */
export async function databaseState(d: BackupDeps, req: { database: string; name: string }): Promise<{ exists: boolean; comment: string | null }> {
  const db = resolveDb(d, req.database);
  return withClient(urlWithDatabase(db.url, 'postgres'), db.secrets, async (c) => {
    const rows = await databaseComments(c, req.name);
    return { exists: rows.length > 0, comment: rows[0]?.comment ?? null };
  });
}

export interface RestoreRequest {
  database: string;
  backupId: string;
  target: string;
  workflowId: string;
  jobs: number;
}

/**
 * Restores a backup into a new database `target` on the same server. A target this run
 * already started restoring is dropped and restored again; any other existing target is refused.
 */
export async function restoreInto(d: BackupDeps, req: RestoreRequest): Promise<{ durationMs: number; already: boolean }> {
  const cfg = backupsConfig(d);
  const db = resolveDb(d, req.database);
  const dir = path.join(repoDir(d, req.database), req.backupId);
  const m = await readManifest(dir);
  if (!m) throw ApplicationFailure.nonRetryable(`backup ${req.backupId} of ${req.database} has no manifest`, 'BackupInvalid');
  const admin = urlWithDatabase(db.url, 'postgres');
  const mine = `${RESTORING} ${req.backupId} for ${req.workflowId}`;
  const finished = `${RESTORED} ${req.backupId} for ${req.workflowId}`;
  const started = Date.now();
  const state = await withClient(admin, db.secrets, (c) => clearRestoreTarget(c, req.target, mine, finished));
  if (state === 'done') return { durationMs: 0, already: true };
  await withClient(admin, db.secrets, async (c) => {
    await c.query(`CREATE DATABASE ${c.escapeIdentifier(req.target)} TEMPLATE template0`);
    await c.query(`COMMENT ON DATABASE ${c.escapeIdentifier(req.target)} IS ${c.escapeLiteral(mine)}`);
  });
  const bin = pgBinDir(cfg.binDir, d.configDir);
  const argv = [tool(bin, 'pg_restore'), '--no-password', '--exit-on-error', ...(req.jobs > 1 ? [`--jobs=${req.jobs}`] : []), `--dbname=${req.target}`, path.join(dir, m.file)];
  await heartbeating(
    () => ({ restoring: req.backupId, into: req.target }),
    (signal) => runCommand(argv, { env: libpqEnv(db.url, req.target), secrets: db.secrets, signal, timeoutMs: cfg.timeoutSeconds * 1000, logger: d.log }),
  ).catch(commandFailure);
  await withClient(admin, db.secrets, (c) => c.query(`COMMENT ON DATABASE ${c.escapeIdentifier(req.target)} IS ${c.escapeLiteral(finished)}`));
  return { durationMs: Date.now() - started, already: false };
}

/** 'done' when this run already restored `target`; drops this run's partial restore; refuses anyone else's database. */
async function clearRestoreTarget(c: pg.Client, target: string, mine: string, finished: string): Promise<'absent' | 'done'> {
  const rows = await databaseComments(c, target);
  if (rows.length === 0) return 'absent';
  const comment = rows[0]!.comment;
  if (comment === finished) return 'done';
  if (comment !== mine) {
    throw ApplicationFailure.nonRetryable(
      `target: database "${target}" already exists; choose another target (a restore never overwrites a database without replace and an approval)`,
      ErrorTypes.InvalidInput,
    );
  }
  await c.query(`DROP DATABASE ${c.escapeIdentifier(target)} WITH (FORCE)`);
  return 'absent';
}

/** Drops a database this run restored (a drill's scratch copy); anything else is left alone. */
export async function dropRestored(d: BackupDeps, req: { database: string; name: string; backupId: string; workflowId: string }): Promise<boolean> {
  const db = resolveDb(d, req.database);
  return withClient(urlWithDatabase(db.url, 'postgres'), db.secrets, async (c) => {
    const comment = (await databaseComments(c, req.name))[0]?.comment;
    if (comment !== `${RESTORED} ${req.backupId} for ${req.workflowId}` && comment !== `${RESTORING} ${req.backupId} for ${req.workflowId}`) return false;
    await c.query(`DROP DATABASE ${c.escapeIdentifier(req.name)} WITH (FORCE)`);
    return true;
  });
}

/** Row counts of the configured tables in `target` against the backup's manifest. */
export async function verifyRestore(d: BackupDeps, req: { database: string; backupId: string; target: string }): Promise<TableCount[]> {
  const db = resolveDb(d, req.database);
  const m = await readManifest(path.join(repoDir(d, req.database), req.backupId));
  const expected = m?.rowCounts ?? {};
  const actual = await withClient(urlWithDatabase(db.url, req.target), db.secrets, (c) => countRows(c, Object.keys(expected)));
  return Object.entries(expected).map(([table, n]) => ({ table, expected: n, actual: actual[table] ?? -1 }));
}

export interface SwapRequest {
  database: string;
  restored: string;
  keptAs: string;
  drop: boolean;
}

/**
 * Puts the restored database in place of `database`: the old one is renamed to `keptAs`
 * (or dropped). Each rename checks the current names first, so a retry resumes.
 */
export async function swapDatabases(d: BackupDeps, req: SwapRequest): Promise<{ keptAs: string | null; absent?: boolean }> {
  const db = resolveDb(d, req.database);
  const name = databaseOfUrlOrName(db.url, req.database);
  return withClient(urlWithDatabase(db.url, 'postgres'), db.secrets, async (c) => {
    const exists = async (n: string) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [n])).rows.length > 0;
    const q = (n: string) => c.escapeIdentifier(n);
    if (await exists(req.restored)) {
      if (await exists(name)) {
        if (await exists(req.keptAs)) throw ApplicationFailure.nonRetryable(`cannot keep the old ${name} as ${req.keptAs}: that database exists`, ErrorTypes.InvalidInput);
        await c.query(`ALTER DATABASE ${q(name)} WITH ALLOW_CONNECTIONS false`);
        await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
        await c.query(`ALTER DATABASE ${q(name)} RENAME TO ${q(req.keptAs)}`);
        await c.query(`ALTER DATABASE ${q(req.keptAs)} WITH ALLOW_CONNECTIONS true`);
      }
      await c.query(`ALTER DATABASE ${q(req.restored)} RENAME TO ${q(name)}`);
    }
    if (req.drop && (await exists(req.keptAs))) {
      await c.query(`DROP DATABASE ${q(req.keptAs)} WITH (FORCE)`);
      return { keptAs: null };
    }
    // No database to keep: it was lost with its server (a break-glass restore into a new one).
    if (!req.drop && !(await exists(req.keptAs))) return { keptAs: null, absent: true };
    return { keptAs: req.drop ? null : req.keptAs };
  });
}

/** The server-side name of a configured database: its URL's path. */
function databaseOfUrlOrName(url: string, fallback: string): string {
  try {
    return decodeURIComponent(new URL(url).pathname.replace(/^\//, '')) || fallback;
  } catch {
    return fallback;
  }
}
