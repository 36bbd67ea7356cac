import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { Umzug, type MigrationParams, type RunnableMigration, type UmzugStorage } from 'umzug';
import { ErrorTypes } from '../../common/errors.js';
import type { MigrationInfo, MigrationRunResult } from '../../common/types.js';
import type { Logger } from '../../lib/logger.js';
import { redactSecrets } from '../../lib/redact.js';
import { urlSecrets } from './pg.js';

/**
 * SQL migrations as in the Fulcrum runbook (4.1): `<version>_<description>.up.sql` and
 * `.down.sql` files, recorded in `schema_migrations(version, description, applied_at)`.
 * umzug orders and runs them; our storage class keeps the runbook's table, and each
 * migration commits in one transaction with its bookkeeping row.
 */

export interface MigrationStatus {
  applied: Array<MigrationInfo & { appliedAt: string }>;
  pending: MigrationInfo[];
}

export interface MigrationFile extends MigrationInfo {
  upPath: string;
  downPath?: string;
}

export interface Migrator {
  status(): Promise<MigrationStatus>;
  /**
   * Applies pending migrations in version order, up to and including `to` when given.
   * `applied` is what this call applied; `pending` is what is still to do (for a dry run:
   * what would run).
   */
  up(opts?: { dryRun?: boolean; to?: string; onProgress?: (m: MigrationInfo) => void }): Promise<MigrationRunResult>;
  /**
   * Rolls back the newest `steps` migrations (default 1), or every one newer than `to`
   * ("0" rolls back all). `applied` is what this call rolled back, newest first; `pending`
   * is what is still to roll back (for a dry run: what would be). `downSql` maps each
   * selected version to its down SQL.
   */
  down(opts: {
    steps?: number;
    /** Roll back every migration newer than this version. */
    to?: string;
    dryRun?: boolean;
    onProgress?: (m: MigrationInfo) => void;
  }): Promise<MigrationRunResult & { downSql: Record<string, string> }>;
  close(): Promise<void>;
}

export const MIGRATION_FILE_PATTERN = '<version>_<description>.up.sql / .down.sql (version: digits, description: [a-z0-9_]+, e.g. 001_create_policies.up.sql)';

const FILE_RE = /^(\d+)_([a-z0-9_]+)\.(up|down)\.sql$/;
const TABLE = 'schema_migrations';

/**
 * Session-level advisory lock key shared by every runner of this project, whatever the
 * worker or CLI: the first 8 bytes of sha256("durable-runbooks:migrations") as a bigint.
 */
export const MIGRATION_LOCK_KEY: string = createHash('sha256').update('durable-runbooks:migrations').digest().readBigInt64BE(0).toString();

function failure(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ErrorTypes.MigrationFailed);
}

/** Numeric order, so 9_x sorts before 10_x and 001 before 20260101120000. */
function compareVersions(a: string, b: string): number {
  const d = BigInt(a) - BigInt(b);
  return d < 0n ? -1 : d > 0n ? 1 : a.localeCompare(b);
}

/** Lists and validates a migrations directory; files other than *.sql are ignored. */
export async function readMigrationFiles(dir: string): Promise<MigrationFile[]> {
  let entries: string[];
  try {
    entries = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw failure(`migrations directory ${dir} does not exist`);
    throw err;
  }

  const ups = new Map<string, MigrationFile>();
  const downs: Array<{ file: string; version: string; description: string }> = [];
  for (const file of entries.sort()) {
    if (!/\.sql$/i.test(file)) continue;
    const m = FILE_RE.exec(file);
    if (!m) throw failure(`migration file ${path.join(dir, file)} has a bad name: expected ${MIGRATION_FILE_PATTERN}`);
    const [, version, description, direction] = m as unknown as [string, string, string, 'up' | 'down'];
    if (direction === 'down') {
      downs.push({ file, version, description });
      continue;
    }
    const clash = [...ups.values()].find((u) => compareVersions(u.version, version) === 0);
    if (clash) {
      throw failure(
        `migration file ${path.join(dir, file)} repeats version ${version} of ${path.basename(clash.upPath)}: every version must be unique (${MIGRATION_FILE_PATTERN})`,
      );
    }
    ups.set(version, { version, description, upPath: path.join(dir, file) });
  }
  for (const d of downs) {
    const up = ups.get(d.version);
    if (!up || up.description !== d.description) {
      throw failure(
        `migration file ${path.join(dir, d.file)} has no matching ${d.version}_${d.description}.up.sql` +
          (up ? ` (the up file for version ${d.version} is ${path.basename(up.upPath)})` : '') +
          `: expected ${MIGRATION_FILE_PATTERN}`,
      );
    }
    up.downPath = path.join(dir, d.file);
  }
  return [...ups.values()].sort((a, b) => compareVersions(a.version, b.version));
}

