import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { BackupsConfig } from '../../common/database/config.js';
import type { BackupManifest } from '../../common/database/types.js';
import { ErrorTypes } from '../../common/errors.js';
import { MissingEnvError, resolveEnvRefs } from '../../lib/env.js';
import type { ActivityDeps } from '../deps.js';

/**
 * The local backup repository: `<repository>/<database>/<id>/` holding the dump and
 * `manifest.json`. Shared by the dump and restore code (backup.ts) and the object store copy
 * (backup-store.ts), which would otherwise import each other.
 */

export const MANIFEST = 'manifest.json';

export function backupsConfig(deps: ActivityDeps): BackupsConfig {
  const b = deps.config.databaseOps?.backups;
  if (!b) {
    throw ApplicationFailure.nonRetryable(
      'databaseOps.backups is not configured: add databaseOps.backups.repository (a directory for the backups) to the config',
      ErrorTypes.InvalidConfig,
    );
  }
  return b;
}

export function repoDir(deps: ActivityDeps, database: string): string {
  // `${RUNBOOK_STATE_DIR:-.runbook}/...` keeps the demo's backups in the state dir of `runbook dev`.
  let repository: string;
  try {
    repository = resolveEnvRefs(backupsConfig(deps).repository, deps.env, 'databaseOps.backups.repository');
  } catch (err) {
    if (err instanceof MissingEnvError) throw ApplicationFailure.nonRetryable(`${err.message}; set it in the worker's environment`, ErrorTypes.InvalidConfig);
    throw err;
  }
  return path.join(path.resolve(deps.configDir, repository), database);
}

export async function readManifest(dir: string): Promise<BackupManifest | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, MANIFEST), 'utf8')) as BackupManifest;
  } catch {
    return undefined;
  }
}
