import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RedisRestoreResult, RedisSnapshotManifest, RedisSnapshotResult } from '../../common/database/types.js';
import { ErrorTypes } from '../../common/errors.js';
import { approveUpdate, rejectUpdate } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort } from '../fixtures/servers.js';
import { failureText, waitForPending } from './helpers.js';

/**
 * redis-snapshot and redis-restore (AlphaPulse 5.3) against a real redis-server that the
 * runbook stops and starts through the command driver (`redis-server <conf>` daemonized,
 * `redis-cli shutdown`), with save points on, so the stop writes the current data to
 * dump.rdb as a production Redis does, and the restore must put that file aside.
 */

let base: string;
let dataDir: string;
let snapshots: string;
let port: number;
let loaded: LoadedConfig;

const redis = () => new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });

async function withRedis<T>(fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = redis();
  await r.connect();
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

/** Every key of db0 and db1 with its DUMP payload: "the same data" means the same keys and values. */
async function digest(): Promise<string> {
  return withRedis(async (r) => {
    const h = createHash('sha256');
    for (const db of [0, 1]) {
      await r.select(db);
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await r.scan(cursor, 'COUNT', 500);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
      for (const k of keys.sort()) h.update(`${db}\0${k}\0${(await r.dumpBuffer(k))?.toString('hex') ?? ''}\n`);
    }
    return h.digest('hex');
  });
}

const pid = () => withRedis(async (r) => Number(/process_id:(\d+)/.exec(await r.info('server'))![1]));

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'runbook-redis-restore-'));
  dataDir = path.join(base, 'data');
  snapshots = path.join(base, 'snapshots');
  await mkdir(dataDir);
  port = await freePort();
  const conf = path.join(base, 'redis.conf');
  await writeFile(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dataDir}`,
      'dbfilename dump.rdb',
      `pidfile ${path.join(base, 'redis.pid')}`,
      `logfile ${path.join(base, 'redis.log')}`,
      'daemonize yes',
      // A save point that never fires during the test, so that SHUTDOWN saves, as in production.
      'save 3600 1',
      'appendonly no',
    ].join('\n'),
  );
  const start = ['redis-server', conf];
  await execa(start[0]!, start.slice(1));
  for (let i = 0; i < 100 && !(await withRedis((r) => r.ping()).catch(() => false)); i++) await sleep(50);
  loaded = await writeConfig({
    environment: 'redistest',
    services: [
      {
        name: 'cache',
        group: 'infra',
        driver: { type: 'command', start, stop: ['redis-cli', '-p', String(port), 'shutdown'], status: ['redis-cli', '-p', String(port), 'ping'], timeoutSeconds: 30 },
        probes: [{ type: 'redis', url: `redis://127.0.0.1:${port}` }],
      },
    ],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: { redis: [{ service: 'cache', snapshots, readyTimeoutSeconds: 30, snapshotTimeoutSeconds: 30 }] },
  });
  await withRedis(async (r) => {
    const p = r.pipeline();
    for (let i = 0; i < 300; i++) p.set(`policy:${i}`, `rules-${i}`);
    for (let i = 0; i < 5; i++) p.set(`session:${i}`, `s${i}`, 'EX', 3600);
    p.hset('tenant:1', { name: 'acme', plan: 'pro' });
    p.rpush('queue', 'a', 'b', 'c');
    p.select(1);
    for (let i = 0; i < 20; i++) p.set(`flag:${i}`, String(i % 2));
    await p.exec();
  });
});

afterAll(async () => {
  const p = Number((await readFile(path.join(base, 'redis.pid'), 'utf8').catch(() => '0')).trim());
  if (p > 0) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await rm(base, { recursive: true, force: true });
});

async function changeData(): Promise<void> {
  await withRedis(async (r) => {
    await r.set('policy:1', 'changed');
    await r.del('policy:2', 'tenant:1');
    for (let i = 0; i < 40; i++) await r.set(`new:${i}`, 'x');
    await r.select(1);
    await r.flushdb();
  });
}

