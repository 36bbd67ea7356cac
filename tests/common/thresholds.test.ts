import { describe, expect, it } from 'vitest';
import { alertRules } from '../../client/alerts.js';
import { classifyProbe } from '../../common/stack/classify.js';
import { threshold, thresholdTable, THRESHOLDS } from '../../common/thresholds.js';
import type { ProbeResult } from '../../common/types.js';
import { ConfigError, parseConfig } from '../../lib/config.js';

const minimal = `
services:
  - name: redis
    group: infra
    driver: { type: command, start: ['true'] }
`;

const redisProbe: ProbeResult = { service: 'redis', index: 0, type: 'redis', target: 'redis://x', status: 'healthy', latencyMs: 2, detail: '' };

describe('the alert threshold table', () => {
  it('has the seed rows with their durations and sections', () => {
    const rows = Object.fromEntries(THRESHOLDS.map((r) => [r.id, r]));
    expect(rows['error-rate-critical']).toMatchObject({ comparison: '>', value: 20, forSeconds: 120, severity: 'P0', seed: 'Fulcrum 2.3' });
    expect(rows['error-rate-warning']).toMatchObject({ value: 5, forSeconds: 300, severity: 'P1', seed: 'Fulcrum 2.3' });
    expect(rows['policy-latency-p99']).toMatchObject({ value: 10, unit: 'ms', forSeconds: 300, severity: 'P1' });
    expect(rows['memory-usage']).toMatchObject({ value: 80, forSeconds: 600, severity: 'P1' });
    expect(rows['cache-miss-rate']).toMatchObject({ value: 10, forSeconds: 0, severity: 'P2' });
    expect(rows['disk-usage']).toMatchObject({ value: 70, severity: 'P2' });
    expect(rows['db-connection-pool']).toMatchObject({ value: 80, severity: 'P1', seed: 'AlphaPulse 4.2' });
    expect(rows['redis-memory']).toMatchObject({ value: 90, severity: 'P2', seed: 'AlphaPulse 4.2' });
    expect(rows['api-error-rate']).toMatchObject({ value: 0.5, forSeconds: 120, severity: 'P1', seed: 'AlphaPulse 4.2' });
    expect(rows['slow-query']).toMatchObject({ value: 1000, unit: 'ms', seed: 'AlphaPulse 2.1' });
    // A plan recorded before the table (three keys only) reads the seed's values.
    expect(threshold('redis-memory', { slowProbeMs: 100, memoryWarnPercent: 80, natsLagMessages: 1000 }).value).toBe(90);
  });

  it('takes values and durations from the config; the keys that predate the table keep working', () => {
    const cfg = parseConfig(`${minimal}thresholds: { memoryWarnPercent: 85, errorRateCriticalPercent: 25, forSeconds: { error-rate-critical: 30 } }\n`, 'test.yaml');
    const rows = Object.fromEntries(thresholdTable(cfg.thresholds).map((r) => [r.id, r]));
    expect(rows['memory-usage']!.value).toBe(85);
    expect(rows['error-rate-critical']).toMatchObject({ value: 25, forSeconds: 30 });
    expect(rows['error-rate-warning']).toMatchObject({ value: 5, forSeconds: 300 });
    expect(classifyProbe({ ...redisProbe, metrics: { memoryPercent: 83 } }, cfg.thresholds).severity).toBe('OK');
    expect(classifyProbe({ ...redisProbe, metrics: { memoryPercent: 86 } }, cfg.thresholds)).toMatchObject({ severity: 'P1', reason: 'Memory Usage >85% (86.0%)' });
    const rule = alertRules(cfg).groups[0]!.rules.find((r) => r.alert === 'ErrorRateCritical')!;
    expect(rule).toMatchObject({ for: '30s', expr: expect.stringMatching(/\) > 25$/) });
  });

  it('refuses an unknown row with the list of rows, and a rule file whose severities the intake cannot map', () => {
    let err: unknown;
    try {
      parseConfig(`${minimal}thresholds: { forSeconds: { error-rate: 30 } }\n`, 'test.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(/thresholds\.forSeconds\.error-rate: unknown threshold "error-rate": expected a threshold id: service-down, database-down, error-rate-critical/);
    const cfg = parseConfig(`${minimal}incident: { intake: { labelToSeverity: { critical: P0, warning: P2 } } }\n`, 'test.yaml');
    expect(() => alertRules(cfg)).toThrow(/labelToSeverity has no label value for P1/);
  });
});
