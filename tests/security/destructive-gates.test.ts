import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorTypes } from '../../common/errors.js';
import { rejectUpdate } from '../../common/messages.js';
import type { PendingApproval } from '../../common/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { failureText, pgConfigService, sql, tableDigest, waitForPending } from '../database/helpers.js';
import { startNats, startPostgres, startRedis, type NatsServer, type PgServer, type RedisServer } from '../fixtures/servers.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';

/**
 * Every destructive step that waits for an approval: while the run waits, the real system is
 * untouched (keys, stream, rows, connections, the service's process); after a reject, or a
 * timeout, it still is. Each run is requested by alice and answered by bob (two-person rule).
 */

let redis: RedisServer;
let nats: NatsServer;
let pgs: PgServer;
let appUrl: string;
let dir: string;
let restarts: string;
let loaded: LoadedConfig;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-gates-'));
  restarts = path.join(dir, 'restarted');
  [redis, nats, pgs] = await Promise.all([startRedis(), startNats(), startPostgres({ settings: { autovacuum: 'off' } })]);
  appUrl = await pgs.createDatabase('app');
  await sql(appUrl, `CREATE TABLE policies (id int PRIMARY KEY, name text NOT NULL)`);
  await sql(appUrl, `INSERT INTO policies SELECT g, 'policy-' || g FROM generate_series(1, 500) g`);
  // A restart that really happens leaves a line in this file: the command driver runs it without a shell.
  const restart = [process.execPath, '-e', 'require("node:fs").appendFileSync(process.argv[1], process.argv[2] + "\\n")', restarts];
  loaded = await writeConfig({
    environment: 'gates',
    services: [
      pgConfigService(pgs.url),
      { name: 'redis', group: 'infra', driver: { type: 'command', status: ['true'], restart: [...restart, 'redis'] }, probes: [{ type: 'redis', url: redis.url }] },
      { name: 'nats', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'nats', servers: nats.url }] },
      { name: 'processor', driver: { type: 'command', status: ['true'], restart: [...restart, 'processor'] } },
      { name: 'api', driver: { type: 'command', status: ['true'], restart: [...restart, 'api'] } },
    ],
    databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: { backups: { repository: path.join(dir, 'backups'), retention: 3, verifyTables: { app: ['policies'] } } },
  });
}, 120_000);

