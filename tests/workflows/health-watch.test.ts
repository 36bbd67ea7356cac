import { createServer, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { progressQuery } from '../../common/messages.js';
import type { HealthWatchResult } from '../../common/stack/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { freePort, startRedis, type RedisServer } from '../fixtures/servers.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';

/**
 * health-watch against a real Redis held over Fulcrum 2.3's Memory Usage row (>80 %) for the
 * whole window, and a TCP service that is down only at the start: the first is graded, the
 * second is listed as transient with how long it held. Durations come from the config
 * (`thresholds.forSeconds`), seconds instead of the seed's minutes.
 */

let redis: RedisServer;
let loaded: LoadedConfig;
let flappingPort: number;
let listener: Server | undefined;

beforeAll(async () => {
  redis = await startRedis({ maxmemory: '8mb', maxmemoryPolicy: 'noeviction' });
  const client = new Redis(redis.url);
  try {
    // Fill to between 80 % and 90 % of maxmemory: over Memory Usage (P1), under Redis Memory (AlphaPulse 4.2's 90 %).
    const value = 'x'.repeat(2048);
    for (let i = 0; ; i++) {
      await client.set(`fill:${i}`, value);
      const mem = Object.fromEntries((await client.info('memory')).split('\r\n').map((l) => l.split(':')));
      if (Number(mem.used_memory) / Number(mem.maxmemory) > 0.84) break;
    }
  } finally {
    client.disconnect();
  }
  flappingPort = await freePort();
  loaded = await writeConfig({
    environment: 'test',
    services: [
      { name: 'redis', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'redis', url: redis.url }] },
      { name: 'edge', group: 'apps', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'tcp', host: '127.0.0.1', port: flappingPort, timeoutMs: 500 }] },
    ],
    approvals: { approvers: { default: ['alice'] } },
    thresholds: { forSeconds: { 'memory-usage': 5, 'service-down': 3, 'nats-lag': 1 } },
  });
}, 30_000);

afterAll(async () => {
  await new Promise((resolve) => (listener ? listener.close(resolve) : resolve(undefined)));
  await redis?.stop();
});

describe('health-watch', () => {
  it('grades only what held for its duration; what came and went is transient, with how long it held', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `health-watch-${Date.now()}`;
      const handle = await client.workflow.start('health-watch', { taskQueue, workflowId, args: [{ sampleEverySeconds: 1, requestedBy: 'alice' }] });
      for (let i = 0; i < 100 && (await handle.query(progressQuery)).currentStep !== 'watch'; i++) await sleep(100);
      // The edge service comes up a moment into the window: down for less than its 3 s.
      await sleep(700);
      listener = createServer((s) => s.end());
      await new Promise<void>((resolve) => listener!.listen(flappingPort, '127.0.0.1', resolve));

      const r = (await handle.result()) as HealthWatchResult;
      // No window given: the longest duration of the probe rows, here memory-usage's 5 s from the config.
      expect(r.windowSeconds).toBe(5);
      expect(r.samples).toBeGreaterThanOrEqual(5);
      const memory = r.conditions.find((c) => c.service === 'redis' && c.threshold === 'memory-usage');
      expect(memory).toMatchObject({ sustained: true, severity: 'P1', requiredSeconds: 5, seed: 'Fulcrum 2.3', seenIn: r.samples });
      expect(memory!.heldSeconds).toBeGreaterThanOrEqual(5);
      expect(memory!.reason).toMatch(/^Memory Usage >80% \(8\d\.\d%\)$/);
      expect(r.conditions.some((c) => c.threshold === 'redis-memory')).toBe(false);

      const edge = r.conditions.find((c) => c.service === 'edge');
      expect(edge).toMatchObject({ threshold: 'service-down', sustained: false, severity: 'OK', requiredSeconds: 3, reason: 'Service Down: 0 healthy' });
      expect(edge!.heldSeconds).toBeLessThan(3);
      expect(edge!.seenIn).toBeLessThan(r.samples);
      expect(r.last.results.find((x) => x.service === 'edge')).toMatchObject({ status: 'healthy' });

      expect(r.worst).toBe('P1');
      expect(r.ok).toBe(true);
      expect(r.conditions[0]).toBe(memory);
      expect(r.table).toMatch(/redis .* memory-usage\s+\d+(\.\d)? s\s+5 s\s+P1/);
      expect(r.table).toMatch(/edge .* service-down .* transient/);
      await recordHistory(client, workflowId, 'health-watch');
    });
  }, 40_000);

  it('an input window shorter than a row\'s duration requires the whole window', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const r = (await client.workflow.execute('health-watch', { taskQueue, workflowId: `health-watch-short-${Date.now()}`, args: [{ services: ['redis'], windowSeconds: 2, sampleEverySeconds: 1 }] })) as HealthWatchResult;
      expect(r.windowSeconds).toBe(2);
      expect(r.conditions).toHaveLength(1);
      expect(r.conditions[0]).toMatchObject({ threshold: 'memory-usage', sustained: true, requiredSeconds: 2, severity: 'P1' });
    });
  }, 30_000);
});
