import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ApplicationFailure } from '@temporalio/common';
import type pg from 'pg';
import type { TableCount, TableRestoreCheck } from '../../common/database/types.js';
import { ErrorTypes } from '../../common/errors.js';
import { CommandError, runCommand } from '../../lib/exec.js';
import { heartbeating } from '../context.js';
import type { ActivityDeps } from '../deps.js';
import { backupsConfig, readManifest, repoDir } from './backup-repo.js';
import { commandFailure, libpqEnv, pgBinDir, quoteTable, resolveDb, splitTableName, tool, withClient } from './pg.js';

/**
 * Single-table restore (AlphaPulse 3.4, `pg_restore -t trades backup.sql`): the rows of the
 * named tables come back from a logical backup into the live database, in one transaction
 * (TRUNCATE, then the dump's COPY data), so readers see the old rows or the restored ones,
 * never a half-loaded table. Definitions, indexes and sequences stay as they are live: only
 * the data is restored, which is what `-t` can restore safely (pg_restore -t brings no indexes
 * or constraints with a table, so dropping and recreating it would lose them).
 */

/** psql waits this long for the tables' locks before giving up (a long transaction of an app holds them). */
const LOCK_TIMEOUT = '60s';
/** Prefix of the row counts the restore script prints, told apart from pg_restore's own output. */
const COUNT_MARK = 'restored-rows:';

interface TableRef {
  table: string;
  schema: string;
  name: string;
}

export function createTableRestoreActivities(deps: ActivityDeps) {
  return {
    checkTableRestore: (req: TableRestoreRequest) => checkTableRestore(deps, req),
    restoreTables: (req: TableRestoreRequest) => restoreTables(deps, req),
  };
}

export interface TableRestoreRequest {
  database: string;
  backupId: string;
  tables: string[];
}

function refs(tables: string[]): TableRef[] {
  return tables.map((table) => {
    const parts = splitTableName(table);
    return parts.length === 2 ? { table, schema: parts[0]!, name: parts[1]! } : { table, schema: 'public', name: parts[0]! };
  });
}

function invalid(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ErrorTypes.InvalidInput);
}

async function dumpFile(deps: ActivityDeps, database: string, backupId: string): Promise<string> {
  const dir = path.join(repoDir(deps, database), backupId);
  const m = await readManifest(dir);
  if (!m) throw ApplicationFailure.nonRetryable(`backup ${backupId} of ${database} has no manifest in ${dir}`, 'BackupInvalid');
  return path.join(dir, m.file);
}

/**
 * The TABLE DATA entries of the dump's table of contents, in restore order, as "schema name".
 * `pg_restore --list` prints `<id>; <oid> <oid> TABLE DATA <schema> <name> <owner>`.
 */
async function tableDataEntries(deps: ActivityDeps, file: string, signal: AbortSignal): Promise<string[]> {
  const bin = pgBinDir(backupsConfig(deps).binDir, deps.configDir);
  const res = await runCommand([tool(bin, 'pg_restore'), '--list', file], { signal, timeoutMs: 600_000, maxBuffer: 256 * 1024 * 1024 }).catch(commandFailure);
  const out: string[] = [];
  for (const line of res.stdout.split('\n')) {
    const m = /^\d+; \d+ \d+ TABLE DATA (.+) \S+$/.exec(line.trim());
    if (m) out.push(m[1]!);
  }
  return out;
}

/** Writes the dump's COPY data of each table into `dir` (one file per table, in `tables` order) and counts its rows. */
async function extractData(deps: ActivityDeps, file: string, tables: TableRef[], dir: string, signal: AbortSignal): Promise<number[]> {
  const cfg = backupsConfig(deps);
  const bin = pgBinDir(cfg.binDir, deps.configDir);
  const rows: number[] = [];
  for (const [i, t] of tables.entries()) {
    const out = path.join(dir, `${i}.sql`);
    const argv = [tool(bin, 'pg_restore'), '--data-only', '--no-owner', `--schema=${t.schema}`, `--table=${t.name}`, `--file=${out}`, file];
    await runCommand(argv, { signal, timeoutMs: cfg.timeoutSeconds * 1000 }).catch(commandFailure);
    rows.push(await copyRows(out));
  }
  return rows;
}

