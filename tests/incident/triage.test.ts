import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { WorkflowHandle } from '@temporalio/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TriageResult } from '../../common/incident/types.js';
import { approveUpdate, pendingApprovalQuery } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { demoServiceAction } from '../../demo/env.js';
import { pidAlive } from '../../lib/local/index.js';
import { freePort, startNats, startRedis, type NatsServer, type RedisServer } from '../fixtures/servers.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';

let redis: RedisServer;
let nats: NatsServer;
let loaded: LoadedConfig;
// The stream's consumer: a real process (the demo API) that the nats-lag-triage restarts through its command driver.
let processorDir: string;
const processorPorts = { port: 0, port2: 0 };
const processorUrl = () => `http://127.0.0.1:${processorPorts.port}`;
const processorPid = async () => Number((await readFile(path.join(processorDir, 'demo', 'api', 'api.pid'), 'utf8')).trim());

beforeAll(async () => {
  processorDir = await mkdtemp(path.join(tmpdir(), 'runbook-processor-'));
  [processorPorts.port, processorPorts.port2] = [await freePort(), await freePort()];
  const processorCmd = (action: string) => [
    process.execPath, path.resolve('bin/runbook.mjs'), 'demo', 'service', action, 'api', '--state-dir', processorDir, '--port', String(processorPorts.port), '--port2', String(processorPorts.port2),
  ];
  [redis, nats] = await Promise.all([startRedis({ maxmemory: '4mb', maxmemoryPolicy: 'noeviction' }), startNats()]);
  expect((await demoServiceAction('start', 'api', { stateDir: processorDir, ...processorPorts })).exitCode).toBe(0);
  loaded = await writeConfig({
    environment: 'test',
    services: [
      { name: 'redis', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'redis', url: redis.url }] },
      { name: 'nats', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'nats', servers: nats.url }] },
      {
        name: 'processor',
        driver: { type: 'command', start: processorCmd('start'), stop: processorCmd('stop'), status: processorCmd('status') },
        probes: [{ type: 'http', url: `${processorUrl()}/healthz` }],
      },
    ],
    approvals: { approvers: { default: ['alice', 'bob'] } },
  });
}, 60_000);

afterAll(async () => {
  await demoServiceAction('stop', 'api', { stateDir: processorDir, ...processorPorts });
  await rm(processorDir, { recursive: true, force: true });
  await Promise.all([redis?.stop(), nats?.stop()]);
});

/** Waits for the run to ask for approval of `step`, then answers as `by`; returns the refusal reason, if any. */
async function approve(handle: WorkflowHandle, step: string, by: string, confirm?: string): Promise<string | undefined> {
  for (let i = 0; i < 200; i++) {
    const p = await handle.query(pendingApprovalQuery);
    if (p?.step === step) break;
    await sleep(100);
  }
  try {
    await handle.executeUpdate(approveUpdate, { args: [{ by, step, ...(confirm ? { confirm } : {}) }] });
    return undefined;
  } catch (e) {
    const err = e as Error & { cause?: Error };
    return err.cause?.message ?? err.message;
  }
}

