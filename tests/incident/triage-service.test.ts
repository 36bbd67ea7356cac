import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TriageResult } from '../../common/incident/types.js';
import { approveUpdate, pendingApprovalQuery } from '../../common/messages.js';
import { startDemoService, type DemoService } from '../../demo/service.js';
import type { LoadedConfig } from '../../lib/config.js';
import { startPrometheus, type PrometheusServer } from '../fixtures/prometheus.js';
import { freePort, startPostgres, startRedis, type PgServer, type RedisServer } from '../fixtures/servers.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';

let redis: RedisServer;
let pgServer: PgServer;
let api: DemoService;
let prometheus: PrometheusServer;
let loaded: LoadedConfig;
let dir: string;
let slowQuery: pg.Client | undefined;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-triage-'));
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  [redis, pgServer, api] = await Promise.all([
    startRedis({ maxmemory: '64mb', maxmemoryPolicy: 'allkeys-lru' }),
    startPostgres(),
    startDemoService({ httpPort, grpcPort, latencyMs: 700, errorRate: 0.3 }),
  ]);
  prometheus = await startPrometheus({ targets: [`127.0.0.1:${httpPort}`] });
  const logFile = path.join(dir, 'api.log');
  await writeFile(
    logFile,
    ['level=info msg="started"', 'level=error msg="policy evaluation failed" code=INTERNAL tenant=t1', 'level=info msg="request ok"', 'level=error msg="redis: connection reset"'].join('\n'),
  );
  loaded = await writeConfig({
    environment: 'test',
    services: [
      { name: 'redis', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'redis', url: redis.url }] },
      {
        name: 'api',
        driver: { type: 'command', restart: ['true'], status: ['true'], logs: ['cat', logFile] },
        probes: [{ type: 'http', url: `${api.httpUrl}/healthz` }],
      },
    ],
    databases: [{ name: 'app', url: pgServer.url }],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    incident: { prometheusUrl: prometheus.url },
  });
  const cache = new Redis(redis.url);
  await cache.set('policy:t1:a', '1');
  await cache.set('policy:t1:b', '2');
  for (let i = 0; i < 10; i++) await cache.get(`policy:missing:${i}`);
  await cache.get('policy:t1:a');
  cache.disconnect();
}, 90_000);

afterAll(async () => {
  await slowQuery?.end().catch(() => undefined);
  await Promise.all([prometheus?.stop(), api?.stop(), redis?.stop()]);
  await pgServer?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function traffic(n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, () => fetch(`${api.httpUrl}/`).then((r) => r.text(), () => '')));
}

describe('service-error-triage', () => {
  it('health, error lines from the logs, cache, database and metrics; flush and restart after approval', async () => {
    await traffic(10);
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `service-error-triage-${Date.now()}`;
      const handle: WorkflowHandle = await client.workflow.start('service-error-triage', {
        taskQueue,
        workflowId,
        args: [{ service: 'api', cacheService: 'redis', cachePattern: 'policy:*', database: 'app', metricsUrl: `${api.httpUrl}/metrics`, metricsMatch: 'http_requests_total', flushAndRestart: true, requestedBy: 'alice' }],
      });
      for (let i = 0; i < 200 && (await handle.query(pendingApprovalQuery))?.step !== 'approve-remediation'; i++) await sleep(100);
      expect((await handle.query(pendingApprovalQuery))?.summary).toMatch(/FLUSHDB on redis .* restart api/);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'FLUSHDB', step: 'approve-remediation' }] });
      const r = (await handle.result()) as TriageResult;
      const f = Object.fromEntries(r.findings.map((x) => [x.check.split(' ')[0] === 'health' ? 'health' : x.check, x]));
      expect(f.health).toMatchObject({ severity: 'OK' });
      expect(f['error log lines']!.severity).toBe('P2');
      expect(f['error log lines']!.detail).toContain('policy evaluation failed');
      expect(f['error log lines']!.detail).not.toContain('request ok');
      expect(f['cache redis']!.detail).toMatch(/^2 keys; sample (policy:t1:a, policy:t1:b|policy:t1:b, policy:t1:a); hit rate 9\.1%/);
      expect(f['database app']).toMatchObject({ severity: 'OK' });
      expect(f['database app']!.detail).toMatch(/SELECT ok; connections .* of max \d+/);
      expect(f.metrics!.detail).toMatch(/http_requests_total\{code="(200|500)"\}/);
      expect(r.remediations).toEqual(['FLUSHDB redis (2 keys), approved by bob', 'api restarted; healthy again: api']);
      await recordHistory(client, workflowId, 'service-error-triage');
    });
  }, 60_000);
});

describe('latency-triage', () => {
  it('reads p99 and error rate from a real Prometheus, finds the slow query and the low hit rate, and recommends', async () => {
    // Two scrapes apart, so rate() has something to work with.
    await traffic(30);
    await sleep(2500);
    await traffic(30);
    await sleep(2500);
    slowQuery = new pg.Client({ connectionString: pgServer.url });
    await slowQuery.connect();
    void slowQuery.query('SELECT pg_sleep(30)').catch(() => undefined);
    await sleep(800);
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `latency-triage-${Date.now()}`;
      const r = (await client.workflow.execute('latency-triage', {
        taskQueue,
        workflowId,
        args: [{ database: 'app', slowQueryMs: 500, cacheService: 'redis', requestedBy: 'alice' }],
      })) as TriageResult;
      const f = Object.fromEntries(r.findings.map((x) => [x.check, x]));
      expect(f['p99 latency']!.severity).toBe('P1');
      expect(Number(/^(\d+) ms/.exec(f['p99 latency']!.detail)?.[1])).toBeGreaterThan(500);
      expect(f['error rate']!.detail).toMatch(/^\d+(\.\d)?% \(threshold 5%\)/);
      expect(f['slow queries app']!.detail).toContain('SELECT pg_sleep(30)');
      expect(f['cache hit rate redis']!.severity).toBe('P2');
      const rec = r.recommendations.join('\n');
      expect(rec).toMatch(/Slow queries found/);
      expect(rec).toMatch(/Cache hit rate under 85/);
      await recordHistory(client, workflowId, 'latency-triage');
    });
  }, 60_000);
});
