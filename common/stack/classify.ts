import { breaches, threshold, type ThresholdId, type ThresholdSettings } from '../thresholds.js';
import type { ClassifiedProbe, ProbeResult, Severity } from '../types.js';

export const SEVERITY_ORDER: readonly Severity[] = ['P0', 'P1', 'P2', 'OK'];

/** The threshold rows a probe reading can be over: what `health-watch` can see. */
export const PROBE_THRESHOLDS: readonly ThresholdId[] = ['service-down', 'database-down', 'memory-usage', 'redis-memory', 'nats-lag', 'slow-probe', 'replication-lag'];

/** One threshold row a probe result is over, with the reason shown in the health table. */
export interface ProbeCondition {
  threshold: ThresholdId;
  severity: Exclude<Severity, 'OK'>;
  reason: string;
}

/**
 * Every row of the threshold table (common/thresholds.ts: Fulcrum 2.3, AlphaPulse 4.2)
 * one probe result is over, worst first. `health-watch` tracks each of them over time.
 */
export function probeConditions(r: ProbeResult, t: Partial<ThresholdSettings>): ProbeCondition[] {
  const out: ProbeCondition[] = [];
  if (r.status !== 'healthy') {
    const row = threshold(r.type === 'postgres' ? 'database-down' : 'service-down', t);
    out.push({ threshold: row.id, severity: row.severity, reason: r.type === 'postgres' ? 'Database Down: connection refused or not answering' : 'Service Down: 0 healthy' });
    return out;
  }
  const memory = r.metrics?.memoryPercent;
  const mem = threshold('memory-usage', t);
  if (memory !== undefined && breaches(mem, memory)) {
    out.push({ threshold: mem.id, severity: mem.severity, reason: `Memory Usage >${mem.value}% (${memory.toFixed(1)}%)` });
  }
  const redisMem = threshold('redis-memory', t);
  if (r.type === 'redis' && memory !== undefined && breaches(redisMem, memory)) {
    out.push({ threshold: redisMem.id, severity: redisMem.severity, reason: `Redis Memory >${redisMem.value}% (${memory.toFixed(1)}%)` });
  }
  const lag = r.metrics?.maxConsumerPending;
  const nats = threshold('nats-lag', t);
  if (lag !== undefined && breaches(nats, lag)) {
    out.push({ threshold: nats.id, severity: nats.severity, reason: `NATS Lag >${nats.value} messages (${lag})` });
  }
  const replLag = r.metrics?.replicationLagSeconds;
  const repl = threshold('replication-lag', t);
  if (r.type === 'postgres' && replLag !== undefined && breaches(repl, replLag)) {
    out.push({ threshold: repl.id, severity: repl.severity, reason: `Replication Lag >${repl.value}s (${replLag.toFixed(1)}s)` });
  }
  const slow = threshold('slow-probe', t);
  const queryMs = r.metrics?.queryMs;
  if (r.type === 'postgres' && queryMs !== undefined) {
    if (breaches(slow, queryMs)) out.push({ threshold: slow.id, severity: slow.severity, reason: `Slow Queries >${slow.value}ms (${Math.round(queryMs)}ms)` });
  } else if (breaches(slow, r.latencyMs)) {
    const what = r.type === 'postgres' ? 'Slow Queries' : 'Slow response';
    out.push({ threshold: slow.id, severity: slow.severity, reason: `${what} >${slow.value}ms (${Math.round(r.latencyMs)}ms)` });
  }
  return out.sort((a, b) => SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity));
}

/** The worst threshold row one probe result is over (Fulcrum 2.3). */
export function classifyProbe(r: ProbeResult, t: Partial<ThresholdSettings>): ClassifiedProbe {
  const worst = probeConditions(r, t)[0];
  return worst ? { ...r, severity: worst.severity, reason: worst.reason } : { ...r, severity: 'OK', reason: '' };
}

export function worstSeverity(results: ReadonlyArray<{ severity: Severity }>): Severity {
  let worst = 3;
  for (const r of results) worst = Math.min(worst, SEVERITY_ORDER.indexOf(r.severity));
  return SEVERITY_ORDER[worst]!;
}

/** A plain-text table, readable in the UI's result view, the CLI and a ticket. */
export function renderHealthTable(results: readonly ClassifiedProbe[]): string {
  const rows = [
    ['SERVICE', 'PROBE', 'TARGET', 'STATUS', 'LATENCY', 'SEVERITY', 'DETAIL'],
    ...results.map((r) => [
      r.service,
      r.type,
      r.target,
      r.status,
      `${r.latencyMs.toFixed(1)}ms`,
      r.severity,
      [r.reason, r.detail].filter(Boolean).join(' - '),
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}