describe('redis-snapshot and redis-restore', { timeout: 60_000 }, () => {
  let snapshot: RedisSnapshotManifest;
  let atSnapshot: string;

  it('redis-snapshot: BGSAVE, the dump copied with a manifest whose checksum and counts are the data', async () => {
    atSnapshot = await digest();
    const r = await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `redis-snapshot-${Date.now()}`;
      const res = (await client.workflow.execute('redis-snapshot', { taskQueue, workflowId, args: [{ service: 'cache', requestedBy: 'alice' }] })) as RedisSnapshotResult;
      await recordHistory(client, workflowId, 'redis-snapshot');
      return res;
    });
    snapshot = r.snapshot;
    const file = path.join(snapshots, 'cache', `${snapshot.id}.rdb`);
    const bytes = await readFile(file);
    expect(bytes.subarray(0, 5).toString()).toBe('REDIS');
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(snapshot.sha256);
    expect(snapshot.keyCountsAtSnapshot).toEqual({ db0: { keys: 307, expires: 5 }, db1: { keys: 20, expires: 0 } });
    expect(JSON.parse(await readFile(path.join(snapshots, 'cache', `${snapshot.id}.json`), 'utf8'))).toEqual(snapshot);
    // redis-check-rdb, independently of the runbook, accepts the copy.
    expect((await execa('redis-check-rdb', [file], { reject: false })).exitCode).toBe(0);
  });

  it('a file that is not an RDB is refused before anything is asked or stopped', async () => {
    await writeFile(path.join(snapshots, 'cache', 'not-rdb.rdb'), 'PGDMP this is not redis');
    const pidBefore = await pid();
    const err = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow
        .execute('redis-restore', { taskQueue, workflowId: `redis-restore-bad-${Date.now()}`, args: [{ service: 'cache', snapshotId: 'not-rdb', requestedBy: 'alice' }] })
        .catch((e: unknown) => e),
    );
    expect(failureText(err)).toMatch(/not-rdb\.rdb is not an RDB file: it starts with "PGDMP thi"/);
    expect(await pid()).toBe(pidBefore);
    await rm(path.join(snapshots, 'cache', 'not-rdb.rdb'));
  });

  it('a reject leaves Redis running with its data; nothing changed while the approval waited', async () => {
    await changeData();
    const changed = await digest();
    expect(changed).not.toBe(atSnapshot);
    const pidBefore = await pid();
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('redis-restore', { taskQueue, workflowId: `redis-restore-reject-${Date.now()}`, args: [{ service: 'cache', snapshotId: snapshot.id, requestedBy: 'alice' }] });
      const pending = await waitForPending(handle);
      expect(pending).toMatchObject({ step: 'approve-restore', confirmPhrase: 'RESTORE', destructive: true });
      // A second restore of the same Redis meanwhile is refused: the first holds its lock.
      const second = await client.workflow
        .execute('redis-restore', { taskQueue, workflowId: `redis-restore-second-${Date.now()}`, args: [{ service: 'cache', snapshotId: snapshot.id, requestedBy: 'alice' }] })
        .catch((e: unknown) => e);
      expect(failureText(second)).toMatch(/database redis:cache is busy: another destructive runbook holds its lock .*nothing was done/);
      expect(await digest()).toBe(changed);
      expect(await pid()).toBe(pidBefore);
      await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', step: 'approve-restore', comment: 'not now' }] });
      const err = await handle.result().catch((e: unknown) => e);
      expect(failureText(err)).toMatch(/step approve-restore rejected by bob: not now; cache was not stopped and its data is unchanged/);
      expect((err as { cause?: { type?: string } }).cause?.type).toBe(ErrorTypes.ApprovalRejected);
    });
    expect(await digest()).toBe(changed);
    expect(await pid()).toBe(pidBefore);
    expect((await readdir(dataDir)).filter((f) => f.includes('replaced'))).toEqual([]);
  });

  it('approved: Redis is stopped and started by its driver, holds the snapshot, counts before/after reported, the old dump kept', async () => {
    const pidBefore = await pid();
    const changed = await digest();
    const r = await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('redis-restore', { taskQueue, workflowId: `redis-restore-${Date.now()}`, args: [{ service: 'cache', requestedBy: 'alice' }] });
      const pending = await waitForPending(handle);
      expect(pending.summary).toContain(`Restore Redis cache from snapshot ${snapshot.id}`);
      expect(pending.summary).toContain('327 keys (db0 307, db1 20) replace the 345 it holds now (db0 345)');
      await sleep(500);
      expect(await digest()).toBe(changed);
      expect(await pid()).toBe(pidBefore);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'RESTORE', step: 'approve-restore', comment: 'bad deploy wrote junk' }] });
      const res = (await handle.result()) as RedisRestoreResult;
      await recordHistory(client, handle.workflowId, 'redis-restore');
      return res;
    });
    expect(r).toMatchObject({ ok: true, service: 'cache', snapshotId: snapshot.id, expectedFrom: 'scratch-load', pidBefore });
    expect(r.before).toEqual({ db0: { keys: 345, expires: 5 } });
    expect(r.after).toEqual({ db0: { keys: 307, expires: 5 }, db1: { keys: 20, expires: 0 } });
    expect(r.counts).toEqual([
      { db: 'db0', expected: 307, actual: 307, volatile: 5, ok: true },
      { db: 'db1', expected: 20, actual: 20, volatile: 0, ok: true },
    ]);
    expect(r.pidAfter).not.toBe(pidBefore);
    expect(await pid()).toBe(r.pidAfter);
    expect(await digest()).toBe(atSnapshot);
    // The dump Redis wrote when it was stopped (the changed data) is kept beside the new one.
    expect(r.keptAs).toMatch(/dump\.rdb\.replaced-\d{8}T\d{6}Z-[0-9a-f]{8}$/);
    expect(path.dirname(r.keptAs!)).toBe(dataDir);
    const kept = await readFile(r.keptAs!);
    expect(kept.subarray(0, 5).toString()).toBe('REDIS');
    expect(createHash('sha256').update(kept).digest('hex')).not.toBe(snapshot.sha256);
    expect(createHash('sha256').update(await readFile(path.join(dataDir, 'dump.rdb'))).digest('hex')).toBe(snapshot.sha256);
    expect(r.commands).toEqual([`redis-cli -p ${port} shutdown`, `redis-server ${path.join(base, 'redis.conf')}`]);
    expect(r.progress.steps.map((s) => `${s.id}:${s.status}`)).toEqual([
      'plan:succeeded',
      'check:succeeded',
      'inspect:succeeded',
      'approve-restore:succeeded',
      'stop:succeeded',
      'replace:succeeded',
      'start:succeeded',
      'wait-ready:succeeded',
      'verify:succeeded',
    ]);
    expect(existsSync(path.join(dataDir, 'dump.rdb.runbook-restore.tmp'))).toBe(false);
  });
});
