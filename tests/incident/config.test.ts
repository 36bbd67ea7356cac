import { describe, expect, it } from 'vitest';
import { defaultIncidentConfig, incidentConfigSchema, parseDuration } from '../../common/incident/config.js';
import { parseConfig } from '../../lib/config.js';

describe('incident config', () => {
  it('defaults are the runbook: 15 min / 1 h / 4 h / 24 h, ack 10 min, P1 updates 30 min, L3 1 h, L4 2 h, P0 postmortem 24 h / 48 h', () => {
    const c = defaultIncidentConfig();
    expect([c.severities.P0.response, c.severities.P1.response, c.severities.P2.response, c.severities.P3.response]).toEqual([900, 3600, 14_400, 86_400]);
    expect(c.severities.P1.stakeholderUpdates).toBe(1800);
    expect(c.ackTimeout).toBe(600);
    expect([c.escalation.l3After, c.escalation.l4After]).toEqual([3600, 7200]);
    expect(c.postmortem).toMatchObject({ requiredFor: ['P0'], due: 86_400, meetingWithin: 172_800 });
  });

  it('the escalation matrix, verification, watch and ticket defaults are AlphaPulse 1.1-1.4 and 6.1', () => {
    const c = defaultIncidentConfig();
    expect(c.escalation).toMatchObject({ p0Immediate: true, l2For: ['P0', 'P1'], contacts: { security: [] } });
    expect(c.verification).toEqual({ requiredFor: ['P0', 'P1'], maxErrorRatePercent: 0.1 });
    expect([c.severities.P0.watch, c.severities.P1.watch, c.severities.P2.watch, c.severities.P3.watch]).toEqual([undefined, 3600, undefined, undefined]);
    expect(c.ticket).toBeUndefined();
    expect(incidentConfigSchema.parse({ ticket: { url: 'https://tracker.example/api' } }).ticket).toMatchObject({ for: ['P2', 'P3'], labels: ['incident'] });
  });

  it('durations: seconds or 30s / 15m / 1h / 2d', () => {
    expect([parseDuration(90), parseDuration('30s'), parseDuration('15m'), parseDuration('1h'), parseDuration('2d'), parseDuration('1.5h')]).toEqual([90, 30, 900, 3600, 172_800, 5400]);
    expect(parseDuration('15 minutes')).toBeUndefined();
    expect(parseDuration(0)).toBeUndefined();
  });

  it('bad values are refused with the path and the fix', () => {
    const bad = (incident: unknown) => () => parseConfig(JSON.stringify({ services: [{ name: 'api', driver: { type: 'command', status: ['true'] } }], incident }), 'runbooks.yaml');
    expect(bad({ ackTimeout: '10 minutes' })).toThrow(/incident\.ackTimeout: expected a duration like 30s, 15m/);
    expect(bad({ webhooks: [{ name: 'slack', kind: 'slack', url: 'https://hooks.slack.com/services/T/B/secret' }] })).toThrow(/incident\.webhooks\[0\]\.url: webhook URLs carry tokens: write \$\{ENV_NAME\}/);
    expect(bad({ escalation: { l3After: '2h', l4After: '1h' } })).toThrow(/incident\.escalation\.l4After: must be longer than l3After/);
    expect(bad({ severities: { P0: { response: '15m' } } })).toThrow(/incident\.severities\.P1/);
    expect(() => incidentConfigSchema.parse({ intake: { alertToTriage: [{ match: {}, procedure: 'db-triage' }] } })).toThrow();
    expect(bad({ ticket: { url: 'https://tracker.example/api', token: 'plain-secret' } })).toThrow(/incident\.ticket\.token: the Bearer token is a secret: write \$\{ENV_NAME\}/);
  });
});
