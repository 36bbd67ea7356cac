import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import { msToTs } from '@temporalio/common/lib/time.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startDevServer } from '../../lib/temporal/dev-server.js';
import { findTemporalCli, TEMPORAL_CLI_VERSION } from '../../lib/temporal/install.js';
import { ensureSearchAttributes } from '../../lib/temporal/search-attributes.js';
import { pidAlive } from '../../lib/local/index.js';
import { closeTestClient, getTestClient, testTemporal, uniqueTaskQueue } from '../fixtures/temporal.js';

const KEYWORD = encodeSearchAttributeIndexedValueType('KEYWORD');
const BOOL = encodeSearchAttributeIndexedValueType('BOOL');
const DOUBLE = encodeSearchAttributeIndexedValueType('DOUBLE');

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'runbook-temporal-test-'));
});
afterAll(async () => {
  await closeTestClient();
  await rm(scratch, { recursive: true, force: true });
});

describe('the run-wide dev server (global setup)', () => {
  it('answers getSystemInfo and serves the Web UI', async () => {
    const client = await getTestClient();
    const info = await client.connection.workflowService.getSystemInfo({});
    expect(info.serverVersion).toMatch(/^1\.29\./);
    const ns = await client.connection.workflowService.describeNamespace({ namespace: testTemporal().namespace });
    expect(ns.namespaceInfo?.name).toBe(testTemporal().namespace);

    const res = await fetch(testTemporal().uiUrl);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/<html/i);
  });

  it('has the runbook search attributes registered with their types', async () => {
    const client = await getTestClient();
    const { customAttributes } = await client.connection.operatorService.listSearchAttributes({ namespace: testTemporal().namespace });
    expect(customAttributes?.RunbookProcedure).toBe(KEYWORD);
    expect(customAttributes?.AwaitingApproval).toBe(BOOL);
    expect(customAttributes?.RestoreDrillRtoSeconds).toBe(DOUBLE);
    expect(customAttributes?.RestoreDrillRpoSeconds).toBe(DOUBLE);
  });

  it('ensureSearchAttributes adds them to a namespace that lacks them, once', async () => {
    const { connection } = await getTestClient();
    const namespace = uniqueTaskQueue('ns');
    await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });

    expect(await ensureSearchAttributes(connection, namespace)).toEqual(['RunbookProcedure', 'AwaitingApproval', 'RestoreDrillRtoSeconds', 'RestoreDrillRpoSeconds']);
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
    expect(customAttributes?.RunbookProcedure).toBe(KEYWORD);
    expect(customAttributes?.AwaitingApproval).toBe(BOOL);
    expect(customAttributes?.RestoreDrillRtoSeconds).toBe(DOUBLE);
    expect(customAttributes?.RestoreDrillRpoSeconds).toBe(DOUBLE);
    expect(await ensureSearchAttributes(connection, namespace)).toEqual([]);
  });
});

