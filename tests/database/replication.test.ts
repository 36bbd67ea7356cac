import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbTriageResult } from '../../common/database/types.js';
import { threshold } from '../../common/thresholds.js';
import { probePostgres } from '../../activities/probes/postgres.js';
import { classifyProbe } from '../../common/stack/classify.js';
import type { ProbeResult } from '../../common/types.js';
import { startReplica, type PgReplica } from '../fixtures/pg-replica.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { pgConfigService, sql } from './helpers.js';

/** db-triage's replication section (AlphaPulse 2.1 Replication Lag) against a real streaming replica. */

let primary: PgServer;
let replica: PgReplica;
let appUrl: string;

beforeAll(async () => {
  primary = await startPostgres();
  appUrl = await primary.createDatabase('app');
  await sql(appUrl, 'CREATE TABLE orders (id bigserial PRIMARY KEY, note text NOT NULL)');
  await sql(appUrl, `INSERT INTO orders (note) SELECT 'first' FROM generate_series(1, 100)`);
  replica = await startReplica(primary, { name: 'replica1', database: 'app', slot: 'replica1_slot' });
}, 60_000);

afterAll(async () => {
  await replica?.stop();
  await primary?.stop();
});

/** Enough WAL for the byte figures to move: ~1 MB of rows. */
const write = (tag: string) => sql(appUrl, `INSERT INTO orders (note) SELECT $1 || repeat('x', 1000) FROM generate_series(1, 1000)`, [tag]);

/** The replica's row count once it has replayed up to `want` (5 s at most). */
async function replicaRows(want: string): Promise<string> {
  let n = '';
  for (let i = 0; i < 50 && n !== want; i++) {
    n = (await sql<{ n: string }>(replica.url, 'SELECT count(*) AS n FROM orders'))[0]!.n;
    if (n !== want) await sleep(100);
  }
  return n;
}

/** health-check's postgres probe of `url`, graded as the health table grades it. */
async function probe(url: string, thresholds: Record<string, number>) {
  const reading = await probePostgres({ type: 'postgres', url, timeoutMs: 5000 } as Parameters<typeof probePostgres>[0], new AbortController().signal, 'probes[0]');
  const result: ProbeResult = { service: 'db', index: 0, type: 'postgres', target: url, status: 'healthy', latencyMs: 1, detail: reading.detail, metrics: reading.metrics };
  return classifyProbe(result, thresholds);
}

const finding = (r: DbTriageResult, check: string) => r.report.findings.filter((f) => f.check === check);

