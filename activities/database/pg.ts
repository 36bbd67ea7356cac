import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import type { DatabaseConfig } from '../../common/config-schema.js';
import { ErrorTypes } from '../../common/errors.js';
import { MissingEnvError, resolveEnvRefs } from '../../lib/env.js';
import { CommandError } from '../../lib/exec.js';
import { newestPostgresBinDir } from '../../lib/local/index.js';
import { redactSecrets } from '../../lib/redact.js';
import type { ActivityDeps } from '../deps.js';

/** A configured database with its URL resolved (inside the activity only) and the secrets to redact. */
export interface ResolvedDb {
  cfg: DatabaseConfig;
  url: string;
  secrets: string[];
}

export function databaseNamed(deps: ActivityDeps, name: string): DatabaseConfig {
  const db = deps.config.databases.find((d) => d.name === name);
  if (!db) {
    throw ApplicationFailure.nonRetryable(
      `database: unknown database "${name}": expected one of ${deps.config.databases.map((d) => d.name).join(', ') || '(none configured: add databases[] to the config)'}`,
      ErrorTypes.InvalidInput,
    );
  }
  return db;
}

export function resolveDb(deps: ActivityDeps, name: string): ResolvedDb {
  const cfg = databaseNamed(deps, name);
  let url: string;
  try {
    url = resolveEnvRefs(cfg.url, deps.env, `databases.${cfg.name}.url`);
  } catch (err) {
    if (err instanceof MissingEnvError) throw ApplicationFailure.nonRetryable(`${err.message}; set it in the worker's environment`, ErrorTypes.InvalidConfig);
    throw err;
  }
  return { cfg, url, secrets: urlSecrets(url) };
}

/** The URL's password, raw and percent-decoded, so neither form reaches a message; none for a DSN that is not a URL. */
export function urlSecrets(url: string): string[] {
  try {
    const pw = new URL(url).password;
    return pw ? [pw, decodeURIComponent(pw)] : [];
  } catch {
    return [];
  }
}

/** The same server, another database name. */
export function urlWithDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

export function databaseOfUrl(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, '')) || 'postgres';
}

/** libpq environment for client tools, so no password is ever on a command line. */
export function libpqEnv(url: string, database?: string): Record<string, string> {
  const u = new URL(url);
  const env: Record<string, string> = {
    PGHOST: decodeURIComponent(u.hostname) || '127.0.0.1',
    PGPORT: u.port || '5432',
    PGDATABASE: database ?? databaseOfUrl(url),
  };
  if (u.username) env.PGUSER = decodeURIComponent(u.username);
  if (u.password) env.PGPASSWORD = decodeURIComponent(u.password);
  const sslmode = u.searchParams.get('sslmode');
  if (sslmode) env.PGSSLMODE = sslmode;
  return env;
}

/** A client for `body`, ended after it; `timeoutMs` bounds the connection and each query (default: none). */
export async function withClient<T>(url: string, secrets: string[], body: (c: pg.Client) => Promise<T>, opts: { timeoutMs?: number } = {}): Promise<T> {
  const timeouts = opts.timeoutMs ? { connectionTimeoutMillis: opts.timeoutMs, query_timeout: opts.timeoutMs } : {};
  const client = new pg.Client({ connectionString: url, application_name: 'durable-runbooks', ...timeouts });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw new Error(`cannot connect to ${redactSecrets(url, secrets)}: ${redactSecrets((err as Error).message, secrets)}`);
  }
  try {
    return await body(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * `table` or `schema.table` split into its parts. A part may be double-quoted (`"x.y"`,
 * `public."we""ird"`), as tableName writes names holding a dot or a quote; anything that is
 * not one or two parts is refused, so `a.b.c` never silently becomes `a.b`.
 */
export function splitTableName(table: string): string[] {
  const bad = () =>
    ApplicationFailure.nonRetryable(`tables: "${table}" is not a table name: expected table or schema.table (a part with "." or '"' in double quotes)`, ErrorTypes.InvalidInput);
  const parts: string[] = [];
  let i = 0;
  for (;;) {
    let part = '';
    if (table[i] === '"') {
      let j = i + 1;
      for (;;) {
        if (j >= table.length) throw bad();
        if (table[j] === '"') {
          if (table[j + 1] !== '"') break;
          part += '"';
          j += 2;
        } else {
          part += table[j];
          j += 1;
        }
      }
      i = j + 1;
    } else {
      const dot = table.indexOf('.', i);
      const end = dot === -1 ? table.length : dot;
      part = table.slice(i, end);
      if (part.includes('"')) throw bad();
      i = end;
    }
    if (part === '') throw bad();
    parts.push(part);
    if (i >= table.length) break;
    if (table[i] !== '.') throw bad();
    i += 1;
  }
  if (parts.length > 2) throw bad();
  return parts;
}

/** How a table is named in reports and accepted back by quoteTable: `public` is left out, a part with "." or '"' is double-quoted. */
export function tableName(schema: string, relname: string): string {
  const part = (p: string) => (/[."]/.test(p) ? `"${p.replace(/"/g, '""')}"` : p);
  return schema === 'public' ? part(relname) : `${part(schema)}.${part(relname)}`;
}

/** `schema.table` or `table` quoted for SQL with the driver's escaping; never interpolated raw. */
export function quoteTable(client: pg.Client, table: string): string {
  return splitTableName(table).map((p) => client.escapeIdentifier(p)).join('.');
}

/** Directory of pg_dump & co: the configured one, else the newest server install, else PATH. */
export function pgBinDir(configured: string | undefined, configDir: string): string | undefined {
  return configured ? path.resolve(configDir, configured) : newestPostgresBinDir('pg_dump');
}

export function tool(binDir: string | undefined, name: string): string {
  return binDir ? path.join(binDir, name) : name;
}

/** Row counts of `tables` (`table` or `schema.table`); -1 for a table that does not exist. */
export async function countTables(client: pg.Client, tables: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of tables) {
    const exists = await client.query<{ r: string | null }>('SELECT to_regclass($1) AS r', [quoteTable(client, t)]);
    out[t] = exists.rows[0]?.r ? Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteTable(client, t)}`)).rows[0]!.n) : -1;
  }
  return out;
}

/** A failed client tool is worth a retry (the server may be restarting) unless it is missing. */
export function commandFailure(err: unknown): never {
  if (err instanceof CommandError) {
    if (err.notFound) throw ApplicationFailure.nonRetryable(`${err.message}; set databaseOps.backups.binDir`, ErrorTypes.InvalidConfig);
    throw ApplicationFailure.retryable(err.message, ErrorTypes.CommandFailed);
  }
  throw err;
}
