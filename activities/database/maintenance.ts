import { ApplicationFailure } from '@temporalio/common';
import type pg from 'pg';
import { ErrorTypes } from '../../common/errors.js';
import type { PidAction, TableBloat, TriageFinding, TriageReport } from '../../common/database/types.js';
import type { ActivityDeps } from '../deps.js';
import { heartbeating } from '../context.js';
import { quoteTable, resolveDb, tableName, withClient } from './pg.js';
import { readReplication, replicationFindings } from './replication.js';

/** Fulcrum 4 (vacuum, reindex, query analysis) and 3.2 / AlphaPulse 2.1 (connection triage). */

async function bloat(c: pg.Client, tables?: string[]): Promise<TableBloat[]> {
  const r = await c.query<{
    schemaname: string;
    relname: string;
    live: string;
    dead: string;
    size: string;
    last_vacuum: Date | null;
    last_autovacuum: Date | null;
  }>(
    `SELECT schemaname, relname, n_live_tup AS live, n_dead_tup AS dead, pg_total_relation_size(relid) AS size, last_vacuum, last_autovacuum
       FROM pg_stat_user_tables ORDER BY n_dead_tup DESC, schemaname, relname`,
  );
  return r.rows
    .map((row) => {
      const live = Number(row.live);
      const dead = Number(row.dead);
      return {
        table: tableName(row.schemaname, row.relname),
        liveTuples: live,
        deadTuples: dead,
        deadRatio: live + dead === 0 ? 0 : Math.round((dead / (live + dead)) * 1000) / 1000,
        sizeBytes: Number(row.size),
        lastVacuum: row.last_vacuum?.toISOString() ?? null,
        lastAutovacuum: row.last_autovacuum?.toISOString() ?? null,
      };
    })
    .filter((t) => !tables || tables.includes(t.table));
}

export function createMaintenanceActivities(deps: ActivityDeps) {
  return {
    bloatReport: (req: { database: string; tables?: string[] }) => bloatReport(deps, req),
    vacuumTables: (req: VacuumRequest) => vacuumTables(deps, req),
    triageReport: (req: TriageRequest) => triageReport(deps, req),
    signalBackends: (req: SignalRequest) => signalBackends(deps, req),
  };
}

export async function bloatReport(deps: ActivityDeps, req: { database: string; tables?: string[] }): Promise<TableBloat[]> {
  const db = resolveDb(deps, req.database);
  return withClient(db.url, db.secrets, async (c) => {
    // Pending statistics of other sessions reach the shared view within a second; ours now.
    await c.query('SELECT pg_stat_force_next_flush()').catch(() => undefined);
    return bloat(c, req.tables);
  });
}

export interface VacuumRequest {
  database: string;
  tables: string[];
  mode: 'analyze' | 'full' | 'reindex';
}

/** VACUUM (ANALYZE) or VACUUM (FULL, ANALYZE) each table; REINDEX TABLE CONCURRENTLY when asked. Re-running is harmless. */
export async function vacuumTables(deps: ActivityDeps, req: VacuumRequest): Promise<string[]> {
  const db = resolveDb(deps, req.database);
  const done: string[] = [];
  await heartbeating(
    () => ({ mode: req.mode, done: done.length, total: req.tables.length }),
    () =>
      withClient(db.url, db.secrets, async (c) => {
        for (const t of req.tables) {
          const exists = await c.query<{ r: string | null }>('SELECT to_regclass($1) AS r', [quoteTable(c, t)]);
          if (!exists.rows[0]?.r) continue;
          const sql =
            req.mode === 'full'
              ? `VACUUM (FULL, ANALYZE) ${quoteTable(c, t)}`
              : req.mode === 'reindex'
                ? `REINDEX TABLE CONCURRENTLY ${quoteTable(c, t)}`
                : `VACUUM (ANALYZE) ${quoteTable(c, t)}`;
          await c.query(sql);
          done.push(t);
        }
      }),
  );
  return done;
}

