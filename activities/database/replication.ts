import pg from 'pg';
import type { ReplicationReport, TriageFinding } from '../../common/database/types.js';
import { threshold, type ThresholdSettings, type ThresholdSeverity } from '../../common/thresholds.js';
import { MissingEnvError, resolveEnvRefs } from '../../lib/env.js';
import { redactSecrets } from '../../lib/redact.js';
import type { ActivityDeps } from '../deps.js';
import { urlSecrets, withClient, type ResolvedDb } from './pg.js';

/**
 * AlphaPulse 2.1 Replication Lag: on the primary `pg_stat_replication` (with the lag in bytes
 * from pg_wal_lsn_diff), on each configured replica pg_is_in_recovery() and
 * now() - pg_last_xact_replay_timestamp(). Graded by the threshold table's replication rows.
 */

interface SenderRow {
  application_name: string;
  client_addr: string | null;
  state: string | null;
  sent_lsn: string | null;
  write_lsn: string | null;
  flush_lsn: string | null;
  replay_lsn: string | null;
  write_lag: number | null;
  flush_lag: number | null;
  replay_lag: number | null;
  lag_bytes: string | null;
}

/** Reads the section on `c` (the configured database) and each replica of `db`. */
export async function readReplication(deps: ActivityDeps, db: ResolvedDb, c: pg.Client): Promise<ReplicationReport> {
  const role = (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r ? 'replica' : 'primary';
  const senders =
    role === 'primary'
      ? (
          await c.query<SenderRow>(
            `SELECT application_name, client_addr::text, state, sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
                    extract(epoch FROM write_lag)::float8 AS write_lag, extract(epoch FROM flush_lag)::float8 AS flush_lag,
                    extract(epoch FROM replay_lag)::float8 AS replay_lag,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::text AS lag_bytes
               FROM pg_stat_replication ORDER BY application_name, client_addr`,
          )
        ).rows.map((r) => ({
          applicationName: r.application_name,
          clientAddr: r.client_addr,
          state: r.state ?? 'unknown',
          sentLsn: r.sent_lsn,
          writeLsn: r.write_lsn,
          flushLsn: r.flush_lsn,
          replayLsn: r.replay_lsn,
          writeLagSeconds: r.write_lag,
          flushLagSeconds: r.flush_lag,
          replayLagSeconds: r.replay_lag,
          lagBytes: r.lag_bytes === null ? null : Number(r.lag_bytes),
        }))
      : [];
  const slots =
    role === 'primary'
      ? (
          await c.query<{ slot_name: string; slot_type: string; active: boolean; wal_status: string | null; retained: string | null }>(
            `SELECT slot_name, slot_type, active, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text AS retained
               FROM pg_replication_slots ORDER BY slot_name`,
          )
        ).rows.map((r) => ({ name: r.slot_name, type: r.slot_type, active: r.active, walStatus: r.wal_status, retainedBytes: r.retained === null ? null : Number(r.retained) }))
      : [];
  const self = role === 'replica' ? await replicaSide(c) : undefined;
  const replicas: ReplicationReport['replicas'] = [];
  for (const r of db.cfg.replicas ?? []) {
    const applicationName = r.applicationName ?? r.name;
    let url: string;
    try {
      url = resolveEnvRefs(r.url, deps.env, `databases.${db.cfg.name}.replicas.${r.name}.url`);
    } catch (err) {
      if (!(err instanceof MissingEnvError)) throw err;
      replicas.push({ name: r.name, applicationName, reachable: false, error: `${err.message}; set it in the worker's environment` });
      continue;
    }
    const secrets = urlSecrets(url);
    try {
      const side = await onReplica(url, secrets, (rc) => replicaSide(rc));
      replicas.push({ name: r.name, applicationName, reachable: true, ...side });
    } catch (err) {
      replicas.push({ name: r.name, applicationName, reachable: false, error: redactSecrets((err as Error).message, secrets).slice(0, 300) });
    }
  }
  return { role, senders, slots, ...(self ? { self } : {}), replicas };
}

/** A replica that does not answer within 5 s is reported as such, not waited for: the rest of the triage still returns. */
const REPLICA_TIMEOUT_MS = 5000;

function onReplica<T>(url: string, secrets: string[], body: (c: pg.Client) => Promise<T>): Promise<T> {
  return withClient(url, secrets, body, { timeoutMs: REPLICA_TIMEOUT_MS });
}

async function replicaSide(c: pg.Client): Promise<{ inRecovery: boolean; replayTimestamp: string | null; replayAgeSeconds: number | null; caughtUp: boolean | null; receiverStatus: string | null }> {
  const r = (
    await c.query<{ rec: boolean; ts: Date | null; age: number | null; caught: boolean | null }>(
      `SELECT pg_is_in_recovery() AS rec, pg_last_xact_replay_timestamp() AS ts,
              extract(epoch FROM (now() - pg_last_xact_replay_timestamp()))::float8 AS age,
              pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() AS caught`,
    )
  ).rows[0]!;
  const recv = r.rec ? (await c.query<{ status: string }>('SELECT status FROM pg_stat_wal_receiver')).rows[0]?.status ?? null : null;
  return {
    inRecovery: r.rec,
    replayTimestamp: r.ts?.toISOString() ?? null,
    replayAgeSeconds: r.age === null ? null : Math.round(r.age * 10) / 10,
    caughtUp: r.caught,
    receiverStatus: recv,
  };
}

/** Triage findings know P1 and P2: a row raised to P0 in a later table still reads as the most urgent. */
const sev = (s: ThresholdSeverity): 'P1' | 'P2' => (s === 'P2' ? 'P2' : 'P1');

const fmtBytes = (n: number) => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${n} bytes`);

/** Findings: a configured replica not streaming (P1), lag over the seed's seconds (P1) or the byte limit (P2). */
export function replicationFindings(rep: ReplicationReport, settings?: Partial<ThresholdSettings>): TriageFinding[] {
  const secs = threshold('replication-lag', settings);
  const bytes = threshold('replication-lag-bytes', settings);
  const out: TriageFinding[] = [];
  const restart = `${secs.action} (${secs.seed})`;
  const grade = (who: string, lagSeconds: number | null, lagBytes: number | null) => {
    if (lagSeconds !== null && lagSeconds > secs.value) {
      out.push({ severity: sev(secs.severity), check: 'replication lag', detail: `${who} is ${lagSeconds.toFixed(1)} s behind (> ${secs.value} s, ${secs.seed}): ${restart}` });
    } else if (lagBytes !== null && lagBytes > bytes.value) {
      out.push({ severity: sev(bytes.severity), check: 'replication lag', detail: `${who} has ${fmtBytes(lagBytes)} of WAL not replayed (> ${fmtBytes(bytes.value)}): ${bytes.action}` });
    } else {
      out.push({ severity: 'OK', check: 'replication lag', detail: `${who}: ${lagSeconds === null ? 'no lag measured' : `${lagSeconds.toFixed(1)} s`}, ${lagBytes === null ? '?' : fmtBytes(lagBytes)} behind` });
    }
  };
  for (const cfg of rep.replicas) {
    const sender = rep.senders.find((s) => s.applicationName === cfg.applicationName);
    if (rep.role === 'primary' && (!sender || sender.state !== 'streaming')) {
      const side = cfg.reachable ? `it answers (in recovery: ${cfg.inRecovery}, WAL receiver: ${cfg.receiverStatus ?? 'none'})` : `it does not answer: ${cfg.error}`;
      out.push({
        severity: sev(secs.severity),
        check: 'replica disconnected',
        detail: `replica ${cfg.name} (${cfg.applicationName}) is ${sender ? `in state ${sender.state}` : 'missing from pg_stat_replication'}; ${side}. Start or restart the replica, check primary_conninfo and pg_hba.conf replication entries (${secs.seed})`,
      });
      continue;
    }
    if (cfg.reachable && !cfg.inRecovery) {
      out.push({ severity: 'P1', check: 'replica disconnected', detail: `replica ${cfg.name} is not in recovery (promoted?): it no longer follows this primary` });
      continue;
    }
    // The larger of the primary's replay_lag and, when WAL waits to be replayed, the replica's now() - last replay (AlphaPulse 2.1).
    const seen = [sender?.replayLagSeconds, cfg.reachable && cfg.caughtUp === false ? cfg.replayAgeSeconds : cfg.reachable ? 0 : undefined].filter((v): v is number => typeof v === 'number');
    const lag = seen.length ? Math.max(...seen) : null;
    grade(`replica ${cfg.name}`, lag, sender?.lagBytes ?? null);
  }
  for (const s of rep.senders) {
    if (rep.replicas.some((r) => r.applicationName === s.applicationName)) continue;
    grade(`standby ${s.applicationName} (${s.clientAddr ?? 'local'}, ${s.state})`, s.replayLagSeconds, s.lagBytes);
  }
  for (const slot of rep.slots ?? []) {
    if (slot.active) continue;
    out.push({
      severity: 'P2',
      check: 'replication slot',
      detail: `slot ${slot.name} (${slot.type}) is inactive and holds ${slot.retainedBytes === null ? 'no' : fmtBytes(slot.retainedBytes)} of WAL on the primary (wal_status ${slot.walStatus ?? 'unknown'}): reconnect its replica, or drop the slot if the replica is gone (pg_drop_replication_slot) before the WAL fills the disk`,
    });
  }
  if (rep.self) {
    if (rep.self.receiverStatus !== 'streaming') {
      out.push({ severity: sev(secs.severity), check: 'replica disconnected', detail: `this database is a replica whose WAL receiver is ${rep.self.receiverStatus ?? 'not running'} (${secs.seed})` });
    } else grade('this replica', rep.self.caughtUp ? 0 : rep.self.replayAgeSeconds, null);
  }
  return out;
}