describe('db-triage replication (AlphaPulse 2.1) with a real streaming replica', () => {
  it('has the seed defaults in the threshold table', () => {
    expect(threshold('replication-lag')).toMatchObject({ value: 60, unit: 's', severity: 'P1', seed: 'AlphaPulse 2.1', procedure: 'db-triage' });
    expect(threshold('replication-lag-bytes')).toMatchObject({ value: 16 * 1024 * 1024, unit: 'bytes', severity: 'P2' });
  });

  it('reports the replica streaming, then lagging, then disconnected with the right severities, then streaming again', async () => {
    const loaded = await writeConfig({
      environment: 'repltest',
      services: [pgConfigService(primary.url)],
      databases: [{ name: 'app', url: appUrl, service: 'postgres', replicas: [{ name: 'replica1', url: replica.url.replace('postgres@', 'postgres:${REPLICA_PASSWORD}@') }] }],
      // 3 s instead of the seed's 60 s, so a paused replay crosses it within the test.
      thresholds: { replicationLagSeconds: 3 },
    });
    // The replica's password comes from the worker's environment (trust auth ignores it) and must never reach a result.
    const password = 'replica-pw-7d1f';
    await withWorker(loaded, async ({ client, taskQueue }) => {
      let n = 0;
      const triage = () =>
        client.workflow.execute('db-triage', { taskQueue, workflowId: `db-triage-repl-${Date.now()}-${n++}`, args: [{ database: 'app', requestedBy: 'alice' }] }) as Promise<DbTriageResult>;

      // 1. Streaming: the primary lists it, the replica is in recovery, the lag is small.
      await write('one');
      // The replica has the rows (until it replays a commit, pg_last_xact_replay_timestamp() is null).
      expect(await replicaRows('1100')).toBe('1100');
      const ok = await triage();
      const rep = ok.report.replication!;
      expect(rep.role).toBe('primary');
      const sender = rep.senders.find((s) => s.applicationName === 'replica1')!;
      expect(sender).toMatchObject({ state: 'streaming', clientAddr: '127.0.0.1/32' });
      expect(sender.replayLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      expect(sender.lagBytes).toBeGreaterThanOrEqual(0);
      expect(sender.lagBytes).toBeLessThan(1024 * 1024);
      expect(rep.replicas[0]).toMatchObject({ name: 'replica1', reachable: true, inRecovery: true, receiverStatus: 'streaming' });
      expect(rep.replicas[0]!.replayTimestamp).not.toBeNull();
      expect(finding(ok, 'replication lag')).toEqual([{ severity: 'OK', check: 'replication lag', detail: expect.stringMatching(/^replica replica1: /) }]);
      expect(finding(ok, 'replica disconnected')).toEqual([]);
      expect(rep.slots).toEqual([expect.objectContaining({ name: 'replica1_slot', type: 'physical', active: true })]);
      expect(finding(ok, 'replication slot')).toEqual([]);
      // health-check's probe: the replica says it is one, with no lag; the primary has no lag metric.
      const replicaProbe = await probe(replica.url, { replicationLagSeconds: 3 });
      expect(replicaProbe).toMatchObject({ severity: 'OK', detail: expect.stringMatching(/, replica, replay lag 0s\)/), metrics: { replicationLagSeconds: 0 } });
      expect((await probe(appUrl, {})).metrics!.replicationLagSeconds).toBeUndefined();

      // 2. Connected but behind: replay paused on the replica while the primary writes.
      await sql(replica.url, 'SELECT pg_wal_replay_pause()');
      await write('two');
      const target = (await sql<{ l: string }>(appUrl, 'SELECT pg_current_wal_lsn()::text AS l'))[0]!.l;
      for (let i = 0; i < 100; i++) {
        const got = await sql<{ ok: boolean }>(replica.url, 'SELECT pg_last_wal_receive_lsn() >= $1::pg_lsn AS ok', [target]);
        if (got[0]!.ok) break;
        await sleep(100);
      }
      await sleep(3500);
      const behind = await triage();
      expect(finding(behind, 'replication lag')).toEqual([
        { severity: 'P1', check: 'replication lag', detail: expect.stringMatching(/^replica replica1 is [\d.]+ s behind \(> 3 s, AlphaPulse 2\.1\): Restart the replica/) },
      ]);
      expect(behind.report.replication!.replicas[0]).toMatchObject({ reachable: true, caughtUp: false });
      expect(behind.report.replication!.senders[0]!.lagBytes).toBeGreaterThan(500_000);
      expect(behind.ok).toBe(false);
      expect(await probe(replica.url, { replicationLagSeconds: 3 })).toMatchObject({ severity: 'P1', reason: expect.stringMatching(/^Replication Lag >3s \([\d.]+s\)$/) });
      await sql(replica.url, 'SELECT pg_wal_replay_resume()');

      // 3. Stopped: missing from pg_stat_replication while the primary keeps writing.
      await replica.pause();
      await write('three');
      const down = await triage();
      expect(down.report.replication!.senders.find((s) => s.applicationName === 'replica1')).toBeUndefined();
      expect(down.report.replication!.replicas[0]).toMatchObject({ name: 'replica1', reachable: false });
      expect(finding(down, 'replica disconnected')).toEqual([
        { severity: 'P1', check: 'replica disconnected', detail: expect.stringMatching(/^replica replica1 \(replica1\) is missing from pg_stat_replication; it does not answer: .*Start or restart the replica/) },
      ]);
      expect(down.ok).toBe(false);
      // Its slot keeps the WAL it has not received (the ~1 MB just written) on the primary.
      const slot = down.report.replication!.slots!.find((x) => x.name === 'replica1_slot')!;
      expect(slot).toMatchObject({ active: false });
      expect(slot.retainedBytes).toBeGreaterThan(1_000_000);
      expect(finding(down, 'replication slot')).toEqual([{ severity: 'P2', check: 'replication slot', detail: expect.stringMatching(/^slot replica1_slot \(physical\) is inactive and holds [\d.]+ MiB of WAL/) }]);
      expect(JSON.stringify(down)).not.toContain(password);
      expect(JSON.stringify(ok)).not.toContain(password);

      // 4. Started again: it catches up and streams.
      await replica.resume();
      const back = await triage();
      expect(back.report.replication!.senders.find((s) => s.applicationName === 'replica1')).toMatchObject({ state: 'streaming' });
      expect(finding(back, 'replica disconnected')).toEqual([]);
      expect(finding(back, 'replication slot')).toEqual([]);
      expect(finding(back, 'replication lag')[0]).toMatchObject({ severity: 'OK' });
      expect(await replicaRows('3100')).toBe('3100');
      expect(back.ok).toBe(true);
    }, { env: { ...process.env, REPLICA_PASSWORD: password } });
  }, 60_000);
});