export interface TriageRequest {
  database: string;
  longQuerySeconds: number;
  idleMinutes: number;
  connectionsAlertPercent: number;
  seqScanMinRows: number;
  cacheHitWarnRatio: number;
}

/** Connections, long-running and blocked queries, top statements, sequential scans, cache hits, idle sessions and replication (AlphaPulse 2.1), with findings. */
export async function triageReport(deps: ActivityDeps, req: TriageRequest): Promise<TriageReport> {
  const db = resolveDb(deps, req.database);
  return withClient(db.url, db.secrets, async (c) => {
    const sessions = await readSessions(c, req);
    const statements = await readTopStatements(c);
    const tables = await readTableScans(c, req);
    const idle = await readIdle(c, req);
    const replication = await readReplication(deps, db, c);
    return {
      maxConnections: sessions.maxConnections,
      connectionsByState: sessions.connectionsByState,
      connectionsPercent: sessions.connectionsPercent,
      longRunning: sessions.longRunning,
      blocked: sessions.blocked,
      ...statements,
      seqScanHeavy: tables.seqScanHeavy,
      cacheHitRatio: tables.cacheHitRatio,
      idleOlderThan: idle,
      replication,
      findings: [...triageFindings(req, sessions, tables, statements.worstPlan ?? null), ...replicationFindings(replication, deps.config.thresholds)],
    };
  });
}

type Sessions = Pick<TriageReport, 'maxConnections' | 'connectionsByState' | 'connectionsPercent' | 'longRunning' | 'blocked'> & { total: number };

async function readSessions(c: pg.Client, req: TriageRequest): Promise<Sessions> {
  const max = Number((await c.query<{ max_connections: string }>('SHOW max_connections')).rows[0]!.max_connections);
  const states = await c.query<{ state: string | null; n: string }>(
    `SELECT coalesce(state, 'unknown') AS state, count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 1`,
  );
  const connectionsByState = Object.fromEntries(states.rows.map((r) => [r.state ?? 'unknown', Number(r.n)]));
  const total = Object.values(connectionsByState).reduce((a, b) => a + b, 0);
  const long = await c.query<{ pid: number; state: string; seconds: number; query: string; usename: string }>(
    `SELECT pid, state, extract(epoch FROM now() - query_start)::float8 AS seconds, left(query, 500) AS query, coalesce(usename, '') AS usename
       FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND state <> 'idle' AND pid <> pg_backend_pid()
        AND query_start < now() - make_interval(secs => $1)
      ORDER BY query_start`,
    [req.longQuerySeconds],
  );
  const blocked = await c.query<{ blocked_pid: number; blocked_query: string; blocking_pid: number; blocking_query: string; seconds: number }>(
    `SELECT a.pid AS blocked_pid, left(a.query, 300) AS blocked_query, b.pid AS blocking_pid, left(b.query, 300) AS blocking_query,
            extract(epoch FROM now() - a.query_start)::float8 AS seconds
       FROM pg_stat_activity a
       JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS bp(pid) ON true
       JOIN pg_stat_activity b ON b.pid = bp.pid
      ORDER BY a.query_start`,
  );
  return {
    maxConnections: max,
    connectionsByState,
    connectionsPercent: Math.round((total / max) * 1000) / 10,
    total,
    longRunning: long.rows.map((r) => ({ pid: r.pid, state: r.state, seconds: Math.round(r.seconds), query: r.query, user: r.usename })),
    blocked: blocked.rows.map((r) => ({
      blockedPid: r.blocked_pid,
      blockedQuery: r.blocked_query,
      blockingPid: r.blocking_pid,
      blockingQuery: r.blocking_query,
      seconds: Math.round(r.seconds),
    })),
  };
}

/** Fulcrum 4.2 "Check Missing Indexes": tables with more sequential scans than this are listed. */
export const SEQ_SCAN_LIST_MIN = 100;
/** Statements whose plan may be shown: what PREPARE accepts, never utility commands. */
const EXPLAINABLE = /^\s*(select|with|values|table|insert|update|delete)\b/i;

