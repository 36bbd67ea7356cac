import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackupManifest, DbBackupResult, DbRestoreResult } from '../../common/database/types.js';
import { approveUpdate } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { failureText, pgConfigService, sql, tableDigest, waitForPending } from './helpers.js';

let pgs: PgServer;
let appUrl: string;
let repo: string;
let loaded: LoadedConfig;

beforeAll(async () => {
  pgs = await startPostgres({ settings: { autovacuum: 'off' } });
  appUrl = await pgs.createDatabase('app');
  await sql(appUrl, `CREATE TABLE policies (id int PRIMARY KEY, name text NOT NULL, rules jsonb)`);
  await sql(appUrl, `INSERT INTO policies SELECT g, 'policy-' || g, jsonb_build_object('max', g * 3) FROM generate_series(1, 2000) g`);
  await sql(appUrl, `CREATE TABLE "Audit Log" (at timestamptz DEFAULT now(), what text)`);
  await sql(appUrl, `INSERT INTO "Audit Log"(what) SELECT 'event ' || g FROM generate_series(1, 300) g`);
  repo = await mkdtemp(path.join(tmpdir(), 'runbook-backups-'));
  loaded = await writeConfig({
    environment: 'dbtest',
    services: [pgConfigService(pgs.url)],
    databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: { backups: { repository: repo, retention: 1, verifyTables: { app: ['policies', 'missing_table'] } } },
  });
});

afterAll(async () => {
  await pgs?.stop();
  await rm(repo, { recursive: true, force: true });
});

const sha256 = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

async function backup(input: Record<string, unknown>, record?: string): Promise<DbBackupResult> {
  return withWorker(loaded, async ({ client, taskQueue }) => {
    const workflowId = `db-backup-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;
    const r = (await client.workflow.execute('db-backup', { taskQueue, workflowId, args: [{ database: 'app', requestedBy: 'alice', ...input }] })) as DbBackupResult;
    if (record) await recordHistory(client, workflowId, record);
    return r;
  });
}

describe('db-backup and db-restore round trip', () => {
  let first: BackupManifest;

  it('db-backup writes a custom-format dump with a manifest whose checksum matches the file', async () => {
    const r = await backup({}, 'db-backup');
    first = r.backup;
    const dir = path.join(repo, 'app', first.id);
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as BackupManifest & { verifiedAt?: string };
    expect(manifest).toMatchObject({ database: 'app', format: 'custom', file: 'dump.pgcustom', sha256: first.sha256 });
    expect(manifest.verifiedAt).toBeTruthy();
    // Independently of the runbook: the checksum is the file's, and pg_restore can read it.
    expect(await sha256(path.join(dir, manifest.file))).toBe(manifest.sha256);
    const list = await execa(path.join(pgs.binDir, 'pg_restore'), ['--list', path.join(dir, manifest.file)]);
    expect(list.stdout).toMatch(/TABLE DATA public policies/);
    expect(manifest.serverVersion).toMatch(/^15\./);
    expect(manifest.walLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(manifest.rowCounts).toEqual({ policies: 2000 });
    expect(manifest.sizeBytes).toBeGreaterThan(1000);
    expect(r.verified).toEqual({ checksum: true, tocEntries: expect.any(Number) });
    expect(r.progress.steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
  });

  it('retention keeps the newest N (1 here); directory format with 2 jobs works', async () => {
    const second = await backup({ format: 'directory', jobs: 2 });
    expect(second.backup.format).toBe('directory');
    expect(existsSync(path.join(repo, 'app', second.backup.id, 'dump.d', 'toc.dat'))).toBe(true);
    expect(second.deleted).toEqual([first.id]);
    expect(await readdir(path.join(repo, 'app'))).toEqual([second.backup.id]);
  });

  it('db-restore restores the newest backup into a new database with the same rows', async () => {
    const r = await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `db-restore-${Date.now()}`;
      const res = (await client.workflow.execute('db-restore', { taskQueue, workflowId, args: [{ database: 'app', requestedBy: 'alice' }] })) as DbRestoreResult;
      await recordHistory(client, workflowId, 'db-restore');
      return res;
    });
    expect(r.target).toMatch(/^app_restored_\d{8}t\d{6}z$/);
    expect(r.replaced).toBe(false);
    expect(r.counts).toEqual([{ table: 'policies', expected: 2000, actual: 2000 }]);
    const restoredUrl = appUrl.replace(/\/app$/, `/${r.target}`);
    expect(await tableDigest(restoredUrl, 'policies')).toBe(await tableDigest(appUrl, 'policies'));
    expect(await tableDigest(restoredUrl, '"Audit Log"')).toBe(await tableDigest(appUrl, '"Audit Log"'));
  });

  it('db-restore refuses an existing target and a corrupt backup, touching nothing', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const exists = await client.workflow
        .execute('db-restore', { taskQueue, workflowId: `db-restore-exists-${Date.now()}`, args: [{ database: 'app', target: 'app', requestedBy: 'alice' }] })
        .catch((e: unknown) => e);
      expect(failureText(exists)).toMatch(/target: database "app" already exists/);

      const newest = (await readdir(path.join(repo, 'app'))).sort().at(-1)!;
      const m = JSON.parse(await readFile(path.join(repo, 'app', newest, 'manifest.json'), 'utf8')) as BackupManifest;
      const file = m.format === 'directory' ? path.join(repo, 'app', newest, m.file, 'toc.dat') : path.join(repo, 'app', newest, m.file);
      const good = await readFile(file);
      await writeFile(file, Buffer.concat([good.subarray(0, good.length - 10), Buffer.from('corrupted!')]));
      const corrupt = await client.workflow
        .execute('db-restore', { taskQueue, workflowId: `db-restore-corrupt-${Date.now()}`, args: [{ database: 'app', backupId: newest, requestedBy: 'alice' }] })
        .catch((e: unknown) => e);
      expect(failureText(corrupt)).toMatch(/is corrupt: sha256 .* differs from the manifest's/);
      await writeFile(file, good);
    });
  });

  it('db-restore with replace: approval confirmed with REPLACE, the old database is kept renamed', async () => {
    const original = await tableDigest(appUrl, 'policies');
    await sql(appUrl, 'DELETE FROM policies WHERE id > 100');
    const r = await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('db-restore', {
        taskQueue,
        workflowId: `db-restore-replace-${Date.now()}`,
        args: [{ database: 'app', replace: true, requestedBy: 'alice' }],
      });
      const pending = await waitForPending(handle);
      expect(pending).toMatchObject({ step: 'approve-replace', confirmPhrase: 'REPLACE', destructive: true });
      expect(pending.summary).toMatch(/Replace database app with backup/);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'REPLACE', comment: 'bad delete', step: 'approve-replace' }] });
      const res = (await handle.result()) as DbRestoreResult;
      await recordHistory(client, handle.workflowId, 'db-restore-replace');
      return res;
    });
    expect(r).toMatchObject({ ok: true, replaced: true, target: 'app' });
    expect(r.keptAs).toMatch(/^app_replaced_/);
    expect(await tableDigest(appUrl, 'policies')).toBe(original);
    const kept = await sql<{ n: string }>(appUrl.replace(/\/app$/, `/${r.keptAs}`), 'SELECT count(*) AS n FROM policies');
    expect(Number(kept[0]!.n)).toBe(100);
  });
});