describe('redis-triage', () => {
  it('finds memory over 90 %, the wrong policy and a low hit rate; UNLINKs by pattern and FLUSHDB after approval', async () => {
    const client = new Redis(redis.url);
    try {
      // Fill to the edge: noeviction refuses writes once maxmemory is reached.
      const value = 'x'.repeat(2000);
      for (let i = 0; ; i++) {
        const ok = await client.set(`policy:stale:${i}`, value).then(() => true, () => false);
        const mem = Object.fromEntries((await client.info('memory')).split('\r\n').map((l) => l.split(':')));
        if (!ok || Number(mem.used_memory) / Number(mem.maxmemory) > 0.92) break;
      }
      await client.set('policy:live:1', 'keep');
      for (let i = 0; i < 20; i++) await client.get(`missing:${i}`);
      await client.get('policy:live:1');
    } finally {
      client.disconnect();
    }

    await withWorker(loaded, async ({ client: temporal, taskQueue }) => {
      const workflowId = `redis-triage-${Date.now()}`;
      const handle = await temporal.workflow.start('redis-triage', {
        taskQueue,
        workflowId,
        args: [{ service: 'redis', deletePattern: 'policy:stale:*', flush: true, requestedBy: 'alice' }],
      });
      expect(await approve(handle, 'approve-unlink', 'alice', 'DELETE')).toMatch(/two-person rule/);
      expect(await approve(handle, 'approve-unlink', 'bob', 'delete')).toMatch(/exactly "DELETE"/);
      expect(await approve(handle, 'approve-unlink', 'bob', 'DELETE')).toBeUndefined();
      expect(await approve(handle, 'approve-flush', 'alice', 'FLUSHDB')).toMatch(/two-person rule/);
      expect(await approve(handle, 'approve-flush', 'bob', 'flushdb')).toMatch(/exactly "FLUSHDB"/);
      expect(await approve(handle, 'approve-flush', 'bob', 'FLUSHDB')).toBeUndefined();
      const r = (await handle.result()) as TriageResult;
      const f = Object.fromEntries(r.findings.map((x) => [x.check, x]));
      expect(f.ping!.severity).toBe('OK');
      // Over 90 %: Redis Memory is P2 (AlphaPulse 4.2); the same reading is over Memory Usage >80% (Fulcrum 2.3, P1), the worse.
      expect(f.memory).toMatchObject({ severity: 'P1' });
      expect(f.memory!.detail).toMatch(/^9\d(\.\d)?% of maxmemory .*over memory usage > 80% for 10 min \(Fulcrum 2\.3\) P1, Redis memory of maxmemory > 90% \(AlphaPulse 4\.2\) P2$/);
      expect(f['maxmemory-policy']).toMatchObject({ severity: 'P1', detail: expect.stringContaining('noeviction, should be allkeys-lru') });
      expect(f['hit rate']).toMatchObject({ severity: 'P2' });
      expect(f.clients!.detail).toMatch(/connected/);
      expect(r.ok).toBe(false);
      expect(r.recommendations.join('\n')).toMatch(/CONFIG SET maxmemory-policy allkeys-lru/);
      expect(r.remediations[0]).toMatch(/^unlinked \d{3,} keys matching policy:stale:\*, approved by bob$/);
      // Only the pattern went in the UNLINK step; FLUSHDB then removed the rest.
      expect(r.remediations[1]).toBe('FLUSHDB (1 keys), approved by bob');
      // Its own name: tests/incident/intake.test.ts records the plain redis-triage child.
      await recordHistory(temporal, workflowId, 'redis-triage-delete-approved');
    });
    const after = new Redis(redis.url);
    expect(await after.dbsize()).toBe(0);
    after.disconnect();
  }, 60_000);
});

