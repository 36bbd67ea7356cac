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
    const { rows } = await client.query<{ version: string }>("SELECT 1 AS ok, current_setting('server_version') AS version");
    const queryMs = round(performance.now() - connected);
    return {
      healthy: true,
      detail: `accepting connections (PostgreSQL ${rows[0]?.version ?? 'unknown version'}), query ${queryMs}ms`,
      // The runbook's "Slow Queries" threshold is about the query, not the connection set-up.
      metrics: { latencyMs: round(performance.now() - started), connectMs: round(connected - started), queryMs },
    };
  } finally {
    signal.removeEventListener('abort', close);
    await close();
  }
};