/** Data lines of the COPY blocks of a pg_restore script (text format: one line per row, `\.` ends a block). */
async function copyRows(file: string): Promise<number> {
  let inCopy = false;
  let n = 0;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (inCopy) {
      if (line === '\\.') inCopy = false;
      else n += 1;
    } else if (/^COPY .* FROM stdin;$/.test(line)) {
      inCopy = true;
    }
  }
  return n;
}

async function liveCounts(c: pg.Client, tables: TableRef[]): Promise<number[]> {
  const out: number[] = [];
  for (const t of tables) out.push(Number((await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteTable(c, t.table)}`)).rows[0]!.n));
  return out;
}

/**
 * Before the approval, changing nothing: every table is in the backup (with its data) and
 * exists live, and no table outside the list has a foreign key to one of them (TRUNCATE
 * would refuse; CASCADE would empty a table nobody asked to restore). Returns the tables in
 * the dump's restore order, with the rows the backup holds and the rows live now.
 */
export async function checkTableRestore(deps: ActivityDeps, req: TableRestoreRequest): Promise<TableRestoreCheck[]> {
  if (req.tables.length === 0) throw invalid('tables: give at least one table, e.g. ["trades"] (or leave the field out to restore the whole backup)');
  const wanted = refs(req.tables);
  const seen = new Set<string>();
  for (const t of wanted) {
    const key = `${t.schema} ${t.name}`;
    if (seen.has(key)) throw invalid(`tables: "${t.table}" is listed twice`);
    seen.add(key);
  }
  const file = await dumpFile(deps, req.database, req.backupId);
  const db = resolveDb(deps, req.database);
  return heartbeating(
    () => ({ checking: req.tables }),
    async (signal) => {
      const entries = await tableDataEntries(deps, file, signal);
      const missing = wanted.filter((t) => !entries.includes(`${t.schema} ${t.name}`));
      if (missing.length > 0) {
        const have = entries.map((e) => (e.startsWith('public ') ? e.slice(7) : e.replace(' ', '.')));
        throw invalid(
          `tables: ${missing.map((t) => `"${t.table}"`).join(', ')} ${missing.length === 1 ? 'is' : 'are'} not in backup ${req.backupId} ` +
            `(its tables with data: ${have.slice(0, 30).join(', ') || 'none'}${have.length > 30 ? ', …' : ''}); nothing was changed`,
        );
      }
      const ordered = [...wanted].sort((a, b) => entries.indexOf(`${a.schema} ${a.name}`) - entries.indexOf(`${b.schema} ${b.name}`));
      const live = await withClient(db.url, db.secrets, async (c) => {
        const oids: string[] = [];
        for (const t of ordered) {
          const r = await c.query<{ oid: string | null }>('SELECT to_regclass($1)::oid::text AS oid', [quoteTable(c, t.table)]);
          const oid = r.rows[0]?.oid;
          if (!oid) {
            throw invalid(
              `tables: "${t.table}" does not exist in database ${req.database}: a single-table restore loads the backup's rows into the existing table; ` +
                'restore the whole backup into a new database (db-restore without tables) to get its definition; nothing was changed',
            );
          }
          oids.push(oid);
        }
        const fks = await c.query<{ conname: string; referencing: string; referenced: string }>(
          `SELECT conname, conrelid::regclass::text AS referencing, confrelid::regclass::text AS referenced
             FROM pg_constraint
            WHERE contype = 'f' AND confrelid = ANY($1::oid[]) AND NOT (conrelid = ANY($1::oid[]))
            ORDER BY 1`,
          [oids],
        );
        if (fks.rows.length > 0) {
          const f = fks.rows[0]!;
          throw invalid(
            `tables: ${f.referenced} is referenced by foreign key ${f.conname} of ${f.referencing}, which is not restored` +
              (fks.rows.length > 1 ? ` (and ${fks.rows.length - 1} more: ${fks.rows.slice(1, 6).map((r) => `${r.conname} of ${r.referencing}`).join(', ')})` : '') +
              `: add ${[...new Set(fks.rows.map((r) => r.referencing))].join(', ')} to tables (their rows then come from the backup too), ` +
              'or restore the whole backup into a new database; nothing was changed',
          );
        }
        return liveCounts(c, ordered);
      });
      const dir = await mkdtemp(path.join(tmpdir(), 'runbook-table-check-'));
      try {
        const rows = await extractData(deps, file, ordered, dir, signal);
        return ordered.map((t, i) => ({ table: t.table, rowsInBackup: rows[i]!, rowsLive: live[i]! }));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
}

