import { watch, type FSWatcher } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CanaryDeployResult } from '../../common/delivery/types.js';
import type { StackStopResult } from '../../common/stack/types.js';
import { startTemporalCluster } from '../../lib/temporal/cluster.js';
import {
  activityRuns,
  approveDelete,
  destructiveStack,
  startCleanStop,
  startTestCluster,
  waitForJournal,
  type DestructiveStack,
  type TestCluster,
} from '../fixtures/cluster.js';
import { startDeliveryBed, startLoad } from '../fixtures/delivery-traffic.js';
import { uniqueQueue, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres } from '../fixtures/servers.js';
import { startTcpProxy } from '../fixtures/tcp-proxy.js';
import { killWorkers, spawnWorker } from '../fixtures/worker-process.js';
import { deliveryConfig, startWebhook, waitForStatus, warmCanary } from '../delivery/helpers.js';

/**
 * Platform failures on a real cluster, each recovered without a human: the cluster's PostgreSQL
 * restarted under a running server, a worker process killed mid-activity while another serves
 * the same task queue, the server SIGKILLed while a canary bakes behind a real nginx (promoted,
 * and rolled back when the bake's metrics fail), a worker
 * cut off from the server for 30 s. Runs in `npm run test:cluster` (about a minute); the server crashes are
 * in cluster.test.ts, which `npm test` runs too.
 */
let c: TestCluster;
let stack: DestructiveStack;

/** stack-stop's activities heartbeat at most this long apart (workflows/shared/profiles.ts, longRunning). */
const HEARTBEAT_TIMEOUT_MS = 15_000;

beforeAll(async () => {
  [c, stack] = await Promise.all([startTestCluster('cluster-failures'), destructiveStack()]);
}, 600_000);

afterAll(async () => {
  killWorkers();
  await c?.stop();
});

const temporal = () => ({ address: c.cluster.address, namespace: c.cluster.namespace });

describe('PostgreSQL restarted under a running cluster', () => {
  it('the server and the worker carry on by themselves: the waiting run is approved and finishes, a new run after it too', async () => {
    const taskQueue = uniqueQueue('cluster-pg');
    const worker = await spawnWorker(stack.loaded.path, taskQueue, { temporal: temporal() });
    await stack.reset(0);
    const { handle } = await startCleanStop(c.client, taskQueue, 'cluster-pg-restart');
    const serverPid = c.cluster.pid();

    // Connections cut (fast shutdown), the database gone for 3 s, then back on the same port.
    await c.cluster.restartPostgres(3000);
    expect(await stack.journal()).toEqual([]);

    await approveDelete(handle, 90_000);
    const result = (await handle.result()) as StackStopResult;
    expect(result.dataDeleted).toBe(true);
    expect((await stack.journal()).map((l) => l.split(' ')[0])).toEqual(['stop', 'clean-start', 'clean-done']);

    await stack.reset(0);
    const second = await startCleanStop(c.client, taskQueue, 'cluster-pg-after');
    await approveDelete(second.handle);
    expect(((await second.handle.result()) as StackStopResult).dataDeleted).toBe(true);

    // Nobody restarted anything: the same server process and the same worker process.
    expect(c.cluster.pid()).toBe(serverPid);
    expect(worker.child.exitCode).toBeNull();
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  }, 180_000);
});

