import { z } from 'zod';
import { isThresholdId, THRESHOLD_IDS, threshold, type ThresholdId } from './thresholds.js';

/**
 * The config's `thresholds` (values and durations of common/thresholds.ts) and `alerts`
 * (how `runbook alerts export` writes them as Prometheus rules).
 */

const ID_HINT = `expected a threshold id: ${THRESHOLD_IDS.join(', ')}`;
const thresholdId = z.enum(THRESHOLD_IDS, { error: ID_HINT });

/** A map keyed by threshold id; an unknown key is named with the list of ids. */
function byThresholdId<T extends z.ZodType>(value: T) {
  return z.record(z.string(), value).superRefine((map, ctx) => {
    for (const key of Object.keys(map)) {
      if (!isThresholdId(key)) ctx.addIssue({ code: 'custom', path: [key], message: `unknown threshold "${key}": ${ID_HINT}` });
    }
  }) as unknown as z.ZodType<Partial<Record<ThresholdId, z.output<T>>>, Partial<Record<ThresholdId, z.input<T>>>>;
}
const seed = (id: ThresholdId) => threshold(id).value;
const percent = (id: ThresholdId) => z.number().min(0).max(100).default(seed(id));
const positive = (id: ThresholdId) => z.number().positive().default(seed(id));

export const thresholdsSchema = z
  .object({
    slowProbeMs: positive('slow-probe').describe('Fulcrum 2.3 Slow Queries: >100 ms (P2)'),
    memoryWarnPercent: z.number().min(1).max(100).default(seed('memory-usage')).describe('Fulcrum 2.3 Memory Usage: >80% for 10 min (P1)'),
    natsLagMessages: z.number().int().positive().default(seed('nats-lag')).describe('Fulcrum 2.3 NATS Lag: >1000 messages for 5 min (P1)'),
    errorRateCriticalPercent: percent('error-rate-critical').describe('Fulcrum 2.3 Error Rate: >20% for 2 min (P0)'),
    errorRateWarnPercent: percent('error-rate-warning').describe('Fulcrum 2.3 Error Rate: >5% for 5 min (P1)'),
    policyLatencyP99Ms: positive('policy-latency-p99').describe('Fulcrum 2.3 Policy Latency P99: >10 ms for 5 min (P1)'),
    cacheMissPercent: percent('cache-miss-rate').describe('Fulcrum 2.3 Cache Miss Rate: >10% (P2)'),
    diskPercent: percent('disk-usage').describe('Fulcrum 2.3 Disk Usage: >70% (P2)'),
    apiLatencyP99Ms: positive('api-latency-p99').describe('AlphaPulse 4.2 High Latency: p99 >500 ms for 5 min (P1)'),
    apiErrorRatePercent: percent('api-error-rate').describe('AlphaPulse 4.2 High Error Rate: >0.5% for 2 min (P1)'),
    connectionPoolPercent: percent('db-connection-pool').describe('AlphaPulse 4.2 DB Connection Pool: >80% used (P1)'),
    redisMemoryPercent: percent('redis-memory').describe('AlphaPulse 4.2 Redis Memory: >90% used (P2)'),
    slowQueryMs: positive('slow-query').describe('AlphaPulse 2.1 Slow Queries: active for >1 s'),
    replicationLagSeconds: positive('replication-lag').describe('AlphaPulse 2.1 Replication Lag: restart the replica if lag >60 seconds (P1)'),
    replicationLagBytes: z.number().int().positive().default(seed('replication-lag-bytes')).describe('WAL bytes a replica may be behind before a P2 (project default, 16 MiB)'),
    forSeconds: byThresholdId(z.number().min(0).max(86_400))
      .optional()
      .describe('per-threshold duration override in seconds, e.g. {error-rate-critical: 2} in a test'),
  })
  .prefault({});

export const alertsSchema = z
  .strictObject({
    group: z.string().min(1).default('runbook-thresholds').describe('name of the exported rule group'),
    rateWindow: z
      .string()
      .regex(/^\d+[smh]$/, 'expected a Prometheus duration such as 5m, 30s or 1h')
      .default('5m')
      .describe('the range of rate() in the exported expressions'),
    expressions: byThresholdId(z.string().min(1).max(2000))
      .default({})
      .describe('PromQL per threshold id giving the value to compare (your exporters\' metric names); {{window}} is the rate window'),
    skip: z.array(thresholdId).default([]).describe('threshold ids not to export'),
    labels: z.record(z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, 'a Prometheus label name'), z.string()).default({}).describe('extra labels on every rule'),
  })
  .prefault({});

export type AlertsConfig = z.output<typeof alertsSchema>;