describe('startDevServer', () => {
  it('keeps runs in <stateDir>/temporal.db across a restart, and stop() ends the process', async () => {
    const stateDir = path.join(scratch, 'state');
    const first = await startDevServer({ stateDir, port: 0, ui: false, namespace: 'runbooks-persist' });
    expect(first.pid).toBeDefined();
    expect(existsSync(path.join(stateDir, 'temporal.db'))).toBe(true);
    const workflowId = `persist-${Date.now()}`;
    {
      const connection = await Connection.connect({ address: first.address });
      const client = new Client({ connection, namespace: first.namespace });
      // No worker: the run simply waits for one, which is all persistence needs.
      await client.workflow.start('health-check', { taskQueue: uniqueTaskQueue('persist'), workflowId, args: [{}] });
      await connection.close();
    }
    await first.stop();
    expect(pidAlive(first.pid!)).toBe(false);

    const second = await startDevServer({ stateDir, port: 0, ui: false, namespace: 'runbooks-persist' });
    try {
      const connection = await Connection.connect({ address: second.address });
      const client = new Client({ connection, namespace: second.namespace });
      const described = await client.workflow.getHandle(workflowId).describe();
      expect(described.status.name).toBe('RUNNING');
      expect(described.type).toBe('health-check');
      const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: second.namespace });
      expect(customAttributes?.RunbookProcedure).toBe(KEYWORD);
      await client.workflow.getHandle(workflowId).terminate('test done');
      await connection.close();
    } finally {
      await second.stop();
    }
  });

  it('refuses a port that is already taken instead of talking to whoever holds it', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      await expect(startDevServer({ port, ui: false })).rejects.toThrow(new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
    } finally {
      blocker.close();
    }
  });

  it('without a CLI falls back to the SDK download, and says how to fix it when that fails too', async () => {
    vi.stubEnv('TEMPORAL_CLI_PATH', undefined);
    vi.stubEnv('PATH', path.join(scratch, 'no-bin'));
    vi.stubEnv('RUNBOOK_CACHE_DIR', path.join(scratch, 'no-cache'));
    try {
      const server = await startDevServer({ port: 0, ui: false, install: false }).catch((err: Error) => err);
      if (server instanceof Error) {
        // This machine cannot download (no internet): the message must lead somewhere.
        expect(server.message).toMatch(/no `temporal` CLI in TEMPORAL_CLI_PATH, on PATH or in .*no-cache/);
        expect(server.message).toMatch(/install Go 1\.25\+/);
        expect(server.message).toMatch(/set TEMPORAL_CLI_PATH=/);
      } else {
        // With internet the SDK's download gives a working server.
        const connection = await Connection.connect({ address: server.address });
        expect((await connection.workflowService.getSystemInfo({})).serverVersion).toBeTruthy();
        await connection.close();
        await server.stop();
      }
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('gives up after readyTimeoutMs with the server output in the error', async () => {
    await expect(startDevServer({ port: 0, ui: false, readyTimeoutMs: 1 })).rejects.toThrow(/was not ready after 1 ms[\s\S]*Server output:/);
  });
});

describe('findTemporalCli', () => {
  async function fakeCli(dir: string): Promise<string> {
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, 'temporal');
    await writeFile(file, '#!/bin/sh\necho fake\n');
    await chmod(file, 0o755);
    return file;
  }

  it('takes TEMPORAL_CLI_PATH first, then PATH, then the cache', async () => {
    const explicit = await fakeCli(path.join(scratch, 'explicit'));
    const onPath = await fakeCli(path.join(scratch, 'on-path'));
    const cacheRoot = path.join(scratch, 'cache');
    const cached = await fakeCli(path.join(cacheRoot, `temporal-${TEMPORAL_CLI_VERSION}`));
    const env = { TEMPORAL_CLI_PATH: explicit, PATH: path.dirname(onPath), RUNBOOK_CACHE_DIR: cacheRoot };

    expect(await findTemporalCli({ env, install: false })).toBe(explicit);
    expect(await findTemporalCli({ env: { ...env, TEMPORAL_CLI_PATH: undefined }, install: false })).toBe(onPath);
    expect(await findTemporalCli({ env: { RUNBOOK_CACHE_DIR: cacheRoot, PATH: '/nonexistent' }, install: false })).toBe(cached);
  });

  it('reports undefined when nothing is found and installing is off', async () => {
    const env = { PATH: path.join(scratch, 'nothing-here'), RUNBOOK_CACHE_DIR: path.join(scratch, 'empty-cache') };
    expect(await findTemporalCli({ env, install: false })).toBeUndefined();
  });

  it('refuses a TEMPORAL_CLI_PATH that is not an executable', async () => {
    const bogus = path.join(scratch, 'no-such-temporal');
    await expect(findTemporalCli({ env: { TEMPORAL_CLI_PATH: bogus, PATH: '' } })).rejects.toThrow(/TEMPORAL_CLI_PATH=.*no-such-temporal is not an executable/);
  });
});