/** SQLSTATE classes a retry can get past: connection loss, serialization/deadlock, resources, shutdown, lock timeout. */
function isTransientSqlState(code: string | undefined): boolean {
  if (!code) return true;
  return /^(08|40|53|57P|58)/.test(code) || code === '55P03';
}

interface PgErrorFields {
  code?: string;
  position?: string;
  detail?: string;
  hint?: string;
}

/** A failure a later attempt may get past (connection lost, deadlock); Temporal retries it. */
class TransientError extends Error {
  override name = 'MigrationTransientError';
}

/**
 * Stores applied migrations in the runbook's own table. The migration function opens a
 * transaction and runs the file; logging/unlogging the row then commits it, so the SQL
 * and its row land (or vanish) together.
 */
class SchemaMigrationsStorage implements UmzugStorage<pg.PoolClient> {
  constructor(private readonly descriptions: Map<string, string>) {}

  async logMigration({ name, context }: MigrationParams<pg.PoolClient>): Promise<void> {
    await context.query(`INSERT INTO ${TABLE} (version, description) VALUES ($1, $2)`, [name, this.descriptions.get(name) ?? '']);
    await context.query('COMMIT');
  }

  async unlogMigration({ name, context }: MigrationParams<pg.PoolClient>): Promise<void> {
    const res = await context.query(`DELETE FROM ${TABLE} WHERE version = $1`, [name]);
    // Another tool removed the row under us: commit nothing rather than undo schema silently.
    if (res.rowCount !== 1) throw failure(`${TABLE} has no row for version ${name}: it was removed while the rollback ran`);
    await context.query('COMMIT');
  }

  async executed({ context }: Pick<MigrationParams<pg.PoolClient>, 'context'>): Promise<string[]> {
    return (await appliedRows(context)).map((r) => r.version);
  }
}

interface AppliedRow {
  version: string;
  description: string;
  applied_at: Date;
}