describe('redis-triage restart', () => {
  it('restarts a real Redis through its command driver and waits until the application clients are back', async () => {
    const stateDir = await mkdtemp(path.join(tmpdir(), 'runbook-redis-restart-'));
    const port = await freePort();
    const cmd = (action: string) => [process.execPath, path.resolve('bin/runbook.mjs'), 'demo', 'service', action, 'redis', '--state-dir', stateDir, '--port', String(port)];
    await demoServiceAction('start', 'redis', { stateDir, port });
    const url = `redis://127.0.0.1:${port}`;
    // Two application connections that reconnect on their own, like a service's pool.
    const apps = [new Redis(url, { retryStrategy: () => 200 }), new Redis(url, { retryStrategy: () => 200 })];
    apps.forEach((a) => a.on('error', () => undefined));
    try {
      await Promise.all(apps.map((a) => a.ping()));
      const runIdBefore = /run_id:(\w+)/.exec(await apps[0]!.info('server'))![1];
      const cfg = await writeConfig({
        environment: 'test',
        services: [{ name: 'cache', group: 'infra', driver: { type: 'command', start: cmd('start'), stop: cmd('stop'), status: cmd('status') }, probes: [{ type: 'redis', url }] }],
        approvals: { approvers: { default: ['alice', 'bob'] } },
      });
      await withWorker(cfg, async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('redis-triage', { taskQueue, workflowId: `redis-restart-${Date.now()}`, args: [{ service: 'cache', restart: true, requestedBy: 'alice' }] });
        expect(await approve(handle, 'approve-restart', 'bob')).toBeUndefined();
        const r = (await handle.result()) as TriageResult;
        expect(r.remediations).toEqual(['cache restarted; healthy again: cache', '2 of 2 clients reconnected']);
      });
      const runIdAfter = /run_id:(\w+)/.exec(await apps[0]!.info('server'))![1];
      expect(runIdAfter).not.toBe(runIdBefore);
    } finally {
      apps.forEach((a) => a.disconnect());
      await demoServiceAction('stop', 'redis', { stateDir, port });
      await rm(stateDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('nats-lag-triage', () => {
  it('finds a consumer that falls behind and redelivers; restarts the consumer service and purges old messages after approval', async () => {
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'EVENTS', subjects: ['events.>'] });
      await jsm.consumers.add('EVENTS', { durable_name: 'processor', ack_policy: AckPolicy.Explicit, ack_wait: 1_000_000_000 });
      const js = jetstream(nc);
      await Promise.all(Array.from({ length: 1500 }, (_, i) => js.publish(`events.e${i % 10}`, `event ${i}`)));
      // The processor takes 15 messages and never acks them: after ack_wait they are redelivered.
      const consumer = await js.consumers.get('EVENTS', 'processor');
      for (let round = 0; round < 2; round++) {
        const batch = await consumer.fetch({ max_messages: 15, expires: 1000 });
        for await (const m of batch) void m;
        await sleep(1200);
      }
      await sleep(1500);
    } finally {
      await nc.close();
    }
    // The consumer is really stuck: its health endpoint fails until it is restarted.
    expect((await fetch(`${processorUrl()}/admin/state`, { method: 'POST', body: JSON.stringify({ healthy: false }) })).status).toBe(200);
    expect((await fetch(`${processorUrl()}/healthz`)).status).toBe(503);
    const pidBefore = await processorPid();

    await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `nats-lag-triage-${Date.now()}`;
      const handle = await client.workflow.start('nats-lag-triage', {
        taskQueue,
        workflowId,
        args: [{ service: 'nats', stream: 'EVENTS', consumerService: 'processor', restartConsumer: true, purgeOlderThanSeconds: 3, requestedBy: 'alice' }],
      });
      expect(await approve(handle, 'approve-restart', 'bob')).toBeUndefined();
      expect(await approve(handle, 'approve-purge', 'bob', 'DELETE')).toMatch(/exactly "EVENTS"/);
      const pending = await handle.query(pendingApprovalQuery);
      expect(pending?.summary).toMatch(/LOSES those unprocessed events/);
      // Published after the real restart, just before the purge is approved: younger than the cutoff, kept.
      const fresh = await connect({ servers: nats.url });
      await jetstream(fresh).publish('events.new', 'fresh 1');
      await jetstream(fresh).publish('events.new', 'fresh 2');
      await fresh.close();
      expect(await approve(handle, 'approve-purge', 'bob', 'EVENTS')).toBeUndefined();
      const r = (await handle.result()) as TriageResult;
      const consumer = r.findings.find((f) => f.check === 'consumer EVENTS/processor')!;
      expect(consumer.severity).toBe('P1');
      expect(consumer.detail).toMatch(/num_pending 14\d\d > 1000 \(lagging\)/);
      expect(consumer.detail).toMatch(/num_ack_pending 15/);
      expect(consumer.detail).toMatch(/num_redelivered 15 > 10 \(stuck messages/);
      expect(r.recommendations.join('\n')).toMatch(/restart the consumer service/);
      expect(r.remediations[0]).toBe('processor restarted; healthy again: processor');
      expect(r.remediations[1]).toBe('purged 1500 messages from EVENTS older than 3s, approved by bob');
      await recordHistory(client, workflowId, 'nats-lag-triage');
    });
    // Restarted for real: a new process, the old one gone, its probe healthy.
    const pidAfter = await processorPid();
    expect(pidAfter).not.toBe(pidBefore);
    expect(pidAlive(pidBefore)).toBe(false);
    expect((await fetch(`${processorUrl()}/healthz`)).status).toBe(200);
    const nc2 = await connect({ servers: nats.url });
    const si = await (await jetstreamManager(nc2)).streams.info('EVENTS');
    expect(si.state.messages).toBe(2);
    await nc2.close();
  }, 60_000);
});
