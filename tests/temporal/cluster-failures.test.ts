import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
import { uniqueQueue } from '../fixtures/runbook-worker.js';
import { startPostgres } from '../fixtures/servers.js';
import { killWorkers, spawnWorker } from '../fixtures/worker-process.js';

/**
 * Platform failures on a real cluster, each recovered without a human: the cluster's PostgreSQL
 * restarted under a running server, a worker process killed mid-activity while another serves
 * the same task queue. Runs in `npm run test:cluster` (about a minute); the server crashes are
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
