import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { PitrConfig } from '../../common/database/config.js';
import type { BackupUpload, BaseBackupManifest } from '../../common/database/types.js';
import { ErrorTypes } from '../../common/errors.js';
import { runCommand } from '../../lib/exec.js';
import { heartbeating } from '../context.js';
import type { ActivityDeps } from '../deps.js';
import { requireStore } from './backup-store.js';
import { deletePrefix, downloadTo, getSmall, listFolders, putSmall, storeKey, storeUrl, uploadStream } from './object-store.js';
import { abs, ownedDir, pitrConfig, type PitrDeps, readBase } from './pitr-files.js';

/**
 * Base backups in object storage (pitr[].objectStorage): `<prefix>/<database>/base/<id>/base.tar`,
 * a tar of the backup's data directory streamed from tar into a multipart upload, then
 * `manifest.json` with the tar's SHA-256, which a restore checks while it extracts.
 */

type StoredBase = BaseBackupManifest & { tarSha256: string; tarBytes: number };
const MANIFEST = 'manifest.json';

const folderOf = (deps: ActivityDeps, database: string, id: string) => {
  const store = requireStore(deps);
  return { store, folder: storeKey(store, database, 'base', id) };
};

/** tar's exit as a promise; its stderr in the error. */
function tarProcess(args: string[], stdio: 'in' | 'out') {
  const child = spawn('tar', args, { stdio: stdio === 'in' ? ['pipe', 'ignore', 'pipe'] : ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar ${args.join(' ')} exited ${code}: ${stderr.trim()}`))));
  });
  return { child, exited };
}

/** Streams the tar of `<baseBackups>/<id>/data` to the store, then its manifest; one already there is left as is. */
export async function uploadBaseBackup(d: PitrDeps, req: { database: string; id: string }): Promise<BackupUpload | null> {
  const c = pitrConfig(d, req.database);
  if (!c.objectStorage) return null;
  const { store, folder } = folderOf(d, req.database, req.id);
  const location = storeUrl(store, `${folder}/`);
  const dir = path.join(abs(d, c.baseBackups), req.id);
  const m = await readBase(dir);
  if (!m) throw ApplicationFailure.nonRetryable(`base backup ${req.id} of ${req.database} has no manifest in ${dir}`, 'BackupInvalid');
  if (await getSmall(store, `${folder}/${MANIFEST}`)) return { location, objects: 0, bytes: m.sizeBytes, parts: 0, durationMs: 0, throughputMBps: 0, already: true };
  const started = Date.now();
  let sent = 0;
  const tar = tarProcess(['-C', dir, '-cf', '-', 'data'], 'out');
  const up = await heartbeating(
    () => ({ uploading: req.id, bytes: sent }),
    async () => {
      const [u] = await Promise.all([uploadStream(store, `${folder}/base.tar`, tar.child.stdout!, (b) => (sent = b)), tar.exited]);
      return u;
    },
  ).catch((err: unknown) => {
    tar.child.kill();
    throw err instanceof ApplicationFailure ? err : ApplicationFailure.retryable((err as Error).message, ErrorTypes.CommandFailed);
  });
  const stored: StoredBase = { ...m, tarSha256: up.sha256, tarBytes: up.bytes };
  await putSmall(store, `${folder}/${MANIFEST}`, `${JSON.stringify(stored, null, 2)}\n`);
  const durationMs = Date.now() - started;
  return { location, objects: 2, bytes: up.bytes, parts: up.parts, durationMs, throughputMBps: Math.round((up.bytes / 1024 / 1024 / Math.max(0.001, durationMs / 1000)) * 100) / 100, already: false };
}

export async function storedBases(deps: ActivityDeps, c: PitrConfig): Promise<StoredBase[]> {
  const store = requireStore(deps);
  const root = storeKey(store, c.database, 'base');
  const out: StoredBase[] = [];
  for (const id of await listFolders(store, root)) {
    const text = await getSmall(store, `${root}/${id}/${MANIFEST}`);
    if (text) out.push(JSON.parse(text) as StoredBase);
  }
  return out;
}

export async function deleteStoredBase(deps: ActivityDeps, c: PitrConfig, id: string): Promise<void> {
  const { store, folder } = folderOf(deps, c.database, id);
  await deletePrefix(store, folder, `${folder}/${MANIFEST}`);
}

/** chown -R to the cluster's OS user (when running as root): what a fetch wrote is the server's to read. */
export async function ownTree(d: PitrDeps, c: PitrConfig, p: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  await runCommand(['chown', '-R', `${c.osUser}:`, p], { timeoutMs: 600_000 });
}

/**
 * Extracts a stored base backup into `dataDir` while downloading it; the tar's SHA-256 must match
 * its manifest before the directory is put in place, else it is removed and the restore refused.
 */
export async function fetchStoredBase(d: PitrDeps, c: PitrConfig, database: string, id: string, dataDir: string): Promise<void> {
  const { store, folder } = folderOf(d, database, id);
  const text = await getSmall(store, `${folder}/${MANIFEST}`);
  if (!text) throw ApplicationFailure.nonRetryable(`base backup ${id} of ${database} is neither in ${abs(d, c.baseBackups)} nor in ${storeUrl(store, `${folder}/`)}`, 'BackupInvalid');
  const m = JSON.parse(text) as StoredBase;
  const staging = `${dataDir}.fetching`;
  await rm(staging, { recursive: true, force: true });
  await ownedDir(d, c, staging);
  let got = 0;
  const tar = tarProcess(['-C', staging, '-xf', '-'], 'in');
  const r = await heartbeating(
    () => ({ fetchingBase: id, bytes: got, totalBytes: m.tarBytes }),
    async (signal) => {
      const [res] = await Promise.all([downloadTo(store, `${folder}/base.tar`, tar.child.stdin!, (b) => (got = b), signal), tar.exited]);
      return res;
    },
  ).catch(async (err: unknown) => {
    tar.child.kill();
    await rm(staging, { recursive: true, force: true });
    throw err instanceof ApplicationFailure ? err : ApplicationFailure.retryable((err as Error).message, ErrorTypes.CommandFailed);
  });
  if (r.sha256 !== m.tarSha256 || !existsSync(path.join(staging, 'data', 'PG_VERSION'))) {
    await rm(staging, { recursive: true, force: true });
    throw ApplicationFailure.nonRetryable(
      `base backup ${id} of ${database} downloaded from ${storeUrl(store, `${folder}/base.tar`)} is corrupt: sha256 ${r.sha256} differs from its manifest's ${m.tarSha256}; nothing was recovered from it`,
      'BackupInvalid',
    );
  }
  await ownTree(d, c, staging);
  await rename(path.join(staging, 'data'), dataDir);
  await rm(staging, { recursive: true, force: true });
}