afterAll(async () => {
  await Promise.all([redis?.stop(), nats?.stop(), pgs?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

/** Starts `procedure` as alice and waits until it asks for `step`. */
async function startAndWait(client: Client, taskQueue: string, procedure: string, input: Record<string, unknown>, step: string): Promise<{ handle: WorkflowHandle; pending: PendingApproval }> {
  const handle = await client.workflow.start(procedure, {
    taskQueue,
    workflowId: `${procedure}-gate-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`,
    args: [{ ...input, requestedBy: 'alice' }],
  });
  const pending = await waitForPending(handle);
  expect(pending.step).toBe(step);
  return { handle, pending };
}

/** bob rejects the pending step; returns the run's failure. */
async function rejectAndFail(handle: WorkflowHandle, step: string): Promise<{ type: string | undefined; text: string }> {
  await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', step, comment: 'not this one' }] });
  const err = await handle.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const cause = (err as WorkflowFailedError).cause;
  return { type: cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined, text: failureText(err) };
}

async function withRedis<T>(fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(redis.url);
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

async function fillKeys(n: number): Promise<void> {
  await withRedis(async (r) => {
    await r.flushdb();
    for (let i = 0; i < n; i++) await r.set(`session:${i}`, `v${i}`);
  });
}

const dbsize = () => withRedis((r) => r.dbsize());
const restarted = async () => (existsSync(restarts) ? readFile(restarts, 'utf8') : '');

describe('redis-triage', () => {
  it('deletePattern "*" waits for an approval showing how many keys match; meanwhile and after a reject all 50 keys are there', async () => {
    await fillKeys(50);
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const { handle, pending } = await startAndWait(client, taskQueue, 'redis-triage', { service: 'redis', deletePattern: '*' }, 'approve-unlink');
      expect(pending).toMatchObject({ destructive: true, confirmPhrase: 'DELETE', requestedBy: 'alice' });
      expect(pending.summary).toMatch(/^Delete every key matching "\*" in redis \(SCAN \+ UNLINK\): 50 of its 50 keys match, e\.g\. "session:\d+"/);
      await sleep(1000);
      expect(await dbsize()).toBe(50);
      const failed = await rejectAndFail(handle, 'approve-unlink');
      expect(failed.type).toBe(ErrorTypes.ApprovalRejected);
      expect(failed.text).toMatch(/step approve-unlink rejected by bob: not this one; no key was deleted/);
    });
    expect(await dbsize()).toBe(50);
  });

  it('deletePattern: no answer before the timeout deletes nothing', async () => {
    await fillKeys(50);
    const err = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow
        .execute('redis-triage', { taskQueue, workflowId: `redis-triage-timeout-${Date.now()}`, args: [{ service: 'redis', deletePattern: 'session:*', requestedBy: 'alice', approvalTimeoutSeconds: 2 }] })
        .catch((e: unknown) => e),
    );
    expect(failureText(err)).toMatch(/step approve-unlink: no answer within 2s; no key was deleted/);
    expect(await dbsize()).toBe(50);
  });

  it('flush: FLUSHDB waits for its approval; a reject keeps every key', async () => {
    await fillKeys(20);
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const { handle, pending } = await startAndWait(client, taskQueue, 'redis-triage', { service: 'redis', flush: true }, 'approve-flush');
      expect(pending).toMatchObject({ destructive: true, confirmPhrase: 'FLUSHDB' });
      expect(await dbsize()).toBe(20);
      expect((await rejectAndFail(handle, 'approve-flush')).text).toMatch(/nothing was flushed/);
    });
    expect(await dbsize()).toBe(20);
  });

  it('restart: the restart waits for its approval; a reject never runs the driver', async () => {
    const runId = () => withRedis(async (r) => /run_id:(\w+)/.exec(await r.info('server'))![1]);
    const before = await runId();
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const { handle } = await startAndWait(client, taskQueue, 'redis-triage', { service: 'redis', restart: true }, 'approve-restart');
      expect((await rejectAndFail(handle, 'approve-restart')).text).toMatch(/Redis was not restarted/);
    });
    expect(await runId()).toBe(before);
    expect(await restarted()).not.toMatch(/^redis$/m);
  });
});

describe('service-error-triage', () => {
  it('flushAndRestart waits for one approval (FLUSHDB); a reject keeps the cache and never restarts the service', async () => {
    await fillKeys(10);
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const { handle, pending } = await startAndWait(client, taskQueue, 'service-error-triage', { service: 'api', cacheService: 'redis', flushAndRestart: true }, 'approve-remediation');
      expect(pending).toMatchObject({ destructive: true, confirmPhrase: 'FLUSHDB' });
      expect(await dbsize()).toBe(10);
      expect((await rejectAndFail(handle, 'approve-remediation')).text).toMatch(/nothing was flushed or restarted/);
    });
    expect(await dbsize()).toBe(10);
    expect(await restarted()).not.toMatch(/^api$/m);
  });
});

