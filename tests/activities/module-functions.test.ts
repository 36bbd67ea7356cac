import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dumpDatabase, restoreInto, verifyBackup, verifyRestore, type BackupDeps } from '../../activities/database/backup.js';
import { bloatReport, vacuumTables } from '../../activities/database/maintenance.js';
import { migrateUp, migrationStatus, type MigratorContext } from '../../activities/database/migrations.js';
import type { ActivityDeps } from '../../activities/deps.js';
import { createLogger } from '../../lib/logger.js';
import { pgConfigService, sql } from '../database/helpers.js';
import { writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';

/**
 * The module functions the activity factories delegate to, called directly with their
 * dependencies (no worker, no workflow) against a PostgreSQL of this file's own.
 * Functions that heartbeat run inside MockActivityEnvironment, which records the heartbeats.
 */

const logger = createLogger({ test: 'module-functions' }, 'silent');
let server: PgServer;
let appUrl: string;
let repo: string;
let deps: ActivityDeps;

beforeAll(async () => {
  server = await startPostgres({ settings: { autovacuum: 'off' } });
  appUrl = await server.createDatabase('app');
  repo = await mkdtemp(path.join(tmpdir(), 'runbook-module-fns-'));
  const loaded = await writeConfig({
    environment: 'modfns',
    services: [pgConfigService(server.url)],
    databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
    databaseOps: { backups: { repository: repo, verifyTables: { app: ['policies'] } } },
  });
  deps = { config: loaded.config, configDir: loaded.dir, env: process.env, logger };
});

afterAll(async () => {
  await server?.stop();
  if (repo) await rm(repo, { recursive: true, force: true });
});

/** Runs `fn` as an activity would, collecting what it heartbeats. */
async function inActivity<T>(fn: () => Promise<T>): Promise<{ result: T; heartbeats: unknown[] }> {
  // ERROR: a failure the test expects is not logged as a warning.
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => heartbeats.push(d));
  const result = (await env.run(fn)) as T;
  return { result, heartbeats };
}