async function readTopStatements(c: pg.Client): Promise<Pick<TriageReport, 'topStatements' | 'statStatementsNote' | 'worstPlan' | 'worstPlanNote'>> {
  const preload = (await c.query<{ s: string }>(`SELECT current_setting('shared_preload_libraries') AS s`)).rows[0]!.s;
  if (!/\bpg_stat_statements\b/.test(preload)) {
    const note = 'pg_stat_statements is not in shared_preload_libraries: add it (and restart PostgreSQL) to see the top queries';
    return { topStatements: null, statStatementsNote: note, worstPlan: null, worstPlanNote: note };
  }
  let top: pg.QueryResult<{ query: string; calls: string; total: number; mean: number; max: number }>;
  try {
    await c.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    // Fulcrum 4.2 "Find Slow Queries": this database's statements, slowest mean first.
    top = await c.query(
      `SELECT query, calls, total_exec_time::float8 AS total, mean_exec_time::float8 AS mean, max_exec_time::float8 AS max
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        ORDER BY mean_exec_time DESC LIMIT 10`,
    );
  } catch (err) {
    const note = `pg_stat_statements unavailable: ${(err as Error).message}`;
    return { topStatements: null, statStatementsNote: note, worstPlan: null, worstPlanNote: note };
  }
  const round = (ms: number) => Math.round(ms * 100) / 100;
  const worst = top.rows.find((r) => EXPLAINABLE.test(r.query));
  const plan = worst ? await explainStatement(c, worst.query) : { plan: null, note: 'no SELECT/INSERT/UPDATE/DELETE among the top statements to explain' };
  return {
    topStatements: top.rows.map((r) => ({ query: r.query.slice(0, 300), calls: Number(r.calls), totalMs: round(r.total), meanMs: round(r.mean), maxMs: round(r.max) })),
    statStatementsNote: 'top 10 by mean execution time (Fulcrum 4.2)',
    worstPlan: worst && plan.plan ? { query: worst.query.slice(0, 300), meanMs: round(worst.mean), plan: plan.plan, seqScans: seqScansIn(plan.plan) } : null,
    worstPlanNote: plan.note,
  };
}

/** Tables a text plan reads with a sequential scan. */
function seqScansIn(plan: string[]): string[] {
  return [...new Set(plan.flatMap((l) => /Seq Scan on (\S+)/.exec(l)?.[1] ?? []))];
}

/**
 * The plan of a statement from pg_stat_statements, without ever running it. Its text is
 * normalized (constants became $1, $2, ...), so it cannot be explained as it stands:
 * PostgreSQL 16+ has EXPLAIN (GENERIC_PLAN) for exactly that; before 16 the text is
 * PREPAREd (parameter types inferred) and the generic plan of EXECUTE with NULLs is
 * explained (plan_cache_mode = force_generic_plan, so the NULLs are not folded into the
 * plan). Both only plan: no ANALYZE, inside a READ ONLY transaction that is rolled back,
 * and a text holding a second statement is refused.
 */