describe('nats-lag-triage', () => {
  const messages = async (stream: string) => {
    const nc = await connect({ servers: nats.url });
    try {
      return (await (await jetstreamManager(nc)).streams.info(stream)).state.messages;
    } finally {
      await nc.close();
    }
  };

  beforeAll(async () => {
    const nc = await connect({ servers: nats.url });
    try {
      await (await jetstreamManager(nc)).streams.add({ name: 'GATES', subjects: ['gates.>'] });
      const js = jetstream(nc);
      for (let i = 0; i < 30; i++) await js.publish('gates.e', `event ${i}`);
    } finally {
      await nc.close();
    }
  });

  it('purge waits for an approval confirmed with the stream name; meanwhile and after a reject all 30 messages are there', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const { handle, pending } = await startAndWait(client, taskQueue, 'nats-lag-triage', { service: 'nats', stream: 'GATES', purge: true }, 'approve-purge');
      expect(pending).toMatchObject({ destructive: true, confirmPhrase: 'GATES' });
      expect(pending.summary).toMatch(/Purge stream GATES \(30 messages\)/);
      expect(await messages('GATES')).toBe(30);
      expect((await rejectAndFail(handle, 'approve-purge')).text).toMatch(/nothing was purged/);
    });
    expect(await messages('GATES')).toBe(30);
  });

  it('restartConsumer waits for an approval; a reject never restarts the consumer', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const { handle } = await startAndWait(client, taskQueue, 'nats-lag-triage', { service: 'nats', consumerService: 'processor', restartConsumer: true }, 'approve-restart');
      expect((await rejectAndFail(handle, 'approve-restart')).text).toMatch(/processor was not restarted/);
    });
    expect(await restarted()).not.toMatch(/^processor$/m);
    expect(await messages('GATES')).toBe(30);
  });
});

