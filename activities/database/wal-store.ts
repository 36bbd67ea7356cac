import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ObjectStore } from './object-store.js';
import { deleteKey, downloadFile, expectedChecksum, headObject, listObjects, storeKey, storeUrl, uploadFile } from './object-store.js';

/**
 * The WAL archive in object storage (AlphaPulse 5.2 step 3: WAL archives kept in S3):
 * `<prefix>/<database>/wal/<segment>`. `runbook wal push %p %f` is the cluster's archive_command;
 * `runbook wal fetch %f %p` a restore_command; a PITR run fetches the segments it needs itself.
 */

/** A WAL segment, a timeline history file, or a backup history file: what archive_command is given. */
export const WAL_NAME = /^([0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$/;

export class WalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WalError';
  }
}

export const walPrefix = (store: ObjectStore, database: string) => storeKey(store, database, 'wal');

function checkName(name: string): void {
  if (!WAL_NAME.test(name)) throw new WalError(`"${name}" is not a WAL file name (expected e.g. 000000010000000000000042 or 00000002.history): pass %f`);
}

/**
 * Archives one WAL file. An object of the same name with the same content is success (PostgreSQL
 * may archive a file again after a crash); with other content it is refused, never overwritten.
 */
export async function pushWal(store: ObjectStore, database: string, file: string, name: string): Promise<{ key: string; bytes: number; already: boolean }> {
  checkName(name);
  const key = `${walPrefix(store, database)}/${name}`;
  const existing = await headObject(store, key);
  if (existing) {
    const mine = await expectedChecksum(store, file);
    if (existing.ChecksumSHA256 === mine.checksum) return { key, bytes: existing.ContentLength ?? 0, already: true };
    throw new WalError(`${storeUrl(store, key)} already exists with other content (SHA-256 ${existing.ChecksumSHA256 ?? 'unknown'}, this file ${mine.checksum}): refusing to overwrite an archived WAL file`);
  }
  const up = await uploadFile(store, key, file);
  return { key, bytes: up.bytes, already: false };
}

/**
 * Fetches one archived WAL file into `dest`, checked against the SHA-256 the store kept at upload.
 * Undefined when the archive has no such file (restore_command then exits non-zero, as PostgreSQL expects).
 */
export async function fetchWal(store: ObjectStore, database: string, name: string, dest: string): Promise<{ key: string; bytes: number } | undefined> {
  checkName(name);
  const key = `${walPrefix(store, database)}/${name}`;
  if (!(await headObject(store, key))) return undefined;
  const got = await downloadFile(store, key, dest);
  if (got.storedChecksum && got.storedChecksum !== got.checksum) {
    throw new WalError(`${storeUrl(store, key)} is corrupt: SHA-256 ${got.checksum} of what arrived differs from the ${got.storedChecksum} stored at upload`);
  }
  return { key, bytes: got.bytes };
}

/** Archived WAL files of a database: name, time, size. */
export async function listWal(store: ObjectStore, database: string): Promise<Array<{ name: string; lastModified: Date; size: number }>> {
  const prefix = walPrefix(store, database);
  return (await listObjects(store, prefix))
    .map((o) => ({ name: o.key.slice(prefix.length + 1), lastModified: o.lastModified, size: o.size }))
    .filter((o) => WAL_NAME.test(o.name));
}

/**
 * Downloads the archived segments from `from` on (the base backup's first one) and every history
 * file into `dir`, as seed 5.2 syncs `wal/` before replaying; returns how many and their bytes.
 */
export async function syncWal(
  store: ObjectStore,
  database: string,
  dir: string,
  from: string | undefined,
  onProgress: (files: number, bytes: number) => void = () => undefined,
): Promise<{ files: number; bytes: number }> {
  await mkdir(dir, { recursive: true });
  const wanted = (await listWal(store, database)).filter((o) => o.name.endsWith('.history') || !from || o.name.slice(0, 24) >= from);
  let bytes = 0;
  let files = 0;
  for (const o of wanted) {
    const got = await fetchWal(store, database, o.name, path.join(dir, o.name));
    bytes += got?.bytes ?? 0;
    files += 1;
    onProgress(files, bytes);
  }
  return { files, bytes };
}

/** Where a WAL file sits in the WAL stream, its timeline left out (log and segment numbers), as pg_archivecleanup compares them. */
const position = (name: string) => name.slice(8, 24);

/**
 * The archived files that precede segment `keepFrom` (the first one the oldest kept base backup
 * needs), oldest first: segments, partial segments and backup history files whose position is
 * before it, on any timeline. Timeline history files are never among them: recovery reads them to
 * follow a timeline switch, and they are a few bytes each.
 */
export function walBefore<T extends { name: string }>(files: T[], keepFrom: string): T[] {
  return files
    .filter((f) => !f.name.endsWith('.history') && position(f.name) < position(keepFrom))
    .sort((a, b) => position(a.name).localeCompare(position(b.name)) || a.name.localeCompare(b.name));
}

/**
 * Deletes the archived WAL files before `keepFrom` (see walBefore), oldest first and a few at a
 * time, so that one interrupted leaves no hole after what it deleted. Returns what went and what is left.
 */
export async function pruneWal(
  store: ObjectStore,
  database: string,
  keepFrom: string,
  onProgress: (deleted: number) => void = () => undefined,
): Promise<{ deleted: Array<{ name: string; size: number }>; remaining: number }> {
  if (!/^[0-9A-F]{24}$/.test(keepFrom)) throw new WalError(`"${keepFrom}" is not a WAL segment name`);
  const all = await listWal(store, database);
  const doomed = walBefore(all, keepFrom);
  const prefix = walPrefix(store, database);
  for (let i = 0; i < doomed.length; i += 8) {
    await Promise.all(doomed.slice(i, i + 8).map((f) => deleteKey(store, `${prefix}/${f.name}`)));
    onProgress(Math.min(i + 8, doomed.length));
  }
  return { deleted: doomed.map(({ name, size }) => ({ name, size })), remaining: all.length - doomed.length };
}
