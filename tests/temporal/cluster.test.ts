import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { execa } from 'execa';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { StackStopResult } from '../../common/stack/types.js';
import { SEARCH_ATTRIBUTES } from '../../common/search-attributes.js';
import { postgresRunning, postgresServerBinDir, stopPostgresServer } from '../../lib/local/postgres.js';
import { composeDynamicConfigFile, findTemporalServerTools, parsePostgresUrl, setupClusterSchema, TEMPORAL_SERVER_VERSION } from '../../lib/temporal/cluster.js';
import {
  activityRuns,
  approveDelete,
  destructiveStack,
  startCleanStop,
  startTestCluster,
  waitForJournal,
  waitForPending,
  type DestructiveStack,
  type TestCluster,
} from '../fixtures/cluster.js';
import { uniqueQueue } from '../fixtures/runbook-worker.js';
import { killWorkers, spawnWorker, type WorkerProcess } from '../fixtures/worker-process.js';

/**
 * `runbook temporal cluster` as production runs Temporal: temporal-server 1.29.1 on PostgreSQL,
 * one `runbook worker` process; the server crashes (SIGKILL) while a destructive run waits for
 * its approval and while the destructive step runs. The longer platform failures (PostgreSQL
 * restarted, a worker killed) are in cluster-failures.test.ts (`npm run test:cluster`).
 */
let c: TestCluster;
let stack: DestructiveStack;
let worker: WorkerProcess;
const taskQueue = uniqueQueue('cluster');

beforeAll(async () => {
  [c, stack] = await Promise.all([startTestCluster('cluster-test', { mtls: true }), destructiveStack()]);
  worker = await spawnWorker(stack.loaded.path, taskQueue, {
    temporal: { address: c.cluster.address, namespace: c.cluster.namespace },
    env: { ...process.env, ...c.tlsEnv },
  });
}, 600_000);

afterAll(async () => {
  killWorkers();
  await c?.stop();
});

describe('the cluster', () => {
  it('has the schema of its release, and setting it up again changes nothing', async () => {
    const tools = (await findTemporalServerTools())!;
    const latest = async (schema: string) => {
      const { readdir } = await import('node:fs/promises');
      const versions = (await readdir(path.join(tools.schemaDir, schema, 'versioned'))).map((v) => v.slice(1));
      return versions.sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1])).at(-1);
    };
    expect(c.cluster.schema.map((s) => [s.database, s.after])).toEqual([
      ['temporal', await latest('temporal')],
      ['temporal_visibility', await latest('visibility')],
    ]);
    const port = c.cluster.localPostgres!.port;
    const target = { host: '127.0.0.1', port, user: 'postgres', password: '' };
    const tables = async () => {
      const db = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'temporal' });
      await db.connect();
      const r = await db.query<{ n: string }>("SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'");
      await db.end();
      return Number(r.rows[0]!.n);
    };
    const before = await tables();
    const again = await setupClusterSchema(tools, target);
    expect(again.every((s) => s.before === s.after)).toBe(true);
    expect(await tables()).toBe(before);
  });

  it('runs temporal-server with the compose file’s dynamic config, and the namespace has the runbook search attributes', async () => {
    const config = parse(await readFile(path.join(c.dataDir, 'config', 'runbook.yaml'), 'utf8')) as { dynamicConfigClient: { filepath: string } };
    expect(config.dynamicConfigClient.filepath).toBe(composeDynamicConfigFile());
    const info = await c.connection.workflowService.getSystemInfo({});
    expect(info.serverVersion).toBe(TEMPORAL_SERVER_VERSION.slice(1));
    const { customAttributes } = await c.connection.operatorService.listSearchAttributes({ namespace: c.cluster.namespace });
    expect(Object.keys(customAttributes ?? {})).toEqual(expect.arrayContaining(SEARCH_ATTRIBUTES.map((a) => a.name)));
  });
});

