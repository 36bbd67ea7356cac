import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StackStopResult } from '../../common/stack/types.js';
import { pidAlive, postgresRunning, postgresServerBinDir, stopPostgresServer } from '../../lib/local/index.js';
import type { ClusterPorts } from '../../lib/temporal/cluster.js';
import {
  activityRuns,
  approveDelete,
  destructiveStack,
  startCleanStop,
  startTestCluster,
  type DestructiveStack,
  type TestCluster,
} from '../fixtures/cluster.js';
import { uniqueQueue } from '../fixtures/runbook-worker.js';
import { killWorkers, spawnWorker } from '../fixtures/worker-process.js';

/**
 * The cluster's four services as four temporal-server processes (`start --service X`), as a
 * production deployment scales them, and one of them killed and started again while a run
 * waits: the others keep running, the run carries on. Runs in `npm run test:cluster`.
 */
let c: TestCluster;
let stack: DestructiveStack;

beforeAll(async () => {
  [c, stack] = await Promise.all([startTestCluster('cluster-services', { separateServices: true }), destructiveStack()]);
}, 600_000);

afterAll(async () => {
  killWorkers();
  await c?.stop();
});

const temporal = () => ({ address: c.cluster.address, namespace: c.cluster.namespace });

describe('four service processes', () => {
  it('each service is its own process with its own metrics endpoint', async () => {
    const pids = c.cluster.pids();
    expect(Object.keys(pids).sort()).toEqual(['frontend', 'history', 'matching', 'worker']);
    expect(new Set(Object.values(pids)).size).toBe(4);
    expect(c.cluster.pid()).toBe(pids.frontend);
    const ports = JSON.parse(await readFile(path.join(c.dataDir, 'cluster.json'), 'utf8')) as ClusterPorts;
    for (const port of [ports.metrics, ports.historyMetrics, ports.matchingMetrics, ports.workerMetrics]) {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
    }
  });

  it('runbook temporal cluster --separate-services: four processes named with their pids; SIGTERM stops them all', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'runbook-cluster-separate-'));
    // The four processes stop one by one gracefully: more than execa's default 5 s before its SIGKILL.
    const child = execa(process.execPath, ['bin/runbook.mjs', 'temporal', 'cluster', '--separate-services', '--data-dir', dataDir, '--port', '0'], {
      reject: false,
      forceKillAfterDelay: 60_000,
    });
    try {
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      for (let i = 0; i < 900 && !stdout.includes('\n') && child.exitCode === null; i++) await sleep(100);
      expect(stdout.trim(), stderr).toMatch(/^127\.0\.0\.1:\d+$/);
      const line = /Processes: +(.*) \(configs/.exec(stderr)?.[1];
      const pids = Object.fromEntries((line ?? '').split(', ').map((p) => p.split(' ') as [string, string]).map(([s, pid]) => [s, Number(pid)]));
      expect(Object.keys(pids).sort()).toEqual(['frontend', 'history', 'matching', 'worker']);
      for (const pid of Object.values(pids)) expect(pidAlive(pid)).toBe(true);
      const stopping = Date.now();
      child.kill('SIGTERM');
      expect((await child).exitCode, stderr).toBe(0);
      expect(Date.now() - stopping).toBeLessThan(45_000);
      expect(stderr).toMatch(/SIGTERM: stopping temporal-server and its PostgreSQL/);
      for (let i = 0; i < 50 && Object.values(pids).some(pidAlive); i++) await sleep(100);
      expect(Object.values(pids).filter(pidAlive)).toEqual([]);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await child;
      const pgData = { binDir: postgresServerBinDir(), dataDir: path.join(dataDir, 'postgres', 'data') };
      if (await postgresRunning(pgData)) await stopPostgresServer(pgData, 'immediate');
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 120_000);

  for (const service of ['history', 'matching', 'frontend', 'worker'] as const) {
    it(`${service} SIGKILLed and started again while a run waits: the other three keep running, the run is approved and finishes`, async () => {
      const taskQueue = uniqueQueue(`cluster-svc-${service}`);
      const worker = await spawnWorker(stack.loaded.path, taskQueue, { temporal: temporal() });
      await stack.reset(0);
      const { handle } = await startCleanStop(c.client, taskQueue, `cluster-svc-${service}`);
      const before = c.cluster.pids();

      await c.cluster.killService(service, 'SIGKILL');
      expect(c.cluster.pids()[service]).toBeUndefined();
      await sleep(2000);
      expect(await stack.journal()).toEqual([]);
      await c.cluster.startService(service);

      const after = c.cluster.pids();
      expect(after[service]).toBeDefined();
      expect(after[service]).not.toBe(before[service]);
      for (const other of ['frontend', 'history', 'matching', 'worker'] as const) if (other !== service) expect(after[other]).toBe(before[other]);

      await approveDelete(handle, 90_000);
      const result = (await handle.result()) as StackStopResult;
      expect(result.dataDeleted).toBe(true);
      expect((await stack.journal()).map((l) => l.split(' ')[0])).toEqual(['stop', 'clean-start', 'clean-done']);
      const cleans = await activityRuns(handle, 'cleanServices');
      expect(cleans.scheduled).toBe(1);
      expect(cleans.attempts).toEqual([1]);
      // The same worker process throughout: it reconnected by itself.
      expect(worker.child.exitCode).toBeNull();
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
    }, 180_000);
  }
});
