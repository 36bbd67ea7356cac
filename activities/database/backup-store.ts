import { createHash } from 'node:crypto';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { BackupManifest, BackupUpload } from '../../common/database/types.js';
import { ErrorTypes } from '../../common/errors.js';
import { heartbeating } from '../context.js';
import type { ActivityDeps, LoggingDeps } from '../deps.js';
import { readManifest, repoDir } from './backup-repo.js';
import { deletePrefix, downloadFile, getSmall, headObject, listFolders, listKeys, objectStore, type ObjectStore, putSmall, storeKey, storeUrl, uploadFile } from './object-store.js';

/**
 * db-backup's off-host copies: `<prefix>/<database>/<id>/` holds the dump (a file, or one object
 * per file of a directory-format dump) and then `manifest.json`, uploaded last, so a backup is in
 * the store once its manifest is. Restores fetch from here when the local copy is missing,
 * checking the SHA-256 of what arrives against the manifest before anything uses it.
 */

const MANIFEST = 'manifest.json';
type StoredManifest = BackupManifest & { verifiedAt?: string };

export function requireStore(deps: ActivityDeps): ObjectStore {
  const s = objectStore(deps);
  if (!s) throw ApplicationFailure.nonRetryable('databaseOps.objectStorage is not configured: add its endpoint, bucket and credentials to the config', ErrorTypes.InvalidConfig);
  return s;
}

/** The files of a dump relative to the backup's folder: the file, or dump.d/<name> for each file of a directory dump. */
async function dumpFiles(dir: string, m: BackupManifest): Promise<string[]> {
  if (m.format !== 'directory') return [m.file];
  return (await readdir(path.join(dir, m.file))).sort().map((f) => `${m.file}/${f}`);
}

/** The manifest's checksum from per-file ones: the file's own, or the directory form backup.ts computes. */
function combined(m: BackupManifest, sums: Map<string, string>): string {
  if (m.format !== 'directory') return sums.get(m.file) ?? '';
  const lines = [...sums.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([f, s]) => `${path.basename(f)} ${s}\n`);
  return createHash('sha256').update(lines.join('')).digest('hex');
}

const mbps = (bytes: number, ms: number) => Math.round((bytes / 1024 / 1024 / Math.max(0.001, ms / 1000)) * 100) / 100;

/** Uploads a verified local backup; a backup whose manifest is already in the store with the same checksum is left as is. */
export async function uploadBackup(d: LoggingDeps, req: { database: string; id: string }): Promise<BackupUpload> {
  const store = requireStore(d);
  const dir = path.join(repoDir(d, req.database), req.id);
  const m = await readManifest(dir);
  if (!m || !(m as StoredManifest).verifiedAt) {
    throw ApplicationFailure.nonRetryable(`backup ${req.id} of ${req.database} has no verified manifest in ${dir}: only a verified backup is uploaded`, 'BackupInvalid');
  }
  const folder = storeKey(store, req.database, req.id);
  const location = storeUrl(store, `${folder}/`);
  const remote = await getSmall(store, `${folder}/${MANIFEST}`);
  if (remote && (JSON.parse(remote) as BackupManifest).sha256 === m.sha256) {
    return { location, objects: 0, bytes: m.sizeBytes, parts: 0, durationMs: 0, throughputMBps: 0, already: true };
  }
  const streamed = m.streamedTo && (await headObject(store, m.streamedTo.key));
  if (m.streamedTo && streamed && streamed.ContentLength === m.sizeBytes && streamed.ChecksumSHA256 === m.streamedTo.checksum) {
    // Uploaded while pg_dump wrote it, its SHA-256 checked per part by the store then: the manifest is all that is missing.
    await putSmall(store, `${folder}/${MANIFEST}`, `${JSON.stringify(m, null, 2)}\n`);
    const durationMs = m.streamedTo.durationMs;
    d.log.info({ database: req.database, id: req.id, location, bytes: m.sizeBytes }, 'backup uploaded while dumping; manifest added');
    return { location, objects: 2, bytes: m.sizeBytes, parts: m.streamedTo.parts, durationMs, throughputMBps: mbps(m.sizeBytes, durationMs), already: false, duringDump: true };
  }
  const started = Date.now();
  const files = await dumpFiles(dir, m);
  const sums = new Map<string, string>();
  let done = 0;
  let current = 0;
  let parts = 0;
  await heartbeating(
    () => ({ uploading: req.id, bytes: done + current, totalBytes: m.sizeBytes }),
    async () => {
      for (const f of files) {
        const up = await uploadFile(store, `${folder}/${f}`, path.join(dir, f), (b) => (current = b));
        sums.set(f, up.sha256);
        done += up.bytes;
        current = 0;
        parts += up.parts;
      }
    },
  );
  const sent = combined(m, sums);
  if (sent !== m.sha256) {
    throw ApplicationFailure.nonRetryable(`backup ${req.id} of ${req.database} changed on disk since it was verified: sha256 ${sent}, manifest ${m.sha256}; no manifest was uploaded`, 'BackupInvalid');
  }
  await putSmall(store, `${folder}/${MANIFEST}`, `${JSON.stringify(m, null, 2)}\n`);
  const durationMs = Date.now() - started;
  d.log.info({ database: req.database, id: req.id, location, bytes: done, durationMs }, 'backup uploaded');
  return {
    location,
    objects: files.length + 1,
    bytes: done,
    parts,
    durationMs,
    throughputMBps: mbps(done, durationMs),
    already: false,
  };
}

