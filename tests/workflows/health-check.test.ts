import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HealthCheckResult } from '../../common/types.js';
import { startDemoService } from '../../demo/service.js';
import { freePort, startNats, startPostgres, startRedis, type NatsServer, type PgServer, type RedisServer } from '../fixtures/servers.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import type { LoadedConfig } from '../../lib/config.js';

let pg: PgServer;
let redis: RedisServer;
let nats: NatsServer;
let demo: Awaited<ReturnType<typeof startDemoService>>;
let deadPort: number;
let loaded: LoadedConfig;

const noop = { type: 'command', status: ['true'] };

beforeAll(async () => {
  [pg, redis, nats] = await Promise.all([startPostgres(), startRedis({ maxmemory: '64mb' }), startNats()]);
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  demo = await startDemoService({ httpPort, grpcPort });
  deadPort = await freePort();
  loaded = await writeConfig({
    environment: 'test',
    services: [
      { name: 'postgres', group: 'infra', driver: noop, probes: [{ type: 'postgres', url: '${TEST_PG_URL}' }] },
      { name: 'redis', group: 'infra', driver: noop, probes: [{ type: 'redis', url: redis.url }] },
      { name: 'nats', group: 'infra', driver: noop, probes: [{ type: 'nats', servers: nats.url, monitorUrl: nats.monitorUrl }] },
      {
        name: 'api',
        group: 'apps',
        driver: noop,
        probes: [
          { type: 'grpc', address: demo.grpcAddress },
          { type: 'http', url: `${demo.httpUrl}/healthz`, bodyMatch: 'healthy' },
          { type: 'tcp', port: Number(new URL(demo.httpUrl).port) },
        ],
      },
      { name: 'dashboard', group: 'apps', driver: noop, probes: [{ type: 'http', url: `http://127.0.0.1:${deadPort}/` }] },
    ],
    approvals: { approvers: { default: ['alice'] } },
  });
});

afterAll(async () => {
  await Promise.allSettled([demo?.stop(), pg?.stop(), redis?.stop(), nats?.stop()]);
});

const env = () => ({ ...process.env, TEST_PG_URL: pg.url });

describe('health-check', () => {
  it('probes every service in parallel and classifies with the runbook thresholds', async () => {
    const result = await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const workflowId = `hc-${Date.now()}`;
        const r = (await client.workflow.execute('health-check', { taskQueue, workflowId, args: [{ requestedBy: 'tester' }] })) as HealthCheckResult;
        await recordHistory(client, workflowId, 'health-check');
        return r;
      },
      { env: env() },
    );
    const byService = (name: string) => result.results.filter((r) => r.service === name);
    expect(byService('postgres')).toMatchObject([{ type: 'postgres', status: 'healthy' }]);
    expect(byService('redis')).toMatchObject([{ type: 'redis', status: 'healthy', metrics: { maxMemoryBytes: 64 * 1024 * 1024 } }]);
    expect(byService('nats')).toMatchObject([{ type: 'nats', status: 'healthy' }]);
    expect(byService('api').map((r) => [r.type, r.status])).toEqual(
      expect.arrayContaining([['grpc', 'healthy'], ['http', 'healthy'], ['tcp', 'healthy']]),
    );
    expect(byService('dashboard')).toMatchObject([{ status: 'unhealthy', severity: 'P0', reason: expect.stringMatching(/Service Down/) }]);
    expect(result.worst).toBe('P0');
    expect(result.ok).toBe(false);
    // The P0 row sorts first in the table, and the env-referenced URL never appears resolved.
    expect(result.table.split('\n')[1]).toMatch(/^dashboard .*P0/);
    expect(JSON.stringify(result)).not.toContain(pg.url);
  });

  it('checks only the named services, and refuses an unknown one without retrying', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const only = (await client.workflow.execute('health-check', {
          taskQueue,
          workflowId: `hc-only-${Date.now()}`,
          args: [{ services: ['redis', 'api'] }],
        })) as HealthCheckResult;
        expect(new Set(only.results.map((r) => r.service))).toEqual(new Set(['redis', 'api']));
        expect(only.ok).toBe(true);
        expect(only.worst).not.toBe('P0');

        const started = Date.now();
        const err = await client.workflow
          .execute('health-check', { taskQueue, workflowId: `hc-bad-${Date.now()}`, args: [{ services: ['redis', 'nope'] }] })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(WorkflowFailedError);
        expect((err as WorkflowFailedError).cause?.message).toMatch(/services: unknown service\(s\) nope: expected one of postgres, redis, nats, api, dashboard/);
        expect(Date.now() - started).toBeLessThan(10_000);
      },
      { env: env() },
    );
  });

  it('fails at once on a bad input field, naming it', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const err = await client.workflow
        .execute('health-check', { taskQueue, workflowId: `hc-input-${Date.now()}`, args: [{ service: 'redis' }] })
        .catch((e: unknown) => e);
      expect((err as WorkflowFailedError).cause?.message).toMatch(/unknown field "service": expected one of requestedBy, approvalTimeoutSeconds, services/);
    });
  });

  it('fails with the missing variable named when a secret is not in the worker environment', async () => {
    const started = Date.now();
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const err = await client.workflow
          .execute('health-check', { taskQueue, workflowId: `hc-env-${Date.now()}`, args: [{ services: ['postgres'] }] })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(WorkflowFailedError);
        const msg = JSON.stringify((err as WorkflowFailedError).cause, Object.getOwnPropertyNames((err as WorkflowFailedError).cause));
        expect(msg).toMatch(/TEST_PG_URL is not set/);
      },
      { env: { PATH: process.env.PATH } },
    );
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
