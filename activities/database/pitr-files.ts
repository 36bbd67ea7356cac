import { chown, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { PitrConfig } from '../../common/database/config.js';
import type { BaseBackupManifest } from '../../common/database/types.js';
import { ErrorTypes } from '../../common/errors.js';
import { runCommand } from '../../lib/exec.js';
import type { ActivityDeps, LoggingDeps } from '../deps.js';

/**
 * What the PITR activities (pitr.ts) and the object store copy of base backups (base-store.ts)
 * share: the database's pitr config, paths, base backup manifests, and files owned by the
 * cluster's OS user.
 */

export const MANIFEST = 'manifest.json';

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

export interface PitrDeps extends LoggingDeps {
  /** uid/gid of the clusters' OS users, looked up once per worker. */
  osIds: Map<string, { uid: number; gid: number }>;
}

export const abs = (deps: ActivityDeps, p: string) => path.resolve(deps.configDir, p);

async function osIds(d: PitrDeps, user: string): Promise<{ uid: number; gid: number }> {
  let v = d.osIds.get(user);
  if (!v) {
    const [u, g] = await Promise.all([runCommand(['id', '-u', user]), runCommand(['id', '-g', user])]);
    v = { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
    d.osIds.set(user, v);
  }
  return v;
}

/** PostgreSQL refuses to run as root: server-side programs run as the cluster's user. */
export const asUser = (c: PitrConfig, argv: string[]) => (isRoot() ? ['runuser', '-u', c.osUser, '--', ...argv] : argv);

export async function own(d: PitrDeps, c: PitrConfig, p: string): Promise<void> {
  if (!isRoot()) return;
  const { uid, gid } = await osIds(d, c.osUser);
  await chown(p, uid, gid);
}

export async function ownedDir(d: PitrDeps, c: PitrConfig, p: string): Promise<void> {
  await mkdir(p, { recursive: true, mode: 0o700 });
  await own(d, c, p);
}

export async function readBase(dir: string): Promise<BaseBackupManifest | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, MANIFEST), 'utf8')) as BaseBackupManifest;
  } catch {
    return undefined;
  }
}
