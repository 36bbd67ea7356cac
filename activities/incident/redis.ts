import { Redis } from 'ioredis';
import type { TriageFinding } from '../../common/incident/types.js';
import { breaches, describeThreshold, threshold, type ThresholdSettings } from '../../common/thresholds.js';

/**
 * Redis readings and remediations for redis-triage (Fulcrum 3.4, AlphaPulse 2.2
 * High Memory Usage). Keys are found with SCAN and removed with UNLINK: KEYS blocks
 * the server on a large keyspace and is never used.
 */

export interface RedisReading {
  pong: boolean;
  usedMemory: number;
  maxMemory: number;
  memoryPercent: number | null;
  policy: string;
  evictedKeys: number;
  hits: number;
  misses: number;
  hitRatePercent: number | null;
  connectedClients: number;
  blockedClients: number;
  keys: number;
  slowlog: Array<{ id: number; durationMicros: number; command: string }>;
}

export interface RedisThresholds {
  /** The config's `thresholds`: Memory Usage (Fulcrum 2.3) and Redis Memory (AlphaPulse 4.2) rows of common/thresholds.ts. */
  table: Partial<ThresholdSettings>;
  hitRateMinPercent: number;
  expectedPolicy: string;
}

/** AlphaPulse 2.2: hit rate target >85 %, eviction policy allkeys-lru. */
export const REDIS_THRESHOLDS: RedisThresholds = { table: {}, hitRateMinPercent: 85, expectedPolicy: 'allkeys-lru' };

export function connectRedis(url: string, name: string): Redis {
  const redis = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
    enableOfflineQueue: false,
    connectTimeout: 5000,
    commandTimeout: 10_000,
    connectionName: name,
  });
  redis.on('error', () => undefined);
  return redis;
}

export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

export async function readRedis(redis: Redis, slowlogEntries: number): Promise<RedisReading> {
  const pong = (await redis.ping()) === 'PONG';
  const info = parseInfo(await redis.info());
  const num = (k: string) => Number(info[k] ?? 0) || 0;
  const policy = ((await redis.config('GET', 'maxmemory-policy')) as string[])[1] ?? info.maxmemory_policy ?? '?';
  const raw = (await redis.call('SLOWLOG', 'GET', String(slowlogEntries))) as Array<[number, number, number, string[]]>;
  const usedMemory = num('used_memory');
  const maxMemory = num('maxmemory');
  const hits = num('keyspace_hits');
  const misses = num('keyspace_misses');
  return {
    pong,
    usedMemory,
    maxMemory,
    memoryPercent: maxMemory > 0 ? round((usedMemory / maxMemory) * 100) : null,
    policy,
    evictedKeys: num('evicted_keys'),
    hits,
    misses,
    hitRatePercent: hits + misses > 0 ? round((hits / (hits + misses)) * 100) : null,
    connectedClients: num('connected_clients'),
    blockedClients: num('blocked_clients'),
    keys: await redis.dbsize(),
    slowlog: raw.map((e) => ({ id: Number(e[0]), durationMicros: Number(e[2]), command: (e[3] ?? []).slice(0, 4).join(' ').slice(0, 120) })),
  };
}

/** The runbook's thresholds applied to one reading. */
export function classifyRedis(r: RedisReading, t: RedisThresholds = REDIS_THRESHOLDS): TriageFinding[] {
  const f: TriageFinding[] = [];
  f.push({ check: 'ping', severity: r.pong ? 'OK' : 'P0', detail: r.pong ? 'PONG' : 'no PONG' });
  if (r.memoryPercent === null) {
    f.push({ check: 'memory', severity: 'P2', detail: `used ${mb(r.usedMemory)}; no maxmemory limit set (Redis can grow until the host runs out)` });
  } else {
    // Graded by every row it is over, the worst one winning: Redis Memory >90% is P2 (AlphaPulse 4.2),
    // and the same reading is over Memory Usage >80% (Fulcrum 2.3, P1).
    const rows = [threshold('memory-usage', t.table), threshold('redis-memory', t.table)];
    const over = rows.filter((row) => breaches(row, r.memoryPercent!)).sort((a, b) => a.severity.localeCompare(b.severity));
    f.push({
      check: 'memory',
      severity: over[0]?.severity ?? 'OK',
      detail:
        `${r.memoryPercent}% of maxmemory (${mb(r.usedMemory)} / ${mb(r.maxMemory)}); ` +
        (over.length > 0 ? `over ${over.map((row) => `${describeThreshold(row)} ${row.severity}`).join(', ')}` : `under ${rows.map((row) => `${row.value}%`).join(' and ')}`),
    });
  }
  f.push({
    check: 'maxmemory-policy',
    severity: r.policy === t.expectedPolicy ? 'OK' : 'P1',
    detail: r.policy === t.expectedPolicy ? r.policy : `${r.policy}, should be ${t.expectedPolicy}: CONFIG SET maxmemory-policy ${t.expectedPolicy}`,
  });
  f.push({ check: 'evictions', severity: r.evictedKeys > 0 ? 'P2' : 'OK', detail: `${r.evictedKeys} keys evicted` });
  const missRow = threshold('cache-miss-rate', t.table);
  f.push({
    check: 'hit rate',
    severity: r.hitRatePercent !== null && (r.hitRatePercent < t.hitRateMinPercent || breaches(missRow, 100 - r.hitRatePercent)) ? missRow.severity : 'OK',
    detail:
      r.hitRatePercent === null
        ? 'no lookups yet'
        : `${r.hitRatePercent}% (${r.hits} hits, ${r.misses} misses); minimum ${t.hitRateMinPercent}% (AlphaPulse 2.2), Cache Miss Rate >${missRow.value}% (Fulcrum 2.3)`,
  });
  const slow = r.slowlog[0];
  f.push({
    check: 'slowlog',
    severity: r.slowlog.length > 0 ? 'INFO' : 'OK',
    detail: r.slowlog.length > 0 ? `${r.slowlog.length} entries; slowest recent: ${slow!.command} (${slow!.durationMicros} µs)` : 'empty',
  });
  f.push({ check: 'clients', severity: 'INFO', detail: `${r.connectedClients} connected, ${r.blockedClients} blocked; ${r.keys} keys` });
  return f;
}

/** SCAN + UNLINK in batches; calls `progress` per batch (the activity heartbeats). Safe to repeat. */
export async function unlinkByPattern(redis: Redis, pattern: string, progress: (deleted: number) => void): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
    progress(deleted);
  } while (cursor !== '0');
  return deleted;
}

/** How many keys SCAN may look at to count a pattern's matches for an approver: enough for a cache, bounded for a huge one. */
export const MATCH_COUNT_BUDGET = 100_000;

/**
 * Keys matching `pattern`, counted with SCAN (never KEYS) until `budget` keys were looked at:
 * exact when `complete` (SCAN may report a key twice while the table rehashes, so "about").
 * Read-only: what the approver of a delete by pattern is shown.
 */
export async function countByPattern(redis: Redis, pattern: string, budget = MATCH_COUNT_BUDGET): Promise<{ matched: number; complete: boolean; sample: string[] }> {
  let cursor = '0';
  let matched = 0;
  let looked = 0;
  const sample: string[] = [];
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    cursor = next;
    matched += keys.length;
    looked += 500;
    for (const k of keys) if (sample.length < 3) sample.push(k);
  } while (cursor !== '0' && looked < budget);
  return { matched, complete: cursor === '0', sample };
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