async function tableExists(client: pg.ClientBase): Promise<boolean> {
  const res = await client.query<{ exists: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS exists`, [TABLE]);
  return res.rows[0]?.exists ?? false;
}

async function appliedRows(client: pg.ClientBase): Promise<AppliedRow[]> {
  if (!(await tableExists(client))) return [];
  const res = await client.query<AppliedRow>(`SELECT version, description, applied_at FROM ${TABLE}`);
  return res.rows.sort((a, b) => compareVersions(a.version, b.version));
}

/** What the module functions below share for one migrator: its pool and where its files are. */
export interface MigratorContext {
  pool: pg.Pool;
  dir: string;
  database: string;
  logger: Logger;
  /** The URL's password, raw and percent-decoded, so neither form reaches a message. */
  secrets: string[];
}

export function createMigrator(opts: { url: string; dir: string; database: string; logger: Logger }): Migrator {
  const { dir, database, logger } = opts;
  const secrets = urlSecrets(opts.url);
  const pool = new pg.Pool({ connectionString: opts.url, max: 4, application_name: 'durable-runbooks-migrations' });
  // An idle client's network error is emitted on the pool; unhandled it would kill the worker.
  pool.on('error', (err) => logger.warn({ err: redactSecrets(err.message, secrets) }, 'migration connection error'));
  const m: MigratorContext = { pool, dir, database, logger, secrets };
  return {
    status: () => migrationStatus(m),
    up: (o = {}) => migrateUp(m, o),
    down: (o) => migrateDown(m, o),
    close: () => pool.end(),
  };
}

async function connect(m: MigratorContext): Promise<pg.PoolClient> {
  try {
    return await m.pool.connect();
  } catch (err) {
    // Retryable: the database may be starting.
    throw new TransientError(`database ${m.database}: cannot connect to PostgreSQL: ${redactSecrets((err as Error).message, m.secrets)}`);
  }
}

/** Fails on a schema_migrations left by another tool (golang-migrate's has version bigint + dirty). */
async function checkTable(m: MigratorContext, client: pg.ClientBase): Promise<void> {
  if (!(await tableExists(client))) return;
  const res = await client.query<{ column_name: string }>(
    `SELECT column_name FROM information_schema.columns WHERE table_name = $1 AND table_schema = current_schema()`,
    [TABLE],
  );
  const cols = new Set(res.rows.map((r) => r.column_name));
  const missing = ['version', 'description', 'applied_at'].filter((c) => !cols.has(c));
  if (missing.length > 0) {
    throw failure(
      `database ${m.database}: ${TABLE} exists but lacks column(s) ${missing.join(', ')} (has ${[...cols].join(', ')}); ` +
        `expected ${TABLE}(version text primary key, description text, applied_at timestamptz) — it was probably created by another migration tool`,
    );
  }
}

async function ensureTable(m: MigratorContext, client: pg.ClientBase): Promise<void> {
  await checkTable(m, client);
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${TABLE} (version text PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
  );
}

/** Runs `body` holding the migrations advisory lock on a dedicated session; concurrent runners queue here. */
async function withLock<T>(m: MigratorContext, body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await connect(m);
  let destroy = false;
  try {
    const tried = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [MIGRATION_LOCK_KEY]);
    if (!tried.rows[0]?.ok) {
      m.logger.info({ database: m.database }, 'another runner holds the migration lock; waiting for it');
      await client.query('SELECT pg_advisory_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
    }
    return await body(client);
  } catch (err) {
    // Closing the session rolls back an open transaction and releases the lock, whatever state it is in.
    destroy = true;
    throw err;
  } finally {
    if (!destroy) {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [MIGRATION_LOCK_KEY]).catch(() => {
        destroy = true;
      });
    }
    client.release(destroy || undefined);
  }
}

async function readOnly<T>(m: MigratorContext, body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await connect(m);
  try {
    return await body(client);
  } finally {
    client.release();
  }
}

/** Turns a failure inside a migration into a message naming the file, with PostgreSQL's own words. */
async function migrationError(m: MigratorContext, err: unknown, file: string, direction: 'up' | 'down'): Promise<Error> {
  const cause = (err as { cause?: unknown }).cause ?? err;
  if (cause instanceof ApplicationFailure) return cause;
  const e = cause as Error & PgErrorFields;
  const parts = [`database ${m.database}: migration ${file} (${direction}) failed and was rolled back: ${e.message}`];
  if (e.code) parts.push(`SQLSTATE ${e.code}`);
  if (e.position) {
    const sql = await readFile(file, 'utf8').catch(() => '');
    const line = sql.slice(0, Number(e.position) - 1).split('\n').length;
    parts.push(`at line ${line}`);
  }
  if (e.detail) parts.push(`detail: ${e.detail}`);
  if (e.hint) parts.push(`hint: ${e.hint}`);
  const message = redactSecrets(parts.join('; '), m.secrets);
  return isTransientSqlState(e.code) ? new TransientError(message) : failure(message);
}

/** A database error outside a migration's SQL, named and classified (retryable or not). */
async function withDbErrors<T>(m: MigratorContext, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof ApplicationFailure || err instanceof TransientError || !(err instanceof Error)) throw err;
    const e = err as Error & PgErrorFields;
    const message = redactSecrets(`database ${m.database}: ${e.message}`, m.secrets);
    throw isTransientSqlState(e.code) ? new TransientError(message) : failure(message);
  }
}

/** Builds an umzug over `files` whose SQL runs on `client` inside a transaction the storage commits. */
function umzugFor(m: MigratorContext, files: MigrationFile[], client: pg.PoolClient, onProgress?: (m: MigrationInfo) => void) {
  const byVersion = new Map(files.map((f) => [f.version, f]));
  const run = (file: string) => async ({ context }: MigrationParams<pg.PoolClient>) => {
    const sql = await readFile(file, 'utf8');
    await context.query('BEGIN');
    await context.query(sql);
  };
  const migrations: Array<RunnableMigration<pg.PoolClient>> = files.map((f) => ({
    name: f.version,
    path: f.upPath,
    up: run(f.upPath),
    ...(f.downPath ? { down: run(f.downPath) } : {}),
  }));
  const umzug = new Umzug<pg.PoolClient>({
    migrations,
    context: client,
    storage: new SchemaMigrationsStorage(new Map(files.map((f) => [f.version, f.description]))),
    logger: undefined,
  });
  const started = new Map<string, number>();
  let current: string | undefined;
  const begin = ({ name }: MigrationParams<pg.PoolClient>) => {
    current = name;
    started.set(name, Date.now());
    const f = byVersion.get(name);
    if (f && onProgress) onProgress({ version: f.version, description: f.description });
  };
  const end = (direction: 'up' | 'down') => ({ name }: MigrationParams<pg.PoolClient>) => {
    const f = byVersion.get(name);
    const durationMs = Date.now() - (started.get(name) ?? Date.now());
    m.logger.info(
      { database: m.database, version: name, description: f?.description, direction, durationMs },
      direction === 'up' ? 'migration applied' : 'migration rolled back',
    );
  };
  umzug.on('migrating', begin);
  umzug.on('reverting', begin);
  umzug.on('migrated', end('up'));
  umzug.on('reverted', end('down'));
  /** The file umzug was running when it threw (the SQL or its bookkeeping row). */
  const currentFile = (direction: 'up' | 'down'): string => {
    const f = current === undefined ? undefined : byVersion.get(current);
    if (!f) return '(no migration running)';
    return direction === 'up' ? f.upPath : (f.downPath ?? f.upPath);
  };
  return { umzug, currentFile };
}

const info = (f: MigrationInfo): MigrationInfo => ({ version: f.version, description: f.description });

function selectUp(m: MigratorContext, files: MigrationFile[], applied: Set<string>, to: string | undefined): MigrationFile[] {
  const pending = files.filter((f) => !applied.has(f.version));
  if (to === undefined) return pending;
  if (!files.some((f) => f.version === to)) {
    throw failure(`database ${m.database}: no migration with version ${to} in ${m.dir}`);
  }
  return pending.filter((f) => compareVersions(f.version, to) <= 0);
}

/** Applied migrations (from the table) and pending ones (files not applied yet). */
export async function migrationStatus(m: MigratorContext): Promise<MigrationStatus> {
  const files = await readMigrationFiles(m.dir);
  return withDbErrors(m, () =>
    readOnly(m, async (client) => {
      await checkTable(m, client);
      const rows = await appliedRows(client);
      const applied = new Set(rows.map((r) => r.version));
      return {
        applied: rows.map((r) => ({ version: r.version, description: r.description, appliedAt: r.applied_at.toISOString() })),
        pending: files.filter((f) => !applied.has(f.version)).map(info),
      };
    }),
  );
}

type UpOptions = NonNullable<Parameters<Migrator['up']>[0]>;
type DownOptions = Parameters<Migrator['down']>[0];

/** Migrator.up: applies pending migrations under the lock (or, dry, says which would run). */
export async function migrateUp(m: MigratorContext, o: UpOptions): Promise<MigrationRunResult> {
  const { database } = m;
  const files = await readMigrationFiles(m.dir);
  const dryRun = o.dryRun ?? false;
  if (dryRun) {
    return withDbErrors(m, () =>
      readOnly(m, async (client) => {
        await checkTable(m, client);
        const applied = new Set((await appliedRows(client)).map((r) => r.version));
        return { database, dryRun, applied: [], pending: selectUp(m, files, applied, o.to).map(info) };
      }),
    );
  }
  return withDbErrors(m, () =>
    withLock(m, async (client) => {
      await ensureTable(m, client);
      // Selected under the lock, so a runner that waited sees what the other one applied.
      const applied = new Set((await appliedRows(client)).map((r) => r.version));
      const selected = selectUp(m, files, applied, o.to);
      const { umzug, currentFile } = umzugFor(m, files, client, o.onProgress);
      const done: MigrationInfo[] = [];
      umzug.on('migrated', ({ name }) => {
        const f = files.find((x) => x.version === name);
        if (f) done.push(info(f));
      });
      try {
        await umzug.up({ migrations: selected.map((f) => f.version) });
      } catch (err) {
        throw await migrationError(m, err, currentFile('up'), 'up');
      }
      const nowApplied = new Set([...applied, ...done.map((d) => d.version)]);
      return { database, dryRun, applied: done, pending: files.filter((f) => !nowApplied.has(f.version)).map(info) };
    }),
  );
}

function checkDownOptions(m: MigratorContext, o: DownOptions): void {
  const { database } = m;
  if (o.steps !== undefined && o.to !== undefined) throw failure(`database ${database}: give either steps or to for a rollback, not both`);
  if (o.steps !== undefined && (!Number.isInteger(o.steps) || o.steps < 1)) {
    throw failure(`database ${database}: steps must be a positive integer, got ${o.steps}`);
  }
  if (o.to !== undefined && !/^\d+$/.test(o.to)) throw failure(`database ${database}: to must be a migration version (digits), got "${o.to}"`);
}

/** Newest first; checks every selected migration can be rolled back before anything changes. */
function selectDown(m: MigratorContext, byVersion: Map<string, MigrationFile>, rows: AppliedRow[], o: DownOptions): MigrationFile[] {
  const { database, dir } = m;
  const to = o.to;
  if (to !== undefined && Number(to) !== 0 && !byVersion.has(to) && !rows.some((r) => r.version === to)) {
    throw failure(`database ${database}: no migration with version ${to} (use "0" to roll back every migration)`);
  }
  const newestFirst = [...rows].reverse();
  const chosen = to !== undefined ? newestFirst.filter((r) => compareVersions(r.version, to) > 0) : newestFirst.slice(0, o.steps ?? 1);
  return chosen.map((r) => {
    const f = byVersion.get(r.version);
    if (!f) throw failure(`database ${database}: cannot roll back ${r.version}_${r.description}: no ${r.version}_*.up.sql / .down.sql in ${dir}`);
    if (!f.downPath) {
      throw failure(`database ${database}: cannot roll back ${f.version}_${f.description}: ${path.join(dir, `${f.version}_${f.description}.down.sql`)} is missing`);
    }
    return f;
  });
}

async function downSqlOf(selected: MigrationFile[]): Promise<Record<string, string>> {
  return Object.fromEntries(await Promise.all(selected.map(async (f) => [f.version, await readFile(f.downPath!, 'utf8')] as const)));
}

/** Migrator.down: rolls back the selected migrations, newest first, under the lock (or, dry, says which would). */
export async function migrateDown(m: MigratorContext, o: DownOptions): Promise<MigrationRunResult & { downSql: Record<string, string> }> {
  const { database } = m;
  const files = await readMigrationFiles(m.dir);
  const dryRun = o.dryRun ?? false;
  checkDownOptions(m, o);
  const byVersion = new Map(files.map((f) => [f.version, f]));
  if (dryRun) {
    return withDbErrors(m, () =>
      readOnly(m, async (client) => {
        await checkTable(m, client);
        const selected = selectDown(m, byVersion, await appliedRows(client), o);
        return { database, dryRun, applied: [], pending: selected.map(info), downSql: await downSqlOf(selected) };
      }),
    );
  }
  return withDbErrors(m, () =>
    withLock(m, async (client) => {
      await checkTable(m, client);
      const selected = selectDown(m, byVersion, await appliedRows(client), o);
      const downSql = await downSqlOf(selected);
      if (selected.length === 0) return { database, dryRun, applied: [], pending: [], downSql };
      const { umzug, currentFile } = umzugFor(m, files, client, o.onProgress);
      const done: MigrationInfo[] = [];
      umzug.on('reverted', ({ name }) => {
        const f = byVersion.get(name);
        if (f) done.push(info(f));
      });
      try {
        // Explicit names: umzug runs them in this order (newest first).
        await umzug.down({ migrations: selected.map((f) => f.version) });
      } catch (err) {
        throw await migrationError(m, err, currentFile('down'), 'down');
      }
      return { database, dryRun, applied: done, pending: [], downSql };
    }),
  );
}
