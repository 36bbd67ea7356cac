import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbTriageResult } from '../../common/database/types.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { pgConfigService, sql } from './helpers.js';

let pgs: PgServer;
let appUrl: string;

beforeAll(async () => {
  pgs = await startPostgres({ settings: { autovacuum: 'off', shared_preload_libraries: 'pg_stat_statements' } });
  appUrl = await pgs.createDatabase('app');
  await sql(appUrl, 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  // No index on payload: the slow statement scans the whole table each time.
  await sql(appUrl, 'CREATE TABLE events (id bigserial PRIMARY KEY, tenant_id text NOT NULL, payload text NOT NULL)');
  await sql(appUrl, `INSERT INTO events (tenant_id, payload) SELECT 't' || (g % 50), md5(g::text) || repeat('x', 80) FROM generate_series(1, 200000) g`);
  await sql(appUrl, 'ANALYZE events');
  await sql(appUrl, 'SELECT pg_stat_statements_reset()');
}, 60_000);

afterAll(async () => {
  await pgs?.stop();
});

async function seqScans(): Promise<number> {
  await sql(appUrl, 'SELECT pg_stat_force_next_flush()');
  return Number((await sql<{ n: string }>(appUrl, `SELECT seq_scan AS n FROM pg_stat_user_tables WHERE relname = 'events'`))[0]!.n);
}

describe('db-triage slow queries (Fulcrum 4.2)', () => {
  it('ranks statements by mean time, lists tables over 100 sequential scans and explains the slowest without running it', async () => {
    const app = new pg.Client({ connectionString: appUrl });
    await app.connect();
    try {
      // The application: a slow search without an index, 110 times, and fast primary-key reads.
      for (let i = 0; i < 110; i++) await app.query('SELECT count(*) FROM events WHERE payload LIKE $1', [`%${i}abc%`]);
      for (let i = 1; i <= 200; i++) await app.query('SELECT tenant_id FROM events WHERE id = $1', [i]);
      await app.query('SELECT pg_stat_force_next_flush()');
    } finally {
      await app.end();
    }
    const scansBefore = await seqScans();
    const calls = async () =>
      Number((await sql<{ n: string }>(appUrl, `SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_statements WHERE query LIKE 'SELECT count(*) FROM events WHERE payload LIKE%'`))[0]!.n);
    const callsBefore = await calls();
    expect(callsBefore).toBe(110);

    const loaded = await writeConfig({
      environment: 'slowtest',
      services: [pgConfigService(pgs.url)],
      databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
      approvals: { approvers: { default: ['alice', 'bob'] } },
    });
    const r = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('db-triage', { taskQueue, workflowId: `db-triage-slow-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice' }] }),
    ) as DbTriageResult;
    const { report } = r;

    // Ranked by mean, as the seed's query orders them; the normalized text keeps its $1.
    const top = report.topStatements!;
    expect(report.statStatementsNote).toMatch(/mean execution time/);
    expect(top[0]!.query).toBe('SELECT count(*) FROM events WHERE payload LIKE $1');
    expect(top[0]!.calls).toBe(110);
    expect(top.map((s) => s.meanMs)).toEqual([...top.map((s) => s.meanMs)].sort((a, b) => b - a));
    // The fast primary-key read, called twice as often, ranks below (or out of the top 10).
    const pk = top.findIndex((s) => s.query === 'SELECT tenant_id FROM events WHERE id = $1');
    expect(pk === -1 || pk > 0).toBe(true);
    expect(top[0]!.maxMs).toBeGreaterThanOrEqual(top[0]!.meanMs);

    // Missing indexes: events has over 100 sequential scans and a low share of index scans.
    const events = report.seqScanHeavy.find((t) => t.table === 'events')!;
    expect(events.seqScans).toBeGreaterThan(100);
    expect(events.indexScans).toBe(200);
    expect(events.idxHitRate).toBeCloseTo((100 * 200) / (200 + events.seqScans), 1);
    expect(report.findings).toContainEqual({ severity: 'P2', check: 'sequential scans', detail: 'index candidates: events' });

    // The plan of the slowest statement: a sequential scan on events, from a plan only.
    expect(report.worstPlan?.query).toBe('SELECT count(*) FROM events WHERE payload LIKE $1');
    expect(report.worstPlan!.plan.join('\n')).toMatch(/Seq Scan on events/);
    expect(report.worstPlan!.plan.join('\n')).not.toMatch(/actual time/);
    expect(report.worstPlan!.seqScans).toEqual(['events']);
    expect(report.worstPlanNote).toMatch(/not executed/);
    expect(report.findings.find((f) => f.check === 'slowest statement plan')).toMatchObject({ severity: 'P2', detail: expect.stringContaining('scans events sequentially') });

    // Nothing ran: events was not scanned again and the statement has no new calls.
    expect(await seqScans()).toBe(scansBefore);
    expect(await calls()).toBe(callsBefore);
  }, 60_000);
});