/**
 * After the approval: in one psql transaction, TRUNCATE the tables (no CASCADE) and load the
 * backup's rows. A failure (a lock not granted within LOCK_TIMEOUT, a row breaking a foreign
 * key to a table not restored) rolls everything back. Running it again gives the same tables,
 * so a retry after a crash is safe. Returns each table's rows against the backup's.
 */
export async function restoreTables(deps: ActivityDeps, req: TableRestoreRequest): Promise<TableCount[]> {
  const cfg = backupsConfig(deps);
  const db = resolveDb(deps, req.database);
  const file = await dumpFile(deps, req.database, req.backupId);
  const tables = refs(req.tables);
  const dir = await mkdtemp(path.join(tmpdir(), 'runbook-table-restore-'));
  try {
    return await heartbeating(
      () => ({ restoring: req.tables, from: req.backupId }),
      async (signal) => {
        const expected = await extractData(deps, file, tables, dir, signal);
        // Schema-qualified: pg_restore's script empties search_path.
        const quoted = await withClient(db.url, db.secrets, async (c) => tables.map((t) => `${c.escapeIdentifier(t.schema)}.${c.escapeIdentifier(t.name)}`));
        // Counted inside the transaction: an app writing right after the commit cannot make the check fail.
        const script = [
          '\\set ON_ERROR_STOP on',
          `SET lock_timeout = '${LOCK_TIMEOUT}';`,
          `TRUNCATE TABLE ${quoted.join(', ')};`,
          ...tables.map((_t, i) => `\\ir ${i}.sql`),
          ...quoted.map((q) => `SELECT '${COUNT_MARK}' || count(*) FROM ${q};`),
          '',
        ].join('\n');
        await writeFile(path.join(dir, 'restore.sql'), script);
        const bin = pgBinDir(cfg.binDir, deps.configDir);
        const argv = [tool(bin, 'psql'), '--no-psqlrc', '--quiet', '--tuples-only', '--no-align', '--single-transaction', '--set=ON_ERROR_STOP=1', `--file=${path.join(dir, 'restore.sql')}`];
        const res = await runCommand(argv, { env: libpqEnv(db.url), secrets: db.secrets, signal, timeoutMs: cfg.timeoutSeconds * 1000, cwd: dir }).catch((err: unknown) => {
          // An SQL error is not worth a retry unless it is a lock wait or a lost connection.
          if (err instanceof CommandError && /ERROR:/.test(err.stderrTail) && !/lock timeout|could not connect|terminating connection/.test(err.stderrTail)) {
            throw ApplicationFailure.nonRetryable(
              `restoring ${req.tables.join(', ')} of ${req.database} from backup ${req.backupId} failed and was rolled back (the tables are as they were): ${err.stderrTail.trim()}`,
              'TableRestoreFailed',
            );
          }
          return commandFailure(err);
        });
        const actual = res.stdout.split('\n').flatMap((l) => (l.trim().startsWith(COUNT_MARK) ? [Number(l.trim().slice(COUNT_MARK.length))] : []));
        if (actual.length !== tables.length) throw ApplicationFailure.retryable(`psql printed ${actual.length} row count(s) for ${tables.length} table(s): ${res.stdout.slice(0, 500)}`, ErrorTypes.CommandFailed);
        return tables.map((t, i) => ({ table: t.table, expected: expected[i]!, actual: actual[i]! }));
      },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
