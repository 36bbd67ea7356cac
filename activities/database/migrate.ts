import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { AppliedMigration, MigrationPlan } from '../../common/database/types.js';
import { ErrorTypes } from '../../common/errors.js';
import type { MigrationInfo } from '../../common/types.js';
import { heartbeating } from '../context.js';
import type { ActivityDeps } from '../deps.js';
import { createMigrator, readMigrationFiles, type Migrator } from './migrations.js';
import { databaseNamed, resolveDb, tableName, withClient } from './pg.js';

/**
 * db-migrate (Fulcrum 4.1): the migrations stack-start runs, as a procedure of their own.
 * The same migrator (umzug over schema_migrations, one transaction per file, the advisory
 * lock) does the work; these functions add what a human needs around it: the SQL before
 * anything runs, a `to` checked against the files, and the schema before and after.
 */

export function createMigrateActivities(deps: ActivityDeps) {
  return {
    planMigrations: (req: { database: string; to?: string }) => planMigrations(deps, req),
    applyMigrations: (req: { database: string; to: string; expect: string[] }) => applyMigrations(deps, req),
    schemaObjects: (req: { database: string }) => schemaObjects(deps, req),
  };
}

/** The migrator of a configured database; a database without migrationsDir has nothing to run or roll back. */
export function migratorFor(deps: ActivityDeps, database: string): Migrator {
  const db = resolveDb(deps, database);
  if (!db.cfg.migrationsDir) {
    throw ApplicationFailure.nonRetryable(`databases.${database}.migrationsDir is not set: nothing to roll back`, ErrorTypes.InvalidConfig);
  }
  return createMigrator({
    url: db.url,
    dir: path.resolve(deps.configDir, db.cfg.migrationsDir),
    database,
    logger: deps.logger.child({ database }),
  });
}

const newer = (a: string, b: string) => BigInt(a) > BigInt(b);
const named = (m: MigrationInfo) => `${m.version}_${m.description}`;
const MAX_NAMES_SHOWN = 20;

/**
 * Applied and pending migrations, the ones up to `to` and their up SQL; changes nothing. `to`
 * must name a migration file (its version, or `<version>_<description>`).
 */
export async function planMigrations(deps: ActivityDeps, req: { database: string; to?: string }): Promise<MigrationPlan> {
  const cfg = databaseNamed(deps, req.database);
  if (!cfg.migrationsDir) {
    throw ApplicationFailure.nonRetryable(
      `databases.${req.database}.migrationsDir is not set: db-migrate needs the directory of its <version>_<description>.up.sql files`,
      ErrorTypes.InvalidConfig,
    );
  }
  const dir = path.resolve(deps.configDir, cfg.migrationsDir);
  const files = await readMigrationFiles(dir);
  let to: string | null = null;
  if (req.to !== undefined) {
    const hit = files.find((f) => f.version === req.to || named(f) === req.to);
    if (!hit) {
      const shown = files.slice(-MAX_NAMES_SHOWN).map(named);
      throw ApplicationFailure.nonRetryable(
        `to: no migration "${req.to}" in ${cfg.migrationsDir}: expected a version or <version>_<description> of ${shown.join(', ') || '(no migration files)'}` +
          (files.length > shown.length ? ` (the newest ${shown.length} of ${files.length})` : ''),
        ErrorTypes.InvalidInput,
      );
    }
    to = hit.version;
  }
  const m = migratorFor(deps, req.database);
  try {
    const status = await m.status();
    const selected = status.pending.filter((p) => to === null || !newer(p.version, to));
    const byVersion = new Map(files.map((f) => [f.version, f]));
    const upSql = Object.fromEntries(await Promise.all(selected.map(async (s) => [s.version, await readFile(byVersion.get(s.version)!.upPath, 'utf8')] as const)));
    return { dir: cfg.migrationsDir, known: files.map(named), applied: status.applied, pending: status.pending, selected, upSql, to };
  } finally {
    await m.close();
  }
}

/**
 * Applies the pending migrations up to `to`, which must be exactly those in `expect` (what
 * the approver saw): a migration file added since is refused, and a retry after a crash
 * applies only what is left. Returns what it applied and schema_migrations afterwards.
 */
export async function applyMigrations(
  deps: ActivityDeps,
  req: { database: string; to: string; expect: string[] },
): Promise<{ applied: MigrationInfo[]; after: AppliedMigration[] }> {
  const m = migratorFor(deps, req.database);
  try {
    const before = await m.status();
    const due = before.pending.filter((p) => !newer(p.version, req.to));
    const unexpected = due.filter((p) => !req.expect.includes(p.version));
    if (unexpected.length > 0) {
      throw ApplicationFailure.nonRetryable(
        `database ${req.database}: ${unexpected.map(named).join(', ')} appeared after the approval and ${unexpected.length === 1 ? 'was' : 'were'} not approved; nothing was applied by this step (run db-migrate again)`,
        ErrorTypes.MigrationFailed,
      );
    }
    const res = due.length === 0 ? { applied: [] } : await heartbeating(() => ({ database: req.database, to: req.to }), () => m.up({ to: req.to }));
    return { applied: res.applied, after: (await m.status()).applied };
  } finally {
    await m.close();
  }
}

/** Tables and columns of the user schemas, as "table" and "table.column type", sorted: what a migration visibly changes. */
export async function schemaObjects(deps: ActivityDeps, req: { database: string }): Promise<string[]> {
  const db = resolveDb(deps, req.database);
  return withClient(db.url, db.secrets, async (c) => {
    const res = await c.query<{ schema: string; tbl: string; col: string | null; type: string | null }>(
      `SELECT n.nspname AS schema, cl.relname AS tbl, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS type
         FROM pg_class cl
         JOIN pg_namespace n ON n.oid = cl.relnamespace
         LEFT JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE cl.relkind IN ('r', 'p', 'v', 'm')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`,
    );
    const out = new Set<string>();
    for (const r of res.rows) {
      const t = tableName(r.schema, r.tbl);
      out.add(t);
      if (r.col) out.add(`${t}.${r.col} ${r.type}`);
    }
    return [...out].sort();
  });
}
