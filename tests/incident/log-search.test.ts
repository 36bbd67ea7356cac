import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOG_MAX_BYTES, lineTime, logMatcher, searchServiceLogs } from '../../activities/incident/logs.js';
import type { ActivityDeps } from '../../activities/deps.js';
import type { ServiceConfig } from '../../common/config-schema.js';
import { createLogger } from '../../lib/logger.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-log-search-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('log lines: time and trace (Fulcrum 6.3)', () => {
  it('reads the time of JSON (ms, s, ISO), leading ISO and logfmt lines; none for a line without one', () => {
    expect(lineTime('{"level":30,"time":1767693600000,"msg":"x"}')).toBe(Date.parse('2026-01-06T10:00:00Z'));
    expect(lineTime('{"ts":1767693600.5,"msg":"x"}')).toBe(Date.parse('2026-01-06T10:00:00.500Z'));
    expect(lineTime('{"@timestamp":"2026-01-06T10:00:00Z"}')).toBe(Date.parse('2026-01-06T10:00:00Z'));
    expect(lineTime('2026-01-06 10:00:00.123 UTC [42] LOG:  checkpoint')).toBe(Date.parse('2026-01-06T10:00:00.123Z'));
    expect(lineTime('2026-01-06T10:00:00 INFO no zone')).toBe(new Date(2026, 0, 6, 10, 0, 0).getTime());
    expect(lineTime('[2026-01-06T10:00:00Z] INF ready')).toBe(Date.parse('2026-01-06T10:00:00Z'));
    expect(lineTime('level=error time=2026-01-06T10:00:00+01:00 msg="x"')).toBe(Date.parse('2026-01-06T09:00:00Z'));
    expect(lineTime('panic: runtime error')).toBeUndefined();
  });

  it('matches a trace id only as a whole token, and the window by the line time', () => {
    const m = logMatcher({ traceId: 'abcd1234', since: '2026-01-06T10:00:00Z', until: '2026-01-06T11:00:00Z', maxLines: 10 });
    expect(m('{"time":"2026-01-06T10:30:00Z","trace_id":"abcd1234"}')).toBe('match');
    expect(m('{"time":"2026-01-06T10:30:00Z","trace_id":"abcd12345"}')).toBe('no');
    expect(m('{"time":"2026-01-06T11:30:00Z","trace_id":"abcd1234"}')).toBe('no');
    expect(m('trace_id=abcd1234 without a time')).toBe('undated');
    // A trace id is never a pattern: its characters are matched literally.
    expect(logMatcher({ traceId: 'a-b_c-d-e', maxLines: 1 })('x a-b_c-d-e y')).toBe('match');
    expect(logMatcher({ traceId: 'a-b_c-d-e', maxLines: 1 })('x aXb_c-d-e y')).toBe('no');
  });

  it('reads a configured log file: lines and bytes bounded, secrets of the service config redacted', async () => {
    const file = path.join(dir, 'app.log');
    const secret = 'tok-3f9a8b7c6d';
    const lines = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ time: Date.parse('2026-01-06T10:00:00Z') + i * 1000, trace_id: i % 2 ? 'odd-trace-1' : 'even-trace-0', token: secret, pad: 'x'.repeat(100) }));
    await writeFile(file, `${lines.join('\n')}\nundated line\n`);
    const svc = { name: 'app', group: 'apps', probes: [], dependsOn: [], ports: [], driver: { type: 'command', logFile: 'app.log', status: ['true'], env: { TOKEN: '${APP_TOKEN}' }, timeoutSeconds: 10 } } as unknown as ServiceConfig;
    const deps = { env: { APP_TOKEN: secret }, configDir: dir, logger: createLogger({ component: 'test' }, 'warn') } as unknown as ActivityDeps;
    const r = await searchServiceLogs(deps, svc, { traceId: 'odd-trace-1', maxLines: 1000 });
    expect(r.source).toBe(file);
    expect(r.scanned).toBe(3001);
    expect(r.matched).toBe(1500);
    expect(r.truncated).toBe(true);
    expect(r.lines.join('\n').length).toBeLessThanOrEqual(LOG_MAX_BYTES);
    expect(r.lines.join('\n')).not.toContain(secret);
    expect(r.lines[0]).toContain('"token":"***"');
    const window = await searchServiceLogs(deps, svc, { since: '2026-01-06T10:00:10Z', until: '2026-01-06T10:00:19Z', maxLines: 100 });
    expect(window).toMatchObject({ matched: 10, undated: 1, truncated: false });
  });
});
