import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { WorkflowNotFoundError, type Client, type Connection } from '@temporalio/client';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { DbBackupResult, DbRestoreResult } from '../../common/database/types.js';
import type { StackStopResult } from '../../common/stack/types.js';
import { pendingApprovalQuery } from '../../common/messages.js';
import { parseConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { findTemporalServerTools, startTemporalCluster, type TemporalCluster } from '../../lib/temporal/cluster.js';
import { connectClient, temporalSettingsFromEnv } from '../../lib/temporal/connection.js';
import { activityRuns, approveDelete, startCleanStop, waitForPending } from '../fixtures/cluster.js';
import { uniqueQueue } from '../fixtures/runbook-worker.js';
import { freePort, startPostgres, type PgServer } from '../fixtures/servers.js';
import { killWorkers, spawnWorker } from '../fixtures/worker-process.js';
import { sql } from '../database/helpers.js';

/**
 * Break-glass: the cluster's PostgreSQL is lost. The cluster backed up its own databases with
 * db-backup; after the loss `runbook dev --no-demo --config prod.yaml` (an embedded server that
 * needs nothing of the broken cluster) restores them into a new PostgreSQL with db-restore and an
 * approval; the cluster starts again on the restored databases and what was in flight at the
 * backup point carries on. What happened after the backup point is lost, and the test says what.
 * In `npm test` and `npm run test:cluster` (two cluster starts and a dev server: about 30 s).
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'runbook.mjs');
const logger = createLogger({ component: 'break-glass' }, process.env.TEST_LOG_LEVEL ?? 'warn');

let scratch: string;
let prodPg: PgServer | undefined;
let newPg: PgServer | undefined;
let cluster: TemporalCluster | undefined;
let conn: { client: Client; connection: Connection } | undefined;

beforeAll(async () => {
  await findTemporalServerTools({ install: true, onProgress: (line) => process.stderr.write(`${line}\n`) });
  scratch = await mkdtemp(path.join(tmpdir(), 'runbook-break-glass-'));
}, 900_000);

afterAll(async () => {
  killWorkers();
  await conn?.connection.close().catch(() => undefined);
  await cluster?.stop();
  await prodPg?.stop();
  await newPg?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/**
 * prod.yaml as the operator keeps it: the cluster's two databases (on the PostgreSQL at `pgPort`)
 * with db-backup's repository, and a service whose destructive `clean` the in-flight runs wait to do.
 */
async function writeProdConfig(file: string, pgPort: number, repository: string, journal: string): Promise<void> {
  const url = (db: string) => `postgres://postgres@127.0.0.1:${pgPort}/${db}`;
  const config = {
    environment: 'production',
    services: [
      {
        name: 'store',
        group: 'apps',
        driver: {
          type: 'command',
          status: ['true'],
          stop: ['sh', '-c', `echo "stop $PPID" >> '${journal}'`],
          clean: ['sh', '-c', `echo "clean $PPID" >> '${journal}'`],
        },
      },
    ],
    stack: { groups: [{ name: 'apps', waitTimeoutSeconds: 30 }] },
    databases: [
      { name: 'temporal', url: url('temporal') },
      { name: 'temporal_visibility', url: url('temporal_visibility') },
    ],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: {
      backups: {
        repository,
        // The rows a restore must bring back: every run's mutable state, and the list of runs.
        verifyTables: { temporal: ['executions', 'current_executions'], temporal_visibility: ['executions_visibility'] },
      },
    },
  };
  const text = stringify(config);
  parseConfig(text, file);
  await writeFile(file, text);
}

const journalLines = async (file: string) => (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);

async function startCluster(dataDir: string, pg: PgServer): Promise<TemporalCluster> {
  return startTemporalCluster({
    dataDir,
    port: 0,
    postgresUrl: `postgres://postgres@127.0.0.1:${pg.port}`,
    logFile: path.resolve('tests/artifacts/break-glass-server.log'),
    logger,
  });
}

async function databasesOn(pg: PgServer): Promise<string[]> {
  const rows = await sql<{ datname: string }>(pg.url, "SELECT datname FROM pg_database WHERE datname LIKE 'temporal%' ORDER BY 1");
  return rows.map((r) => r.datname);
}

describe('break-glass: the cluster\'s PostgreSQL lost, restored from its backups by runbook dev', () => {
  it('runs in flight at the backup point continue on the restored cluster; what came after it is lost', async () => {
    const dataDir = path.join(scratch, 'cluster');
    const repository = path.join(scratch, 'backups');
    const journal = path.join(scratch, 'journal');
    const prodYaml = path.join(scratch, 'prod.yaml');
    const taskQueue = uniqueQueue('break-glass');

    // Production: the cluster on its PostgreSQL, a worker serving prod.yaml.
    prodPg = await startPostgres();
    cluster = await startCluster(dataDir, prodPg);
    const address = cluster.address;
    await writeProdConfig(prodYaml, prodPg.port, repository, journal);
    conn = await connectClient({ ...temporalSettingsFromEnv(), address, namespace: cluster.namespace });
    const worker1 = await spawnWorker(prodYaml, taskQueue, { temporal: { address, namespace: cluster.namespace } });
    const client = () => conn!.client;

    // Two runs wait for the approval of their destructive step.
    const inFlight = await startCleanStop(client(), taskQueue, 'break-glass-in-flight');
    const laterDone = await startCleanStop(client(), taskQueue, 'break-glass-later-done');

    // The cluster backs up its own databases with db-backup: visibility first, then temporal (see docs/deployment.md).
    const backupOf = async (database: string) =>
      (await client().workflow.execute('db-backup', {
        taskQueue,
        workflowId: `break-glass-backup-${database}-${Date.now()}`,
        args: [{ database, requestedBy: 'alice' }],
      })) as DbBackupResult;
    const visibilityBackup = await backupOf('temporal_visibility');
    const temporalBackupHandle = await client().workflow.start('db-backup', {
      taskQueue,
      workflowId: `break-glass-backup-temporal-${Date.now()}`,
      args: [{ database: 'temporal', requestedBy: 'alice' }],
    });
    const temporalBackup = (await temporalBackupHandle.result()) as DbBackupResult;
    expect(temporalBackup.backup.rowCounts.executions).toBeGreaterThanOrEqual(4);
    expect(visibilityBackup.backup.rowCounts.executions_visibility).toBeGreaterThanOrEqual(2);

    // After the backup point: one run is approved and finishes, another is started.
    await approveDelete(laterDone.handle);
    expect(((await laterDone.handle.result()) as StackStopResult).dataDeleted).toBe(true);
    const afterBackup = await startCleanStop(client(), taskQueue, 'break-glass-after-backup');
    expect(await journalLines(journal)).toEqual([`stop ${worker1.child.pid}`, `clean ${worker1.child.pid}`]);

    // The loss: the cluster stops, its PostgreSQL and every byte of its data are gone.
    worker1.child.kill('SIGTERM');
    expect(await worker1.exited).toBe(0);
    await conn.connection.close();
    conn = undefined;
    await cluster.stop();
    cluster = undefined;
    await prodPg.stop();
    prodPg = undefined;

    // A new, empty PostgreSQL; the operator points prod.yaml at it.
    newPg = await startPostgres();
    await writeProdConfig(prodYaml, newPg.port, repository, journal);
    expect(await databasesOn(newPg)).toEqual([]);

    // On a laptop: runbook dev with prod.yaml, its own state dir and ports, nothing of the cluster.
    const devPort = await freePort();
    const devAddress = `127.0.0.1:${devPort}`;
    const stateDir = path.join(scratch, 'laptop-state');
    await mkdir(stateDir, { recursive: true });
    let devErr = '';
    const dev: ResultPromise = execa(
      process.execPath,
      [BIN, 'dev', '--no-demo', '--config', prodYaml, '--state-dir', stateDir, '--port', String(devPort), '--ui-port', String(await freePort()), '--codec-port', '0', '--metrics', `127.0.0.1:${await freePort()}`],
      { cwd: scratch, reject: false, env: { ...process.env, RUNBOOK_CONFIG: '' } },
    );
    dev.stderr!.on('data', (d: Buffer) => (devErr += d.toString()));
    try {
      for (let i = 0; i < 240 && !devErr.includes('press Ctrl-C to stop'); i++) {
        if (dev.exitCode !== null) break;
        await sleep(250);
      }
      expect(devErr).toContain('press Ctrl-C to stop');
      expect(devErr).toContain(`Config:           ${prodYaml}`);
      expect(devErr).toContain(`export RUNBOOK_CONFIG=${prodYaml}`);
      expect(devErr).not.toContain('bringing up the demo environment');

      const cli = (...args: string[]) =>
        execa(process.execPath, [BIN, ...args], { cwd: scratch, reject: false, env: { ...process.env, TEMPORAL_ADDRESS: devAddress, RUNBOOK_CONFIG: prodYaml } });
      const devConn = await connectClient({ ...temporalSettingsFromEnv(), address: devAddress, namespace: 'default' });
      try {
        const started = await Promise.all(
          ['temporal', 'temporal_visibility'].map(async (database) => {
            const r = await cli('run', 'db-restore', '--input', JSON.stringify({ database, replace: true }), '--as', 'alice', '--json');
            expect(r.exitCode, r.stderr).toBe(0);
            return (JSON.parse(r.stdout) as { workflowId: string }).workflowId;
          }),
        );
        const handles = started.map((id) => devConn.client.workflow.getHandle(id));
        for (const h of handles) expect(await waitForPending(h)).toMatchObject({ step: 'approve-replace', confirmPhrase: 'REPLACE', destructive: true });
        // Restored and verified beside, under other names; the cluster's databases are not there before the approval.
        const before = await databasesOn(newPg);
        expect(before).not.toContain('temporal');
        expect(before).not.toContain('temporal_visibility');
        expect(before).toHaveLength(2);

        for (const id of started) {
          const r = await cli('approve', id, '--as', 'bob', '--confirm', 'REPLACE', '--comment', 'break-glass: the cluster database was lost');
          expect(r.exitCode, r.stderr).toBe(0);
        }
        const results = (await Promise.all(handles.map((h) => h.result()))) as DbRestoreResult[];
        expect(results.map((r) => [r.target, r.replaced, r.backupId])).toEqual([
          ['temporal', true, temporalBackup.backup.id],
          ['temporal_visibility', true, visibilityBackup.backup.id],
        ]);
        for (const r of results) {
          for (const c of r.counts) expect(c.actual).toBe(c.expected);
          // Nothing was there to keep: the swap says so instead of naming a kept copy.
          expect(r.keptAs).toBeNull();
          expect(r.progress.steps.find((s) => s.id === 'swap')?.detail).toBe(`there was no database ${r.target} to replace`);
        }
        expect(await databasesOn(newPg)).toEqual(['temporal', 'temporal_visibility']);
      } finally {
        await devConn.connection.close();
      }
    } finally {
      dev.kill('SIGINT');
      await dev;
    }
    expect(devErr).toMatch(/stopped\n/);

    // The cluster starts again on the restored databases: same data dir and address, no schema created.
    cluster = await startCluster(dataDir, newPg);
    expect(cluster.address).toBe(address);
    expect(cluster.schema.map((s) => s.before === s.after && s.before !== undefined)).toEqual([true, true]);
    conn = await connectClient({ ...temporalSettingsFromEnv(), address, namespace: cluster.namespace });
    const worker2 = await spawnWorker(prodYaml, taskQueue, { temporal: { address, namespace: cluster.namespace } });

    // In flight at the backup point: still waiting for its approval, and it finishes after it.
    const waiting = client().workflow.getHandle(inFlight.handle.workflowId);
    expect((await waiting.describe()).status.name).toBe('RUNNING');
    expect(await waitForPending(waiting)).toMatchObject({ step: 'approve-delete' });
    expect(await journalLines(journal)).toHaveLength(2);
    await approveDelete(waiting);
    expect(((await waiting.result()) as StackStopResult).dataDeleted).toBe(true);
    expect((await journalLines(journal)).slice(2)).toEqual([`stop ${worker2.child.pid}`, `clean ${worker2.child.pid}`]);

    // The db-backup of temporal was dumping at the backup point: restored mid-activity, its dump is retried and it finishes.
    const restoredBackup = client().workflow.getHandle(temporalBackupHandle.workflowId);
    const backupAgain = (await restoredBackup.result()) as DbBackupResult;
    expect(backupAgain.ok).toBe(true);
    expect(backupAgain.backup.id).toBe(temporalBackup.backup.id);
    const dumps = await activityRuns(restoredBackup, 'dumpDatabase');
    expect(dumps.scheduled).toBe(1);
    expect(dumps.attempts[0]).toBeGreaterThan(1);
    expect(dumps.identities[0]).toContain(String(worker2.child.pid));

    // Lost: the run started after the backup point does not exist any more.
    await expect(client().workflow.getHandle(afterBackup.handle.workflowId).describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
    // Lost: the run that finished after it is back at its approval, though its clean ran (the journal has it).
    const rewound = client().workflow.getHandle(laterDone.handle.workflowId);
    expect((await rewound.describe()).status.name).toBe('RUNNING');
    expect(await rewound.query(pendingApprovalQuery)).toMatchObject({ step: 'approve-delete' });
    await rewound.terminate('finished before the loss: its clean already ran');

    // What `runbook list` shows on the restored cluster: the restored runs, not the lost one.
    const list = await execa(process.execPath, [BIN, 'list', '--procedure', 'stack-stop', '--json'], {
      cwd: scratch,
      reject: false,
      env: { ...process.env, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: cluster.namespace, RUNBOOK_CONFIG: prodYaml },
    });
    expect(list.exitCode, list.stderr).toBe(0);
    const ids = (JSON.parse(list.stdout) as Array<{ workflowId: string }>).map((r) => r.workflowId);
    expect(ids).toContain(inFlight.handle.workflowId);
    expect(ids).toContain(laterDone.handle.workflowId);
    expect(ids).not.toContain(afterBackup.handle.workflowId);

    worker2.child.kill('SIGTERM');
    expect(await worker2.exited).toBe(0);
  }, 300_000);
});