export async function explainStatement(c: pg.Client, text: string): Promise<{ plan: string[] | null; note: string }> {
  const statement = text.trim().replace(/;\s*$/, '');
  if (!EXPLAINABLE.test(statement)) return { plan: null, note: 'only SELECT, INSERT, UPDATE and DELETE statements are explained' };
  if (statement.includes(';')) return { plan: null, note: 'not explained: the text holds more than one statement' };
  const version = Number((await c.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0]!.v);
  const generic = version >= 160000;
  const params = Math.max(0, ...[...statement.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
  await c.query('BEGIN READ ONLY');
  try {
    await c.query(`SET LOCAL statement_timeout = '5s'`);
    let rows: Array<Record<string, string>>;
    if (generic) {
      rows = (await c.query<Record<string, string>>(`EXPLAIN (GENERIC_PLAN, FORMAT TEXT) ${statement}`)).rows;
    } else {
      await c.query(`SET LOCAL plan_cache_mode = force_generic_plan`);
      await c.query(`PREPARE runbook_explain AS ${statement}`);
      try {
        const args = params > 0 ? `(${Array.from({ length: params }, () => 'NULL').join(', ')})` : '';
        rows = (await c.query<Record<string, string>>(`EXPLAIN (FORMAT TEXT) EXECUTE runbook_explain${args}`)).rows;
      } finally {
        await c.query('DEALLOCATE runbook_explain').catch(() => undefined);
      }
    }
    const how = generic ? 'EXPLAIN (GENERIC_PLAN), not executed' : 'PREPARE + EXPLAIN EXECUTE with NULL parameters (generic plan, PostgreSQL < 16), not executed';
    return { plan: rows.map((r) => r['QUERY PLAN'] ?? Object.values(r)[0] ?? ''), note: how };
  } catch (err) {
    return { plan: null, note: `could not explain the normalized text${generic ? '' : ' on PostgreSQL < 16 (no GENERIC_PLAN)'}: ${(err as Error).message}` };
  } finally {
    await c.query('ROLLBACK').catch(() => undefined);
  }
}

/** `relnames`: the raw names of the seq-scan-heavy tables, as the finding names them. */
type TableScans = Pick<TriageReport, 'seqScanHeavy' | 'cacheHitRatio'> & { relnames: string[] };

async function readTableScans(c: pg.Client, req: TriageRequest): Promise<TableScans> {
  // Fulcrum 4.2 "Check Missing Indexes": seq_scan > 100, most first, with the index hit rate.
  const seq = await c.query<{ schemaname: string; relname: string; seq_scan: string; seq_tup_read: string; idx_scan: string | null; idx_hit_rate: number }>(
    `SELECT schemaname, relname, seq_scan, seq_tup_read, idx_scan,
            CASE WHEN seq_scan + coalesce(idx_scan, 0) > 0 THEN round(100.0 * coalesce(idx_scan, 0) / (seq_scan + coalesce(idx_scan, 0)), 2) ELSE 0 END::float8 AS idx_hit_rate
       FROM pg_stat_user_tables WHERE seq_scan > $1 ORDER BY seq_scan DESC LIMIT 10`,
    [SEQ_SCAN_LIST_MIN],
  );
  const hit = await c.query<{ ratio: number | null }>(
    `SELECT (sum(heap_blks_hit) / nullif(sum(heap_blks_hit) + sum(heap_blks_read), 0))::float8 AS ratio FROM pg_statio_user_tables`,
  );
  // An index candidate: more sequential than index scans, and the scans read many rows (a small table is cheaper to scan).
  const candidates = seq.rows.filter((r) => Number(r.seq_scan) > Number(r.idx_scan ?? 0) && Number(r.seq_tup_read) >= req.seqScanMinRows);
  return {
    seqScanHeavy: seq.rows.map((r) => ({
      table: tableName(r.schemaname, r.relname),
      seqScans: Number(r.seq_scan),
      seqRows: Number(r.seq_tup_read),
      indexScans: Number(r.idx_scan ?? 0),
      idxHitRate: r.idx_hit_rate,
    })),
    cacheHitRatio: hit.rows[0]?.ratio ?? null,
    relnames: candidates.map((r) => r.relname),
  };
}

async function readIdle(c: pg.Client, req: TriageRequest): Promise<TriageReport['idleOlderThan']> {
  const idle = await c.query<{ pid: number; usename: string; seconds: number }>(
    `SELECT pid, coalesce(usename, '') AS usename, extract(epoch FROM now() - state_change)::float8 AS seconds
       FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND state = 'idle' AND pid <> pg_backend_pid()
        AND state_change < now() - make_interval(secs => $1)
      ORDER BY state_change`,
    [req.idleMinutes * 60],
  );
  return idle.rows.map((r) => ({ pid: r.pid, user: r.usename, idleSeconds: Math.round(r.seconds) }));
}

function triageFindings(req: TriageRequest, s: Sessions, t: TableScans, worst: TriageReport['worstPlan']): TriageFinding[] {
  const { maxConnections: max, total, connectionsPercent: percent } = s;
  const cacheHitRatio = t.cacheHitRatio;
  const findings: TriageFinding[] = [
    percent > req.connectionsAlertPercent
      ? { severity: 'P1', check: 'connections', detail: `${total} of max_connections ${max} in use (${percent} % > ${req.connectionsAlertPercent} %)` }
      : { severity: 'OK', check: 'connections', detail: `${total} of ${max} (${percent} %)` },
    s.longRunning.length > 0
      ? { severity: 'P2', check: 'long-running queries', detail: `${s.longRunning.length} running over ${req.longQuerySeconds}s: pids ${s.longRunning.map((r) => r.pid).join(', ')}` }
      : { severity: 'OK', check: 'long-running queries', detail: `none over ${req.longQuerySeconds}s` },
    s.blocked.length > 0
      ? { severity: 'P1', check: 'locks', detail: s.blocked.map((r) => `${r.blockingPid} blocks ${r.blockedPid}`).join(', ') }
      : { severity: 'OK', check: 'locks', detail: 'no blocked queries' },
    cacheHitRatio !== null && cacheHitRatio < req.cacheHitWarnRatio
      ? { severity: 'P2', check: 'cache hit ratio', detail: `${cacheHitRatio.toFixed(3)} < ${req.cacheHitWarnRatio}` }
      : { severity: 'OK', check: 'cache hit ratio', detail: cacheHitRatio === null ? 'no reads yet' : cacheHitRatio.toFixed(3) },
  ];
  if (t.relnames.length > 0) {
    findings.push({ severity: 'P2', check: 'sequential scans', detail: `index candidates: ${t.relnames.join(', ')}` });
  }
  if (worst && worst.seqScans.length > 0) {
    findings.push({
      severity: 'P2',
      check: 'slowest statement plan',
      detail: `mean ${worst.meanMs} ms; its plan scans ${worst.seqScans.join(', ')} sequentially (an index may help): ${worst.query.slice(0, 120)}`,
    });
  }
  return findings;
}

export interface SignalRequest {
  database: string;
  pids: number[];
  action: 'cancel' | 'terminate';
  idleSinceMinutes?: number;
}

/**
 * Cancels or terminates backends. `idleSinceMinutes` re-checks at the moment of acting that
 * each one is still idle that long, so a connection that woke up since the approval is spared.
 * A PID that is already gone is reported as not done; re-running is harmless.
 */
export async function signalBackends(deps: ActivityDeps, req: SignalRequest): Promise<PidAction[]> {
  if (req.pids.some((p) => !Number.isInteger(p) || p <= 0)) throw ApplicationFailure.nonRetryable('pids: expected positive integers', ErrorTypes.InvalidInput);
  const db = resolveDb(deps, req.database);
  const fn = req.action === 'cancel' ? 'pg_cancel_backend' : 'pg_terminate_backend';
  return withClient(db.url, db.secrets, async (c) => {
    const r = await c.query<{ pid: number; ok: boolean }>(
      `SELECT pid, ${fn}(pid) AS ok FROM pg_stat_activity
        WHERE pid = ANY($1::int[]) AND pid <> pg_backend_pid() AND backend_type = 'client backend'
          AND ($2::float8 IS NULL OR (state = 'idle' AND state_change < now() - make_interval(secs => $2::float8)))`,
      [req.pids, req.idleSinceMinutes === undefined ? null : req.idleSinceMinutes * 60],
    );
    const ok = new Set(r.rows.filter((x) => x.ok).map((x) => x.pid));
    return req.pids.map((pid) => ({ pid, action: req.action, done: ok.has(pid) }));
  });
}