describe('two workers on one task queue, one killed mid-activity', () => {
  it('the other runs the clean again within the heartbeat timeout and finishes the run', async () => {
    const taskQueue = uniqueQueue('cluster-2w');
    // Own process groups: the kill takes the worker's running command with it, as a container's end does.
    const workers = await Promise.all([1, 2].map(() => spawnWorker(stack.loaded.path, taskQueue, { temporal: temporal(), detached: true })));
    await stack.reset(60);
    const { handle } = await startCleanStop(c.client, taskQueue, 'cluster-worker-kill');
    await approveDelete(handle);
    const first = await waitForJournal(stack, 'clean-start');
    const victimPid = Number(first.split(' ')[1]);
    const victim = workers.find((w) => w.child.pid === victimPid);
    expect(victim, `the clean ran under one of the workers (pids ${workers.map((w) => w.child.pid).join(', ')})`).toBeDefined();
    const survivor = workers.find((w) => w !== victim)!;

    await writeFile(path.join(stack.dir, 'clean-seconds'), '1');
    const killedAt = Date.now();
    process.kill(-victimPid, 'SIGKILL');
    expect(await victim!.exited).toBeNull();

    const result = (await handle.result()) as StackStopResult;
    const tookMs = Date.now() - killedAt;
    expect(result.dataDeleted).toBe(true);
    // The heartbeat timeout, the retry's 2 s back-off and the 1 s clean, with room for a busy machine.
    expect(tookMs).toBeLessThan(HEARTBEAT_TIMEOUT_MS + 2_000 + 1_000 + 8_000);
    const journal = await stack.journal();
    expect(journal[0]).toMatch(/^stop \d+$/);
    // Killed before its done line; the survivor's attempt ran to the end.
    expect(journal.slice(1)).toEqual([`clean-start ${victimPid}`, `clean-start ${survivor.child.pid}`, `clean-done ${survivor.child.pid}`]);
    const runs = await activityRuns(handle, 'cleanServices');
    expect(runs.scheduled).toBe(1);
    expect(runs.attempts).toEqual([2]);
    expect(runs.identities[0]).toContain(String(survivor.child.pid));
    survivor.child.kill('SIGTERM');
    expect(await survivor.exited).toBe(0);
  }, 180_000);
});

