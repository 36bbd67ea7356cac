import type { ProcedureId } from './procedures.js';

/**
 * The alert thresholds of both seed runbooks in one table (Fulcrum 2.3, AlphaPulse 4.2,
 * AlphaPulse 2.1): what the probes and triage runbooks grade with, what `health-watch`
 * requires to hold, and what `runbook alerts export` turns into Prometheus rules.
 * Workflow-safe: plain data and functions, no zod.
 */

export type ThresholdSeverity = 'P0' | 'P1' | 'P2';
export type Comparison = '>' | '<' | '==';

export interface ThresholdRow {
  id: ThresholdId;
  /** Prometheus alert name. */
  alert: string;
  /** What is measured, as the seed names it. */
  metric: string;
  comparison: Comparison;
  /** The seed's value, in `unit`. */
  value: number;
  unit: '%' | 'ms' | 's' | 'bytes' | 'messages' | 'healthy';
  /** How long the condition must hold before it counts (the seed's "for 2min"); 0 = at once. */
  forSeconds: number;
  severity: ThresholdSeverity;
  /** Where the default comes from, e.g. "Fulcrum 2.3". */
  seed: string;
  /** The seed's action for the row. */
  action: string;
  /** The runbook procedure to run when it fires. */
  procedure: ProcedureId;
  /** The key under `thresholds` in the config that overrides `value`, when there is one. */
  configKey?: ThresholdValueKey;
}

export const THRESHOLD_IDS = [
  'service-down',
  'database-down',
  'error-rate-critical',
  'error-rate-warning',
  'policy-latency-p99',
  'memory-usage',
  'nats-lag',
  'cache-miss-rate',
  'slow-probe',
  'disk-usage',
  'api-latency-p99',
  'api-error-rate',
  'db-connection-pool',
  'redis-memory',
  'slow-query',
  'replication-lag',
  'replication-lag-bytes',
] as const;

export type ThresholdId = (typeof THRESHOLD_IDS)[number];

/** The flat value keys of the config's `thresholds` (the first three predate this table and keep working). */
export const THRESHOLD_VALUE_KEYS = [
  'slowProbeMs',
  'memoryWarnPercent',
  'natsLagMessages',
  'errorRateCriticalPercent',
  'errorRateWarnPercent',
  'policyLatencyP99Ms',
  'cacheMissPercent',
  'diskPercent',
  'apiLatencyP99Ms',
  'apiErrorRatePercent',
  'connectionPoolPercent',
  'redisMemoryPercent',
  'slowQueryMs',
  'replicationLagSeconds',
  'replicationLagBytes',
] as const;

export type ThresholdValueKey = (typeof THRESHOLD_VALUE_KEYS)[number];

/**
 * The config's `thresholds` as a plan carries it. Only the first three keys are in plans
 * recorded before this table existed: every reader falls back to the row's default.
 */
export interface ThresholdSettings extends Partial<Record<ThresholdValueKey, number>> {
  slowProbeMs: number;
  memoryWarnPercent: number;
  natsLagMessages: number;
  /** Per-row duration overrides, seconds (e.g. short ones in tests). */
  forSeconds?: Partial<Record<ThresholdId, number>>;
}

const MIN = 60;