describe('backup module functions', () => {
  it('dumpDatabase writes a dump and a manifest that verifyBackup accepts; restoreInto brings the rows back in a new database', async () => {
    await sql(appUrl, 'CREATE TABLE policies (id int PRIMARY KEY, holder text NOT NULL)');
    await sql(appUrl, `INSERT INTO policies SELECT g, 'holder ' || g FROM generate_series(1, 250) g`);
    const d: BackupDeps = { ...deps, log: logger };

    const dump = await inActivity(() => dumpDatabase(d, { database: 'app', id: 'b1', format: 'custom', jobs: 1, workflowId: 'wf-1' }));
    const file = path.join(repo, 'app', 'b1', dump.result.file);
    expect(existsSync(file)).toBe(true);
    expect(existsSync(path.join(repo, 'app', 'b1', 'manifest.json'))).toBe(true);
    expect(dump.result.rowCounts).toEqual({ policies: 250 });
    expect(dump.result.sizeBytes).toBeGreaterThan(0);
    expect(dump.heartbeats).toContainEqual({ database: 'app', id: 'b1' });

    // A second call with the same id finds the manifest and dumps nothing.
    const again = await inActivity(() => dumpDatabase(d, { database: 'app', id: 'b1', format: 'custom', jobs: 1, workflowId: 'wf-1' }));
    expect(again.result).toEqual(dump.result);
    expect(again.heartbeats).toEqual([]);

    const verified = await inActivity(() => verifyBackup(d, { database: 'app', id: 'b1' }));
    expect(verified.result.checksum).toBe(true);
    expect(verified.result.tocEntries).toBeGreaterThan(0);

    const restored = await inActivity(() => restoreInto(d, { database: 'app', backupId: 'b1', target: 'app_restored', workflowId: 'wf-1', jobs: 1 }));
    expect(restored.result.already).toBe(false);
    const restoredUrl = appUrl.replace(/\/app$/, '/app_restored');
    expect(await sql(restoredUrl, 'SELECT holder FROM policies WHERE id = 250')).toEqual([{ holder: 'holder 250' }]);
    expect(await verifyRestore(d, { database: 'app', backupId: 'b1', target: 'app_restored' })).toEqual([{ table: 'policies', expected: 250, actual: 250 }]);
  });

  it('verifyBackup refuses a dump whose bytes changed since the manifest was written (BackupInvalid, not retried)', async () => {
    const d: BackupDeps = { ...deps, log: logger };
    const dump = await inActivity(() => dumpDatabase(d, { database: 'app', id: 'b2', format: 'custom', jobs: 1, workflowId: 'wf-2' }));
    await writeFile(path.join(repo, 'app', 'b2', dump.result.file), 'not a dump');
    await expect(inActivity(() => verifyBackup(d, { database: 'app', id: 'b2' }))).rejects.toMatchObject({
      type: 'BackupInvalid',
      nonRetryable: true,
      message: expect.stringMatching(/backup b2 of app is corrupt: sha256 \w+ differs from the manifest's/),
    });
  });
});

describe('maintenance module functions', () => {
  it('vacuumTables removes the dead tuples bloatReport counted, and skips a table that does not exist', async () => {
    await sql(appUrl, 'CREATE TABLE "Event Log" (id int PRIMARY KEY, payload text)');
    await sql(appUrl, `INSERT INTO "Event Log" SELECT g, repeat('x', 100) FROM generate_series(1, 3000) g`);
    // The same session flushes its statistics, so the dead tuples are counted right away.
    await sql(appUrl, 'DELETE FROM "Event Log" WHERE id > 1000; SELECT pg_stat_force_next_flush()');

    const before = (await bloatReport(deps, { database: 'app', tables: ['Event Log'] }))[0]!;
    expect(before).toMatchObject({ table: 'Event Log', liveTuples: 1000, deadTuples: 2000, lastVacuum: null });

    const run = await inActivity(() => vacuumTables(deps, { database: 'app', tables: ['Event Log', 'no_such_table'], mode: 'analyze' }));
    expect(run.result).toEqual(['Event Log']);
    expect(run.heartbeats[0]).toEqual({ mode: 'analyze', done: 0, total: 2 });

    const after = (await bloatReport(deps, { database: 'app', tables: ['Event Log'] }))[0]!;
    expect(after.deadTuples).toBe(0);
    expect(after.lastVacuum).not.toBeNull();
  });
});

describe('migration module functions', () => {
  it('migrateUp applies the pending files in version order and migrationStatus reports them applied', async () => {
    const url = await server.createDatabase('mig');
    const dir = await mkdtemp(path.join(tmpdir(), 'runbook-module-fns-mig-'));
    await writeFile(path.join(dir, '1_create_notes.up.sql'), 'CREATE TABLE notes (id int PRIMARY KEY, body text)');
    await writeFile(path.join(dir, '1_create_notes.down.sql'), 'DROP TABLE notes');
    await writeFile(path.join(dir, '2_seed_notes.up.sql'), `INSERT INTO notes VALUES (1, 'first')`);
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    const m: MigratorContext = { pool, dir, database: 'mig', logger, secrets: [] };
    try {
      expect((await migrationStatus(m)).pending.map((p) => p.version)).toEqual(['1', '2']);
      const progress: string[] = [];
      const res = await migrateUp(m, { onProgress: (x) => progress.push(x.version) });
      expect(res).toMatchObject({ database: 'mig', dryRun: false, pending: [] });
      expect(res.applied.map((a) => a.description)).toEqual(['create_notes', 'seed_notes']);
      expect(progress).toEqual(['1', '2']);
      expect(await sql(url, 'SELECT body FROM notes')).toEqual([{ body: 'first' }]);
      const status = await migrationStatus(m);
      expect(status.pending).toEqual([]);
      expect(status.applied.map((a) => a.version)).toEqual(['1', '2']);
    } finally {
      await pool.end();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