describe('an existing PostgreSQL (--postgres-url)', () => {
  it('creates both databases and their schema there, starts on them, and leaves that server running on stop', async () => {
    const external = await startPostgres();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'runbook-cluster-external-'));
    try {
      const cluster = await startTemporalCluster({ dataDir, port: 0, postgresUrl: `postgres://postgres:unused@127.0.0.1:${external.port}` });
      try {
        expect(cluster.localPostgres).toBeUndefined();
        expect(cluster.postgresUrl).toBe(`postgres://postgres:***@127.0.0.1:${external.port}`);
        expect(cluster.schema.map((s) => s.before)).toEqual([undefined, undefined]);
        const db = new pg.Client({ connectionString: external.url });
        await db.connect();
        const dbs = await db.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'temporal%' ORDER BY 1");
        await db.end();
        expect(dbs.rows.map((r) => r.datname)).toEqual(['temporal', 'temporal_visibility']);
        await expect(cluster.restartPostgres()).rejects.toThrow(/external PostgreSQL/);
        const config = await readFile(path.join(dataDir, 'config', 'runbook.yaml'), 'utf8');
        expect(config).toContain(`connectAddr: 127.0.0.1:${external.port}`);
      } finally {
        await cluster.stop();
      }
      const after = new pg.Client({ connectionString: external.url });
      await after.connect();
      await after.end();
    } finally {
      await external.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});

/** The weights written to nginx's upstream file: every atomic rewrite is a rename onto it, one event per weight set. */
function watchWeights(upstreamFile: string): { writes: number[]; watcher: FSWatcher } {
  const writes: number[] = [];
  const upstreamName = path.basename(upstreamFile);
  const watcher = watch(path.dirname(upstreamFile), (event, name) => {
    if (event !== 'rename' || name !== upstreamName) return;
    void readFile(upstreamFile, 'utf8').then(
      (text) => writes.push(Number(/# canary-weight: (\d+)/.exec(text)?.[1] ?? NaN)),
      () => undefined,
    );
  });
  return { writes, watcher };
}

describe('temporal-server SIGKILLed while a canary bakes', () => {
  it('restarted on the same data dir and ports, the run finishes at 100 % and each weight was written to nginx once', async () => {
    const bed = await startDeliveryBed();
    const webhook = await startWebhook();
    const load = startLoad(bed.nginx.url, 40);
    const { writes, watcher } = watchWeights(bed.nginx.upstreamFile);
    try {
      await warmCanary(bed);
      const loaded = await writeConfig(deliveryConfig(bed, { analysis: { intervalSeconds: 1, count: 2, window: '5s' } }));
      const taskQueue = uniqueQueue('cluster-canary');
      const worker = await spawnWorker(loaded.path, taskQueue, { temporal: temporal(), env: { ...process.env, DELIVERY_WEBHOOK: webhook.url } });
      const handle = await c.client.workflow.start('canary-deploy', {
        taskQueue,
        workflowId: `cluster-canary-kill-${Date.now()}`,
        args: [{ router: 'api', requestedBy: 'alice', steps: [10, 50, 100], bakeSeconds: 6 }],
      });
      await waitForStatus(handle, (s) => s.phase === 'baking' && s.weight === 10, 30_000);
      expect(writes).toEqual([10]);

      const pid = c.cluster.pid();
      await c.cluster.killServer('SIGKILL');
      expect(c.cluster.pid()).toBeUndefined();
      // Down for a moment with nginx still serving the 10 % split, then back on the same ports.
      await sleep(2000);
      expect(writes).toEqual([10]);
      await c.cluster.startServer();
      expect(c.cluster.pid()).not.toBe(pid);

      const result = (await handle.result()) as CanaryDeployResult;
      expect(result).toMatchObject({ ok: true, outcome: 'promoted', finalWeight: 100 });
      expect(result.steps.map((s) => [s.weight, s.ok])).toEqual([
        [10, true],
        [50, true],
        [100, true],
      ]);
      await sleep(200);
      expect(writes).toEqual([10, 50, 100]);
      expect(await readFile(bed.nginx.upstreamFile, 'utf8')).toContain('# canary-weight: 100');
      const runs = await activityRuns(handle, 'setTrafficWeight');
      expect(runs.scheduled).toBe(3);
      expect(runs.attempts).toEqual([1, 1, 1]);
      expect(worker.child.exitCode).toBeNull();
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
    } finally {
      watcher.close();
      await load.stop();
      await webhook.stop();
      await bed.stop();
    }
  }, 120_000);
});

describe('temporal-server SIGKILLed while a canary bakes, and the bake\'s metrics fail', () => {
  it('after the restart the analysis fails and the run rolls back: traffic to 0 % written once, the canary stopped once', async () => {
    const bed = await startDeliveryBed();
    const webhook = await startWebhook();
    const load = startLoad(bed.nginx.url, 40);
    const { writes, watcher } = watchWeights(bed.nginx.upstreamFile);
    try {
      await warmCanary(bed);
      const loaded = await writeConfig(deliveryConfig(bed, { analysis: { intervalSeconds: 1, count: 2, window: '5s' } }));
      const taskQueue = uniqueQueue('cluster-canary-bad');
      const worker = await spawnWorker(loaded.path, taskQueue, { temporal: temporal(), env: { ...process.env, DELIVERY_WEBHOOK: webhook.url } });
      const handle = await c.client.workflow.start('canary-deploy', {
        taskQueue,
        workflowId: `cluster-canary-bad-${Date.now()}`,
        args: [{ router: 'api', requestedBy: 'alice', steps: [10, 50, 100], bakeSeconds: 6 }],
      });
      await waitForStatus(handle, (s) => s.phase === 'baking' && s.weight === 10, 30_000);
      expect(writes).toEqual([10]);

      // The canary turns bad during the bake, and the server dies.
      await bed.setCanary({ errorRate: 0.5 });
      await c.cluster.killServer('SIGKILL');
      await sleep(2000);
      expect(writes).toEqual([10]);
      expect(bed.canary.running()).toBe(true);
      await c.cluster.startServer();
      const restartedAt = Date.now();

      const err = await handle.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
      expect(cause).toBeInstanceOf(ApplicationFailure);
      expect(cause.type).toBe('CanaryRolledBack');
      expect(cause.message).toMatch(/rolled back, traffic 100 % stable: analysis failed at 10 %: error-rate/);
      const result = cause.details![0] as CanaryDeployResult;
      expect(result).toMatchObject({ outcome: 'rolled-back', finalWeight: 0, canaryStopped: { ok: true } });
      expect(result.steps.map((s) => [s.weight, s.ok])).toEqual([[10, false]]);
      // Measured and rolled back after the restart, not before the kill.
      expect(Date.parse(result.failedMeasurementAt!)).toBeGreaterThanOrEqual(restartedAt - 1000);
      expect(Date.parse(result.trafficZeroAt!)).toBeGreaterThanOrEqual(Date.parse(result.failedMeasurementAt!));

      // The shift back happened exactly once: one rewrite of the upstream file, one activity at attempt 1.
      await sleep(200);
      expect(writes).toEqual([10, 0]);
      expect(await readFile(bed.nginx.upstreamFile, 'utf8')).toContain('# canary-weight: 0');
      const weights = await activityRuns(handle, 'setTrafficWeight');
      expect(weights.scheduled).toBe(2);
      expect(weights.attempts).toEqual([1, 1]);
      const stops = await activityRuns(handle, 'serviceAction');
      expect(stops.scheduled).toBe(1);
      expect(stops.attempts).toEqual([1]);
      for (let i = 0; i < 50 && bed.canary.running(); i++) await sleep(100);
      expect(bed.canary.running()).toBe(false);
      expect(webhook.messages.filter((m) => m.event === 'canary-rolled-back')).toHaveLength(1);
      const progress = Object.fromEntries(result.progress.steps.map((st) => [st.id, st.status]));
      expect(progress).toMatchObject({ 'set-10': 'succeeded', 'analysis-10': 'failed', 'set-50': 'pending', 'rollback-traffic': 'succeeded', 'stop-canary': 'succeeded' });
      expect(worker.child.exitCode).toBeNull();
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
    } finally {
      watcher.close();
      await load.stop();
      await webhook.stop();
      await bed.stop();
    }
  }, 120_000);
});

describe('a worker cut off from the server for 30 s', () => {
  it('reconnects by itself: the same worker process finishes the waiting run, which never failed meanwhile', async () => {
    const proxy = await startTcpProxy(c.cluster.address);
    try {
      const taskQueue = uniqueQueue('cluster-net');
      const worker = await spawnWorker(stack.loaded.path, taskQueue, { temporal: { address: proxy.address, namespace: c.cluster.namespace } });
      const pid = worker.child.pid;
      await stack.reset(0);
      const { handle, pending } = await startCleanStop(c.client, taskQueue, 'cluster-net-cut');
      expect(pending.step).toBe('approve-delete');
      expect(proxy.accepted()).toBeGreaterThan(0);

      // Every connection through the proxy reset, new ones refused, for 30 s.
      proxy.down();
      const cutAt = Date.now();
      const statuses = new Set<string>();
      while (Date.now() - cutAt < 30_000) {
        statuses.add((await handle.describe()).status.name);
        await sleep(1000);
      }
      expect([...statuses]).toEqual(['RUNNING']);
      expect(proxy.refused(), 'the worker kept trying to reach the server').toBeGreaterThan(0);
      expect(worker.child.exitCode).toBeNull();
      expect(await stack.journal()).toEqual([]);

      const acceptedBefore = proxy.accepted();
      proxy.up();
      await approveDelete(handle, 60_000);
      const result = (await handle.result()) as StackStopResult;
      expect(result.dataDeleted).toBe(true);
      expect((await stack.journal()).map((l) => l.split(' ')[0])).toEqual(['stop', 'clean-start', 'clean-done']);
      // Run by the same process, which connected again through the proxy and was never restarted.
      expect((await stack.journal()).every((l) => l.endsWith(` ${pid}`))).toBe(true);
      expect(proxy.accepted()).toBeGreaterThan(acceptedBefore);
      expect(worker.child.pid).toBe(pid);
      expect(worker.child.exitCode).toBeNull();
      expect(worker.output().split('"worker started"').length - 1).toBe(1);
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
    } finally {
      await proxy.close();
    }
  }, 120_000);
});
