import { Redis } from 'ioredis';
import { type Probe, round } from './probe.js';

export const probeRedis: Probe<'redis'> = async (cfg, signal) => {
  const redis = new Redis(cfg.url, {
    lazyConnect: true,
    // One attempt per probe: the caller's poll loop is the retry.
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    reconnectOnError: () => false,
    enableOfflineQueue: false,
    connectTimeout: cfg.timeoutMs,
    commandTimeout: cfg.timeoutMs,
    connectionName: 'runbook-probe',
  });
  // ioredis rejects with a bare "Connection is closed."; the reason arrives as an 'error' event.
  let lastError: Error | undefined;
  redis.on('error', (err: Error) => {
    lastError = err;
  });
  const close = () => redis.disconnect();
  signal.addEventListener('abort', close, { once: true });
  try {
    const pong = await redis
      .connect()
      .then(() => redis.ping())
      .catch((err: unknown) => {
        throw lastError && err instanceof Error && /Connection is closed/.test(err.message) ? lastError : err;
      });
    if (pong !== 'PONG') return { healthy: false, detail: `PING answered ${JSON.stringify(pong)}, expected PONG` };
    const info = parseInfo(await redis.info('memory'));
    const used = Number(info.used_memory ?? NaN);
    const max = Number(info.maxmemory ?? 0);
    const metrics: Record<string, number> = {};
    if (Number.isFinite(used)) metrics.usedMemoryBytes = used;
    if (Number.isFinite(max)) metrics.maxMemoryBytes = max;
    let detail = `PONG; used_memory ${info.used_memory_human ?? '?'}`;
    if (max > 0 && Number.isFinite(used)) {
      metrics.memoryPercent = round((used / max) * 100);
      detail += ` of maxmemory ${info.maxmemory_human ?? max} (${metrics.memoryPercent.toFixed(1)}%)`;
    } else {
      detail += ' (no maxmemory limit)';
    }
    return { healthy: true, detail, metrics };
  } finally {
    signal.removeEventListener('abort', close);
    close();
  }
};

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}