export const THRESHOLDS: readonly ThresholdRow[] = [
  { id: 'service-down', alert: 'ServiceDown', metric: 'healthy instances', comparison: '==', value: 0, unit: 'healthy', forSeconds: 2 * MIN, severity: 'P0', seed: 'Fulcrum 2.3, AlphaPulse 4.2', action: 'Page on-call', procedure: 'health-check' },
  { id: 'database-down', alert: 'DatabaseDown', metric: 'database answers', comparison: '==', value: 0, unit: 'healthy', forSeconds: 0, severity: 'P0', seed: 'Fulcrum 2.3', action: 'Page on-call', procedure: 'db-triage' },
  { id: 'error-rate-critical', alert: 'ErrorRateCritical', metric: 'error rate', comparison: '>', value: 20, unit: '%', forSeconds: 2 * MIN, severity: 'P0', seed: 'Fulcrum 2.3', action: 'Page on-call', procedure: 'service-error-triage', configKey: 'errorRateCriticalPercent' },
  { id: 'error-rate-warning', alert: 'ErrorRateHigh', metric: 'error rate', comparison: '>', value: 5, unit: '%', forSeconds: 5 * MIN, severity: 'P1', seed: 'Fulcrum 2.3', action: 'Investigate', procedure: 'service-error-triage', configKey: 'errorRateWarnPercent' },
  { id: 'policy-latency-p99', alert: 'PolicyLatencyHigh', metric: 'policy evaluation p99', comparison: '>', value: 10, unit: 'ms', forSeconds: 5 * MIN, severity: 'P1', seed: 'Fulcrum 2.3', action: 'Investigate', procedure: 'latency-triage', configKey: 'policyLatencyP99Ms' },
  { id: 'memory-usage', alert: 'MemoryUsageHigh', metric: 'memory usage', comparison: '>', value: 80, unit: '%', forSeconds: 10 * MIN, severity: 'P1', seed: 'Fulcrum 2.3', action: 'Scale or optimize', procedure: 'health-check', configKey: 'memoryWarnPercent' },
  { id: 'nats-lag', alert: 'NatsLagHigh', metric: 'NATS consumer lag', comparison: '>', value: 1000, unit: 'messages', forSeconds: 5 * MIN, severity: 'P1', seed: 'Fulcrum 2.3', action: 'Investigate', procedure: 'nats-lag-triage', configKey: 'natsLagMessages' },
  { id: 'cache-miss-rate', alert: 'CacheMissRateHigh', metric: 'cache miss rate', comparison: '>', value: 10, unit: '%', forSeconds: 0, severity: 'P2', seed: 'Fulcrum 2.3', action: 'Tune cache', procedure: 'redis-triage', configKey: 'cacheMissPercent' },
  { id: 'slow-probe', alert: 'SlowQueries', metric: 'query time', comparison: '>', value: 100, unit: 'ms', forSeconds: 0, severity: 'P2', seed: 'Fulcrum 2.3', action: 'Optimize', procedure: 'db-triage', configKey: 'slowProbeMs' },
  { id: 'disk-usage', alert: 'DiskUsageHigh', metric: 'disk usage', comparison: '>', value: 70, unit: '%', forSeconds: 0, severity: 'P2', seed: 'Fulcrum 2.3', action: 'Plan expansion', procedure: 'health-check', configKey: 'diskPercent' },
  { id: 'api-latency-p99', alert: 'ApiLatencyHigh', metric: 'API p99 latency', comparison: '>', value: 500, unit: 'ms', forSeconds: 5 * MIN, severity: 'P1', seed: 'AlphaPulse 4.2', action: 'API troubleshooting (AlphaPulse 2.4)', procedure: 'latency-triage', configKey: 'apiLatencyP99Ms' },
  { id: 'api-error-rate', alert: 'ApiErrorRateHigh', metric: 'API error rate', comparison: '>', value: 0.5, unit: '%', forSeconds: 2 * MIN, severity: 'P1', seed: 'AlphaPulse 4.2', action: 'Check logs, rollback if recent deployment', procedure: 'latency-triage', configKey: 'apiErrorRatePercent' },
  { id: 'db-connection-pool', alert: 'DbConnectionPoolHigh', metric: 'database connections used', comparison: '>', value: 80, unit: '%', forSeconds: 0, severity: 'P1', seed: 'AlphaPulse 4.2', action: 'Kill idle connections, scale pgbouncer', procedure: 'db-triage', configKey: 'connectionPoolPercent' },
  { id: 'redis-memory', alert: 'RedisMemoryHigh', metric: 'Redis memory of maxmemory', comparison: '>', value: 90, unit: '%', forSeconds: 0, severity: 'P2', seed: 'AlphaPulse 4.2', action: 'Scale Redis, check eviction policy', procedure: 'redis-triage', configKey: 'redisMemoryPercent' },
  { id: 'slow-query', alert: 'LongRunningQuery', metric: 'active query running', comparison: '>', value: 1000, unit: 'ms', forSeconds: 0, severity: 'P2', seed: 'AlphaPulse 2.1', action: 'EXPLAIN, add the index, cancel a runaway query', procedure: 'db-triage', configKey: 'slowQueryMs' },
  // AlphaPulse 2.1 Replication Lag: "Restart replica (if lag >60 seconds)"; the seed gives no severity (stale reads: P1 per AlphaPulse 1.1) and no byte limit (16 MiB, one WAL segment, is this project's).
  { id: 'replication-lag', alert: 'ReplicationLagHigh', metric: 'replica replay lag', comparison: '>', value: 60, unit: 's', forSeconds: 0, severity: 'P1', seed: 'AlphaPulse 2.1', action: 'Restart the replica, check replication after', procedure: 'db-triage', configKey: 'replicationLagSeconds' },
  { id: 'replication-lag-bytes', alert: 'ReplicationLagBytesHigh', metric: 'WAL not yet replayed on a replica', comparison: '>', value: 16 * 1024 * 1024, unit: 'bytes', forSeconds: 0, severity: 'P2', seed: 'project default (AlphaPulse 2.1 gives seconds only)', action: 'Check the replica\'s network and I/O', procedure: 'db-triage', configKey: 'replicationLagBytes' },
];

const BY_ID = new Map(THRESHOLDS.map((r) => [r.id, r]));

/** The row with the config's value and duration applied; a plan without the key gets the seed's default. */
export function threshold(id: ThresholdId, settings?: Partial<ThresholdSettings>): ThresholdRow {
  const row = BY_ID.get(id)!;
  const value = row.configKey ? settings?.[row.configKey] : undefined;
  const forSeconds = settings?.forSeconds?.[id];
  return { ...row, value: value ?? row.value, forSeconds: forSeconds ?? row.forSeconds };
}

/** Every row, resolved against the config. */
export function thresholdTable(settings?: Partial<ThresholdSettings>): ThresholdRow[] {
  return THRESHOLDS.map((r) => threshold(r.id, settings));
}

export function isThresholdId(value: string): value is ThresholdId {
  return BY_ID.has(value as ThresholdId);
}

/** Whether `value` is over (or matches) the row. */
export function breaches(row: Pick<ThresholdRow, 'comparison' | 'value'>, value: number): boolean {
  switch (row.comparison) {
    case '>':
      return value > row.value;
    case '<':
      return value < row.value;
    default:
      return value === row.value;
  }
}

/** "error rate > 20% for 2 min (Fulcrum 2.3)". */
export function describeThreshold(row: ThresholdRow): string {
  const unit = row.unit === '%' ? '%' : row.unit === 'healthy' ? '' : ` ${row.unit}`;
  const what = `${row.metric} ${row.comparison} ${row.value}${unit}`;
  return `${what}${row.forSeconds > 0 ? ` for ${formatDuration(row.forSeconds)}` : ''} (${row.seed})`;
}

/** 120 -> "2 min", 90 -> "90 s", 0 -> "0 s". */
export function formatDuration(seconds: number): string {
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  return `${Math.round(seconds * 10) / 10} s`;
}
