import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { type Probe, closeQuietly, round } from './probe.js';

export const probePostgres: Probe<'postgres'> = async (cfg, signal) => {
  const started = performance.now();
  const client = new pg.Client({
    connectionString: cfg.url,
    connectionTimeoutMillis: cfg.timeoutMs,
    query_timeout: cfg.timeoutMs,
    application_name: 'runbook-probe',
  });
  // A dropped connection is reported by the failing call; the event must not crash the worker.
  client.on('error', () => undefined);
  const close = () => closeQuietly(() => client.end());
  signal.addEventListener('abort', close, { once: true });
  try {
    await client.connect();
    const connected = performance.now();
    const { rows } = await client.query<{ version: string; replica: boolean; lag: number | null }>(
      `SELECT 1 AS ok, current_setting('server_version') AS version, pg_is_in_recovery() AS replica,
              CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                   ELSE extract(epoch FROM (now() - pg_last_xact_replay_timestamp()))::float8 END AS lag`,
    );
    const queryMs = round(performance.now() - connected);
    const row = rows[0];
    // A replica: AlphaPulse 2.1's now() - pg_last_xact_replay_timestamp(), 0 while everything received is replayed.
    const lag = row?.replica && row.lag !== null ? round(row.lag) : undefined;
    return {
      healthy: true,
      detail: `accepting connections (PostgreSQL ${row?.version ?? 'unknown version'}${row?.replica ? `, replica${lag === undefined ? '' : `, replay lag ${lag}s`}` : ''}), query ${queryMs}ms`,
      // The runbook's "Slow Queries" threshold is about the query, not the connection set-up.
      metrics: { latencyMs: round(performance.now() - started), connectMs: round(connected - started), queryMs, ...(lag === undefined ? {} : { replicationLagSeconds: lag }) },
    };
  } finally {
    signal.removeEventListener('abort', close);
    await close();
  }
};