/** Manifests of a database's backups in the store (none when no store is configured). */
export async function storedBackups(deps: ActivityDeps, database: string): Promise<StoredManifest[]> {
  const store = objectStore(deps);
  if (!store) return [];
  const out: StoredManifest[] = [];
  for (const id of await listFolders(store, storeKey(store, database))) {
    const text = await getSmall(store, storeKey(store, database, id, MANIFEST));
    if (text) out.push(JSON.parse(text) as StoredManifest);
  }
  return out;
}

/** Deletes a backup's objects, manifest first; false when no store is configured. */
export async function deleteStoredBackup(deps: ActivityDeps, database: string, id: string): Promise<boolean> {
  const store = objectStore(deps);
  if (!store) return false;
  const folder = storeKey(store, database, id);
  return (await deletePrefix(store, folder, `${folder}/${MANIFEST}`)) > 0;
}

export interface Fetched {
  location: string;
  bytes: number;
  durationMs: number;
}

/**
 * Downloads a backup the local repository lacks into `<repository>/<database>/<id>/`, the manifest
 * last and only once the dump's SHA-256 matches it; undefined when the store has no such backup.
 */
export async function fetchStoredBackup(d: LoggingDeps, req: { database: string; id: string }): Promise<Fetched | undefined> {
  const store = objectStore(d);
  if (!store) return undefined;
  const folder = storeKey(store, req.database, req.id);
  const text = await getSmall(store, `${folder}/${MANIFEST}`);
  if (!text) return undefined;
  const m = JSON.parse(text) as StoredManifest;
  // What the store says decides file names on this host: only the names db-backup writes.
  if (m.id !== req.id || m.database !== req.database || !['dump.pgcustom', 'dump.d'].includes(m.file) || typeof m.sha256 !== 'string') {
    throw ApplicationFailure.nonRetryable(`backup ${req.id} of ${req.database}: the manifest in ${storeUrl(store, `${folder}/`)} is not one db-backup wrote; nothing was fetched`, 'BackupInvalid');
  }
  const dir = path.join(repoDir(d, req.database), req.id);
  const staging = `${dir}.fetching`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(m.format === 'directory' ? path.join(staging, m.file) : staging, { recursive: true });
  const started = Date.now();
  const prefix = `${folder}/`;
  const keys = m.format === 'directory' ? await listKeys(store, `${folder}/${m.file}`) : [`${folder}/${m.file}`];
  const sums = new Map<string, string>();
  let done = 0;
  let current = 0;
  await heartbeating(
    () => ({ downloading: req.id, bytes: done + current, totalBytes: m.sizeBytes }),
    async (signal) => {
      for (const key of keys) {
        const rel = key.slice(prefix.length);
        if (!/^dump\.(pgcustom|d\/[A-Za-z0-9_][A-Za-z0-9._-]*)$/.test(rel)) {
          throw ApplicationFailure.nonRetryable(`backup ${req.id} of ${req.database}: unexpected object ${storeUrl(store, key)}; nothing was restored from it`, 'BackupInvalid');
        }
        const got = await downloadFile(store, key, path.join(staging, rel), (b) => (current = b), signal);
        sums.set(rel, got.sha256);
        done += got.bytes;
        current = 0;
      }
    },
  );
  const arrived = combined(m, sums);
  if (arrived !== m.sha256) {
    await rm(staging, { recursive: true, force: true });
    throw ApplicationFailure.nonRetryable(
      `backup ${req.id} of ${req.database} downloaded from ${storeUrl(store, prefix)} is corrupt: sha256 ${arrived} differs from its manifest's ${m.sha256} (the object was changed or damaged after upload); nothing was restored from it`,
      'BackupInvalid',
    );
  }
  await writeFile(path.join(staging, MANIFEST), `${JSON.stringify(m, null, 2)}\n`);
  await rm(dir, { recursive: true, force: true });
  await rename(staging, dir);
  const durationMs = Date.now() - started;
  d.log.info({ database: req.database, id: req.id, bytes: done, durationMs }, 'backup fetched from object storage');
  return { location: storeUrl(store, prefix), bytes: done, durationMs };
}