describe('the runbook temporal cluster command', () => {
  it('prints the address on stdout, stops server and PostgreSQL on SIGTERM; run again on the same data dir it finds the schema up to date', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'runbook-cluster-cli-'));
    const run = async () => {
      const child = execa(process.execPath, ['bin/runbook.mjs', 'temporal', 'cluster', '--data-dir', dataDir, '--port', '0', '--namespace', 'ops'], {
        reject: false,
        env: { TEMPORAL_NAMESPACE: undefined },
      });
      let stdout = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      for (let i = 0; i < 600 && !stdout.includes('\n') && child.exitCode === null; i++) await sleep(100);
      const address = stdout.trim();
      if (!address) {
        child.kill('SIGTERM');
        throw new Error(`no address on stdout; stderr:\n${(await child).stderr}`);
      }
      expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
      const conn = await Connection.connect({ address });
      const ns = await conn.workflowService.describeNamespace({ namespace: 'ops' });
      await conn.close();
      child.kill('SIGTERM');
      const r = await child;
      return { address, r, retentionDays: Number(ns.config?.workflowExecutionRetentionTtl?.seconds) / 86400 };
    };
    try {
      const first = await run();
      expect(first.r.exitCode).toBe(0);
      expect(first.retentionDays).toBe(30);
      expect(first.r.stderr).toMatch(/schema of temporal: created at version/);
      expect(first.r.stderr).toMatch(/SIGTERM: stopping temporal-server and its PostgreSQL/);
      expect(await postgresRunning({ binDir: postgresServerBinDir(), dataDir: path.join(dataDir, 'postgres', 'data') })).toBe(false);

      const second = await run();
      expect(second.r.exitCode).toBe(0);
      expect(second.address).toBe(first.address);
      expect(second.r.stderr).toMatch(/schema of temporal: version [\d.]+, up to date/);
      expect(second.r.stderr).toMatch(/schema of temporal_visibility: version [\d.]+, up to date/);
    } finally {
      const pgData = { binDir: postgresServerBinDir(), dataDir: path.join(dataDir, 'postgres', 'data') };
      if (await postgresRunning(pgData)) await stopPostgresServer(pgData, 'immediate');
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('--postgres-url', () => {
  it('takes postgres://USER:PASSWORD@HOST:PORT; a database path or another scheme is refused naming the option, the password never shown', () => {
    expect(parsePostgresUrl('postgres://temporal:s%40cret@db.internal:5433')).toEqual({ host: 'db.internal', port: 5433, user: 'temporal', password: 's@cret' });
    expect(parsePostgresUrl('postgresql://pg@[::1]')).toEqual({ host: '::1', port: 5432, user: 'pg', password: '' });
    expect(() => parsePostgresUrl('postgres://u:hunter2@h:5432/app')).toThrow(/--postgres-url names database app: leave the path out/);
    expect(() => parsePostgresUrl('mysql://u@h')).toThrow(/--postgres-url must start with postgres:\/\//);
    const bad = (() => {
      try {
        parsePostgresUrl('postgres://u:hunter2@h:notaport');
      } catch (err) {
        return (err as Error).message;
      }
    })();
    expect(bad).toMatch(/--postgres-url "postgres:\/\/u:\*\*\*@h:notaport" is not a URL/);
    expect(bad).not.toContain('hunter2');
  });
});

describe('mTLS (runbook temporal cluster --mtls)', () => {
  it('refuses a client without a certificate of its CA; the CLI with TEMPORAL_TLS_* gets in (the worker too: it runs every run here)', async () => {
    const { address, namespace } = c.cluster;
    // Without TLS, and with TLS but no client certificate: the server ends the handshake.
    const [plain, caOnly] = await Promise.all([
      Connection.connect({ address, connectTimeout: 2000 }).catch((err: Error) => err),
      Connection.connect({
        address,
        connectTimeout: 2000,
        tls: { serverRootCACertificate: await readFile(c.tlsEnv.TEMPORAL_TLS_CA!), serverNameOverride: 'localhost' },
      }).catch((err: Error) => err),
    ]);
    expect(plain).toBeInstanceOf(Error);
    expect(caOnly).toBeInstanceOf(Error);

    const cli = (env: Record<string, string>) =>
      execa(process.execPath, ['bin/runbook.mjs', 'list', '--limit', '1'], { reject: false, env: { TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: namespace, ...env } });
    const allowed = await cli(c.tlsEnv);
    expect(allowed.stderr).toBe('');
    expect(allowed.exitCode).toBe(0);
  });
});

describe('docker-compose.temporal.yml', () => {
  it('pins the server release the cluster runs, and mounts the same dynamic config file', async () => {
    const root = path.resolve(import.meta.dirname, '../..');
    const compose = parse(await readFile(path.join(root, 'docker-compose.temporal.yml'), 'utf8')) as {
      services: Record<string, { image?: string; volumes?: string[] }>;
    };
    const version = TEMPORAL_SERVER_VERSION.slice(1);
    expect(compose.services.temporal!.image).toBe(`temporalio/server:${version}`);
    for (const job of ['temporal-schema', 'temporal-setup']) expect(compose.services[job]!.image).toMatch(new RegExp(`^temporalio/admin-tools:${version.replace(/\./g, '\\.')}\\b`));
    const mounted = (compose.services.temporal!.volumes ?? []).map((v) => path.resolve(root, v.split(':')[0]!));
    expect(mounted).toContain(composeDynamicConfigFile());
  });
});

describe('a destructive run while temporal-server crashes', () => {
  it('server SIGKILLed while the run waits for approval: nothing ran; after the restart the approval finishes it, the clean ran once', async () => {
    await stack.reset(0);
    const { handle, pending } = await startCleanStop(c.client, taskQueue, 'cluster-approval-kill');
    expect(pending.step).toBe('approve-delete');
    expect(await stack.journal()).toEqual([]);

    const pid = c.cluster.pid();
    await c.cluster.killServer('SIGKILL');
    expect(c.cluster.pid()).toBeUndefined();
    await c.cluster.startServer();
    expect(c.cluster.pid()).not.toBe(pid);

    // Still waiting after the crash, and still nothing done.
    expect((await waitForPending(handle)).step).toBe('approve-delete');
    expect(await stack.journal()).toEqual([]);
    await approveDelete(handle);
    const result = (await handle.result()) as StackStopResult;
    expect(result.dataDeleted).toBe(true);
    expect((await stack.journal()).map((l) => l.split(' ')[0])).toEqual(['stop', 'clean-start', 'clean-done']);
    expect(worker.child.exitCode).toBeNull();
  }, 90_000);

  it('server SIGKILLed while the clean runs: the worker finishes it after the restart, exactly once', async () => {
    await stack.reset(5);
    const { handle } = await startCleanStop(c.client, taskQueue, 'cluster-activity-kill');
    await approveDelete(handle);
    await waitForJournal(stack, 'clean-start');
    await c.cluster.killServer('SIGKILL');
    await c.cluster.startServer();

    const result = (await handle.result()) as StackStopResult;
    expect(result.dataDeleted).toBe(true);
    expect((await stack.journal()).map((l) => l.split(' ')[0])).toEqual(['stop', 'clean-start', 'clean-done']);
    const runs = await activityRuns(handle, 'cleanServices');
    expect(runs.scheduled).toBe(1);
    expect(runs.attempts).toEqual([1]);
    expect(worker.child.exitCode).toBeNull();
  }, 90_000);
});
