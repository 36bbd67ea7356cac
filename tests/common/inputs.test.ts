import { describe, expect, it } from 'vitest';
import { InputError, parseInput } from '../../common/inputs.js';
import { classifyProbe, renderHealthTable } from '../../common/stack/classify.js';
import type { ProbeResult } from '../../common/types.js';

describe('procedure inputs', () => {
  it('accepts the documented examples', () => {
    expect(parseInput('stack-stop', { clean: true })).toEqual({ clean: true });
    expect(parseInput('health-check', undefined)).toEqual({});
    expect(parseInput('service-restart', { service: 'api', mode: 'force-recreate' })).toEqual({ service: 'api', mode: 'force-recreate' });
  });

  it('refuses a nested object input over 16 KB of JSON, naming the field', () => {
    const huge = { service: 'redis', note: 'x'.repeat(20_000) };
    expect(() => parseInput('incident', { title: 'db down', severity: 'P1', triage: 'redis-triage', triageInput: huge })).toThrow(/triageInput: at most 16384 characters of JSON/);
    expect(parseInput('incident', { title: 'db down', severity: 'P1', triage: 'redis-triage', triageInput: { service: 'redis' } })).toMatchObject({ title: 'db down' });
  });

  it('names the field and the fix for every mistake at once', () => {
    try {
      parseInput('stack-stop', { clean: 'yes', clen: true });
      throw new Error('expected refusal');
    } catch (err) {
      expect(err).toBeInstanceOf(InputError);
      const msg = (err as Error).message;
      expect(msg).toMatch(/invalid input for stack-stop/);
      expect(msg).toMatch(/clean: expected boolean.*e\.g\. true/);
      expect(msg).toMatch(/unknown field "clen": expected one of requestedBy, approvalTimeoutSeconds, clean/);
    }
    expect(() => parseInput('service-restart', {})).toThrow(/service: required/);
    expect(() => parseInput('service-restart', { service: 'api', mode: 'reboot' })).toThrow(/mode: expected one of restart, rebuild, force-recreate/);
    expect(() => parseInput('health-check', { services: ['../etc'] })).toThrow(/services: expected string-list/);
    expect(() => parseInput('health-check', [1])).toThrow(/expected one JSON object/);
  });
});

describe('health classification (Fulcrum 2.3 thresholds)', () => {
  const t = { slowProbeMs: 100, memoryWarnPercent: 80, natsLagMessages: 1000 };
  const base: ProbeResult = { service: 's', index: 0, type: 'http', target: 'http://x', status: 'healthy', latencyMs: 5, detail: 'HTTP 200' };

  it('maps down, memory, lag and slowness to P0, P1, P1, P2', () => {
    expect(classifyProbe({ ...base, type: 'postgres', status: 'unhealthy' }, t)).toMatchObject({ severity: 'P0', reason: expect.stringMatching(/Database Down/) });
    expect(classifyProbe({ ...base, status: 'unhealthy' }, t)).toMatchObject({ severity: 'P0', reason: expect.stringMatching(/Service Down/) });
    expect(classifyProbe({ ...base, type: 'redis', metrics: { memoryPercent: 91 } }, t)).toMatchObject({ severity: 'P1', reason: expect.stringMatching(/Memory Usage >80%/) });
    expect(classifyProbe({ ...base, type: 'nats', metrics: { maxConsumerPending: 1500 } }, t)).toMatchObject({ severity: 'P1', reason: expect.stringMatching(/NATS Lag >1000/) });
    expect(classifyProbe({ ...base, type: 'postgres', latencyMs: 150 }, t)).toMatchObject({ severity: 'P2', reason: expect.stringMatching(/Slow Queries >100ms/) });
    // A slow connect with a fast query is not a slow query.
    expect(classifyProbe({ ...base, type: 'postgres', latencyMs: 240, metrics: { connectMs: 238, queryMs: 2 } }, t).severity).toBe('OK');
    expect(classifyProbe({ ...base, type: 'postgres', latencyMs: 240, metrics: { connectMs: 10, queryMs: 230 } }, t)).toMatchObject({ severity: 'P2', reason: 'Slow Queries >100ms (230ms)' });
    expect(classifyProbe(base, t).severity).toBe('OK');
  });

  it('renders an aligned table with a header', () => {
    const table = renderHealthTable([classifyProbe(base, t), classifyProbe({ ...base, service: 'postgres-main', status: 'unhealthy', detail: 'connection refused' }, t)]);
    const lines = table.split('\n');
    expect(lines[0]).toMatch(/^SERVICE\s+PROBE\s+TARGET\s+STATUS\s+LATENCY\s+SEVERITY\s+DETAIL$/);
    expect(lines[2]).toMatch(/postgres-main.*unhealthy.*P0.*connection refused/);
    expect(lines[1]!.indexOf('http')).toBe(lines[2]!.indexOf('http'));
  });
});
