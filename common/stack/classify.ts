import type { ClassifiedProbe, ProbeResult, RunbookPlan, Severity } from '../types.js';

export const SEVERITY_ORDER: readonly Severity[] = ['P0', 'P1', 'P2', 'OK'];

/** The Fulcrum runbook's alert thresholds (section 2.3) applied to one probe result. */
export function classifyProbe(r: ProbeResult, t: RunbookPlan['thresholds']): ClassifiedProbe {
  if (r.status !== 'healthy') {
    return r.type === 'postgres'
      ? { ...r, severity: 'P0', reason: 'Database Down: connection refused or not answering' }
      : { ...r, severity: 'P0', reason: 'Service Down: 0 healthy' };
  }
  const memory = r.metrics?.memoryPercent;
  if (memory !== undefined && memory > t.memoryWarnPercent) {
    return { ...r, severity: 'P1', reason: `Memory Usage >${t.memoryWarnPercent}% (${memory.toFixed(1)}%)` };
  }
  const lag = r.metrics?.maxConsumerPending;
  if (lag !== undefined && lag > t.natsLagMessages) {
    return { ...r, severity: 'P1', reason: `NATS Lag >${t.natsLagMessages} messages (${lag})` };
  }
  const queryMs = r.metrics?.queryMs;
  if (r.type === 'postgres' && queryMs !== undefined) {
    if (queryMs > t.slowProbeMs) return { ...r, severity: 'P2', reason: `Slow Queries >${t.slowProbeMs}ms (${Math.round(queryMs)}ms)` };
  } else if (r.latencyMs > t.slowProbeMs) {
    const what = r.type === 'postgres' ? 'Slow Queries' : 'Slow response';
    return { ...r, severity: 'P2', reason: `${what} >${t.slowProbeMs}ms (${Math.round(r.latencyMs)}ms)` };
  }
  return { ...r, severity: 'OK', reason: '' };
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