describe('database runbooks', () => {
  const alive = async (pid: number) => (await sql(pgs.url, 'SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).length === 1;

  async function connection(): Promise<{ client: pg.Client; pid: number }> {
    const client = new pg.Client({ connectionString: appUrl });
    client.on('error', () => undefined);
    await client.connect();
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    return { client, pid };
  }

  it('db-triage: terminating idle connections waits for approve-idle; a reject leaves them connected', async () => {
    const idle = await connection();
    try {
      await sleep(1500);
      await withWorker(loaded, async ({ client, taskQueue }) => {
        const { handle, pending } = await startAndWait(client, taskQueue, 'db-triage', { database: 'app', terminateIdleOlderThanMinutes: 0.01 }, 'approve-idle');
        expect(pending.destructive).toBe(true);
        expect(pending.summary).toContain(`${idle.pid} (`);
        expect(await alive(idle.pid)).toBe(true);
        expect((await rejectAndFail(handle, 'approve-idle')).text).toMatch(/no connection was terminated/);
      });
      expect(await alive(idle.pid)).toBe(true);
      expect((await idle.client.query('SELECT 1 AS one')).rows[0]).toEqual({ one: 1 });
    } finally {
      await idle.client.end().catch(() => undefined);
    }
  });

  it('db-triage: terminating given PIDs waits for approve-pids; a reject leaves the backend and its transaction alive', async () => {
    const holder = await connection();
    try {
      await holder.client.query('BEGIN');
      await holder.client.query('INSERT INTO policies VALUES (100001, $1)', ['in flight']);
      await withWorker(loaded, async ({ client, taskQueue }) => {
        const { handle, pending } = await startAndWait(client, taskQueue, 'db-triage', { database: 'app', terminatePids: [holder.pid] }, 'approve-pids');
        expect(pending.summary).toContain(`Terminate PID ${holder.pid}`);
        expect(await alive(holder.pid)).toBe(true);
        expect((await rejectAndFail(handle, 'approve-pids')).text).toMatch(/no backend was signalled/);
      });
      expect(await alive(holder.pid)).toBe(true);
      // The transaction was not rolled back by a termination: it still commits.
      await holder.client.query('COMMIT');
      expect(await sql(appUrl, 'SELECT name FROM policies WHERE id = 100001')).toEqual([{ name: 'in flight' }]);
    } finally {
      await sql(appUrl, 'DELETE FROM policies WHERE id = 100001');
      await holder.client.end().catch(() => undefined);
    }
  });

  it('db-vacuum full: VACUUM FULL waits for approve-full; a reject leaves the table unrewritten (same relfilenode, same rows)', async () => {
    await sql(appUrl, 'CREATE TABLE bloated (id int PRIMARY KEY, payload text)');
    await sql(appUrl, `INSERT INTO bloated SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g`);
    await sql(appUrl, 'DELETE FROM bloated WHERE id > 1000');
    const filenode = async () => (await sql<{ f: string }>(appUrl, `SELECT pg_relation_filenode('bloated')::text AS f`))[0]!.f;
    const before = { node: await filenode(), rows: await tableDigest(appUrl, 'bloated') };
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const { handle, pending } = await startAndWait(client, taskQueue, 'db-vacuum', { database: 'app', full: true, tables: ['bloated'] }, 'approve-full');
      expect(pending).toMatchObject({ destructive: true, confirmPhrase: 'VACUUM FULL' });
      expect(await filenode()).toBe(before.node);
      expect((await rejectAndFail(handle, 'approve-full')).text).toMatch(/no VACUUM FULL was run/);
    });
    expect(await filenode()).toBe(before.node);
    expect(await tableDigest(appUrl, 'bloated')).toBe(before.rows);
  });

  it('db-restore replace: replacing the database waits for approve-replace (REPLACE); a reject leaves the live database as it was', async () => {
    const databases = async () => (await sql<{ datname: string }>(pgs.url, 'SELECT datname FROM pg_database ORDER BY 1')).map((d) => d.datname);
    await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('db-backup', { taskQueue, workflowId: `db-backup-gate-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice' }] }),
    );
    // Changed after the backup: a replace would bring the deleted rows back.
    await sql(appUrl, 'DELETE FROM policies WHERE id > 400');
    const live = await tableDigest(appUrl, 'policies');
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const { handle, pending } = await startAndWait(client, taskQueue, 'db-restore', { database: 'app', replace: true }, 'approve-replace');
      expect(pending).toMatchObject({ destructive: true, confirmPhrase: 'REPLACE' });
      expect(await tableDigest(appUrl, 'policies')).toBe(live);
      expect((await rejectAndFail(handle, 'approve-replace')).text).toMatch(/app was not replaced; the restored copy is app__restore_/);
    });
    expect(await tableDigest(appUrl, 'policies')).toBe(live);
    expect((await sql<{ n: string }>(appUrl, 'SELECT count(*) AS n FROM policies'))[0]!.n).toBe('400');
    expect((await databases()).filter((d) => d.startsWith('app_replaced_'))).toEqual([]);
  });

  it('db-backup with a lower retention than the config: deleting backups the config keeps waits for approve-retention; a reject deletes none', async () => {
    const repo = path.join(dir, 'backups', 'app');
    const backups = async () => (existsSync(repo) ? (await readdir(repo)).sort() : []);
    await withWorker(loaded, async ({ client, taskQueue }) => {
      for (let i = 0; i < 2; i++) {
        await client.workflow.execute('db-backup', { taskQueue, workflowId: `db-backup-gate-${Date.now()}-${i}`, args: [{ database: 'app', requestedBy: 'alice' }] });
      }
      const before = await backups();
      expect(before.length).toBeGreaterThanOrEqual(2);
      const { handle, pending } = await startAndWait(client, taskQueue, 'db-backup', { database: 'app', retention: 1 }, 'approve-retention');
      expect(pending).toMatchObject({ destructive: true, confirmPhrase: 'DELETE' });
      expect(pending.summary).toContain(`Keep only 1 backup(s) of app instead of the configured 3: deletes ${before.length} backup(s) (`);
      const waiting = await backups();
      expect(waiting).toEqual(expect.arrayContaining(before));
      expect(waiting).toHaveLength(before.length + 1);
      expect((await rejectAndFail(handle, 'approve-retention')).text).toMatch(/was taken and verified; no backup was deleted/);
      expect(await backups()).toEqual(waiting);
    });
  });
});
