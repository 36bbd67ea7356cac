import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { devServerArgs, startDevServer, type DevServerLaunch } from '../../lib/temporal/dev-server.js';
import { SERVER_DYNAMIC_CONFIG } from '../../lib/temporal/server-settings.js';
import { quietBundlerLogger } from '../fixtures/runbook-worker.js';
import { uniqueTaskQueue } from '../fixtures/temporal.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Every value of a repeatable flag, in order. */
function flagValues(argv: readonly string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag && i + 1 < argv.length ? [argv[i + 1]!] : []));
}

const launch: DevServerLaunch = { ip: '127.0.0.1', port: 7233, ui: false, namespace: 'default', logLevel: 'warn' };

describe('the dev server command line', () => {
  it('raises the transfer-queue poll limit and turns eager activities on, in memory or on file', () => {
    for (const r of [launch, { ...launch, dbFile: '/state/temporal.db' }]) {
      expect(flagValues(devServerArgs(r), '--dynamic-config-value')).toEqual(
        expect.arrayContaining(['history.transferProcessorMaxPollRPS=1000', 'system.enableActivityEagerExecution=true']),
      );
    }
  });

  it('gives a file-backed server WAL and synchronous=normal, and an in-memory one no pragma', () => {
    const onFile = devServerArgs({ ...launch, dbFile: '/state/temporal.db' });
    expect(flagValues(onFile, '--db-filename')).toEqual(['/state/temporal.db']);
    expect(flagValues(onFile, '--sqlite-pragma')).toEqual(['journal_mode=wal', 'synchronous=normal']);
    expect(flagValues(devServerArgs(launch), '--sqlite-pragma')).toEqual([]);
  });
});

describe('the production compose file', () => {
  const compose = parse(readFileSync(path.join(ROOT, 'docker-compose.temporal.yml'), 'utf8')) as {
    services: Record<string, { environment?: Record<string, string>; volumes?: string[] }>;
  };
  const temporal = compose.services.temporal!;

  it('mounts the dynamic config file the server is told to read', () => {
    const target = temporal.environment?.DYNAMIC_CONFIG_FILE_PATH;
    expect(target).toMatch(/^\//);
    const mount = (temporal.volumes ?? []).map((v) => v.split(':')).find(([, to]) => to === target);
    expect(mount, `a volume mounted at ${target}`).toBeDefined();
    expect(mount![2]).toBe('ro');
    expect(existsSync(path.join(ROOT, mount![0]!))).toBe(true);
  });

  it('sets the same performance values as the dev server', () => {
    const mount = (temporal.volumes ?? []).map((v) => v.split(':')).find(([, to]) => to === temporal.environment?.DYNAMIC_CONFIG_FILE_PATH)!;
    const file = parse(readFileSync(path.join(ROOT, mount[0]!), 'utf8')) as Record<string, Array<{ value: unknown; constraints?: object }>>;
    for (const [key, value] of Object.entries(SERVER_DYNAMIC_CONFIG)) {
      // One unconstrained value: it applies to every namespace and task queue.
      expect(file[key], key).toEqual([{ value, constraints: {} }]);
    }
  });
});

describe('a file-backed dev server started by startDevServer', () => {
  let scratch: string;
  beforeAll(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'runbook-server-settings-'));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('runs its database in WAL mode and hands activities to the worker eagerly', async () => {
    const stateDir = path.join(scratch, 'state');
    const logFile = path.join(scratch, 'server.log');
    const server = await startDevServer({ stateDir, port: 0, metricsPort: 0, ui: false, logFile });
    try {
      const dbFile = path.join(stateDir, 'temporal.db');
      // SQLite's header: bytes 18 and 19 are the write and read format versions, 2 = WAL.
      const header = Buffer.alloc(20);
      const fh = await open(dbFile, 'r');
      await fh.read(header, 0, 20, 0);
      await fh.close();
      expect([header[18], header[19]]).toEqual([2, 2]);
      expect(existsSync(`${dbFile}-wal`)).toBe(true);

      const connection = await Connection.connect({ address: server.address });
      const native = await NativeConnection.connect({ address: server.address });
      const taskQueue = uniqueTaskQueue('settings');
      try {
        const worker = await Worker.create({
          connection: native,
          namespace: server.namespace,
          taskQueue,
          workflowBundle: await bundleWorkflowCode({ workflowsPath: path.join(ROOT, 'bench/workflows.ts'), logger: quietBundlerLogger }),
          activities: { step: async (i: number) => i },
        });
        const client = new Client({ connection, namespace: server.namespace });
        const sum = await worker.runUntil(
          client.workflow.execute('sequentialSteps', { taskQueue, workflowId: `settings-${Date.now()}`, args: [5] }),
        );
        expect(sum).toBe(0 + 1 + 2 + 3 + 4);
      } finally {
        await native.close();
        await connection.close();
      }

      // The server counts each activity it hands out in a workflow task's reply. Its metrics
      // reporter publishes on an interval, so a busy machine may need a few scrapes.
      let eager = 0;
      for (let i = 0; i < 20 && eager < 1; i++) {
        if (i > 0) await sleep(500);
        const metrics = await (await fetch(server.metricsUrl!)).text();
        eager = metrics
          .split('\n')
          .filter((line) => line.startsWith('activity_eager_execution{') && line.includes(`namespace="${server.namespace}"`))
          .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
      }
      expect(eager).toBeGreaterThanOrEqual(1);
    } finally {
      await server.stop();
    }
    // A value of the wrong type would be dropped with this warning; none of ours is.
    expect(await readFile(logFile, 'utf8')).not.toMatch(/Failed to convert value/);
  }, 120_000);
});
