import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigrator } from '../../activities/database/migrations.js';
import type { DbMigrateResult } from '../../common/database/types.js';
import { approveUpdate, progressQuery, rejectUpdate } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { failureText, pgConfigService, sql, waitForPending } from './helpers.js';

/** db-migrate (Fulcrum 4.1) against a real PostgreSQL: one cluster and one worker for the file. */

let pgs: PgServer;
let appUrl: string;
let tmp: string;
let loaded: LoadedConfig;
let client: Client;
let taskQueue: string;
let stopWorker: () => void;
let workerDone: Promise<void>;

const MIGRATIONS: Record<string, string> = {
  '001_create_policies.up.sql': 'CREATE TABLE policies (id serial PRIMARY KEY, name text NOT NULL);',
  '001_create_policies.down.sql': 'DROP TABLE policies;',
  '002_add_tenant.up.sql': 'ALTER TABLE policies ADD COLUMN tenant text;',
  '002_add_tenant.down.sql': 'ALTER TABLE policies DROP COLUMN tenant;',
  '003_add_flags.up.sql': 'CREATE TABLE feature_flags (name text PRIMARY KEY, enabled boolean NOT NULL DEFAULT false);',
  '003_add_flags.down.sql': 'DROP TABLE feature_flags;',
};

const versions = async () => (await sql<{ version: string }>(appUrl, 'SELECT version FROM schema_migrations ORDER BY version')).map((r) => r.version);
/** What a user compares to see that nothing changed: every column of the public schema, and schema_migrations row for row. */
const schema = async () =>
  JSON.stringify([
    await sql(appUrl, `SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2`),
    await sql(appUrl, 'SELECT version, description, applied_at FROM schema_migrations ORDER BY version'),
  ]);
const backups = async () => (existsSync(path.join(tmp, 'backups', 'app')) ? readdir(path.join(tmp, 'backups', 'app')) : []);

function run(input: Record<string, unknown>, id: string) {
  return client.workflow.start('db-migrate', { taskQueue, workflowId: `db-migrate-${id}-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice', ...input }] });
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'runbook-migrate-'));
  pgs = await startPostgres({ settings: { autovacuum: 'off' } });
  appUrl = await pgs.createDatabase('app');
  const dir = path.join(tmp, 'migrations');
  await mkdir(dir);
  for (const [f, text] of Object.entries(MIGRATIONS)) await writeFile(path.join(dir, f), text);
  const m = createMigrator({ url: appUrl, dir, database: 'app', logger: createLogger({ component: 'test' }, 'warn') });
  await m.up({ to: '001' }).finally(() => m.close());
  await sql(appUrl, `INSERT INTO policies(name) VALUES ('p1'), ('p2')`);
  loaded = await writeConfig({
    environment: 'migtest',
    services: [pgConfigService(pgs.url)],
    databases: [{ name: 'app', url: appUrl, service: 'postgres', migrationsDir: dir }],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: { backups: { repository: path.join(tmp, 'backups'), verifyTables: { app: ['policies'] } } },
  });
  let ready!: (c: { client: Client; taskQueue: string }) => void;
  const started = new Promise<{ client: Client; taskQueue: string }>((resolve) => (ready = resolve));
  const hold = new Promise<void>((resolve) => (stopWorker = resolve));
  workerDone = withWorker(loaded, async (ctx) => {
    ready(ctx);
    await hold;
  });
  ({ client, taskQueue } = await started);
});

afterAll(async () => {
  stopWorker?.();
  await workerDone;
  await pgs?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe('db-migrate (Fulcrum 4.1)', () => {
  it('plan (the default) lists the pending migrations with their SQL and changes nothing', async () => {
    const before = await schema();
    const r = (await (await run({}, 'plan')).result()) as DbMigrateResult;
    expect(r).toMatchObject({ ok: true, mode: 'plan', appliedNow: [], after: null, backupId: null });
    expect(r.applied.map((a) => a.version)).toEqual(['001']);
    expect(r.selected).toEqual([
      { version: '002', description: 'add_tenant' },
      { version: '003', description: 'add_flags' },
    ]);
    expect(r.upSql).toEqual({ '002': MIGRATIONS['002_add_tenant.up.sql'], '003': MIGRATIONS['003_add_flags.up.sql'] });
    // Up to a named migration: only what comes before it, and it.
    const to = (await (await run({ mode: 'plan', to: '002_add_tenant' }, 'plan-to')).result()) as DbMigrateResult;
    expect(to.selected.map((m) => m.version)).toEqual(['002']);
    expect(Object.keys(to.upSql)).toEqual(['002']);
    expect(await schema()).toBe(before);
    expect(await backups()).toEqual([]);
  });

  it('status lists the applied migrations with their time, and the pending ones', async () => {
    const handle = await run({ mode: 'status' }, 'status');
    const r = (await handle.result()) as DbMigrateResult;
    const row = (await sql<{ applied_at: Date }>(appUrl, `SELECT applied_at FROM schema_migrations WHERE version = '001'`))[0]!;
    expect(r.applied).toEqual([{ version: '001', description: 'create_policies', appliedAt: row.applied_at.toISOString() }]);
    expect(r.pending.map((p) => p.version)).toEqual(['002', '003']);
    expect(r.upSql).toEqual({});
    const detail = (await handle.query(progressQuery)).steps.find((s) => s.id === 'pending')?.detail;
    expect(detail).toMatch(/^1 applied \(newest 001_create_policies at .*\), 2 pending: 002_add_tenant, 003_add_flags$/);
    await recordHistory(client, handle.workflowId, 'db-migrate-status');
  });

  it('a `to` that names no migration is refused, naming the field and the migrations there', async () => {
    const err = await (await run({ mode: 'apply', to: '007_nope' }, 'bad-to')).result().catch((e: unknown) => e);
    expect(failureText(err)).toMatch(/to: no migration "007_nope" in .*migrations: expected a version or <version>_<description> of 001_create_policies, 002_add_tenant, 003_add_flags/);
    const backupOff = await (await run({ mode: 'plan', backup: true }, 'bad-backup')).result().catch((e: unknown) => e);
    expect(failureText(backupOff)).toMatch(/backup: only used with mode apply/);
    expect(await versions()).toEqual(['001']);
  });

  it('apply waits for an approval with nothing applied; a reject applies nothing and takes no backup', async () => {
    const before = await schema();
    const handle = await run({ mode: 'apply' }, 'reject');
    const pending = await waitForPending(handle);
    expect(pending).toMatchObject({ step: 'approve-migrate', confirmPhrase: 'MIGRATE', destructive: true });
    expect(pending.summary).toMatch(/Apply 2 migration\(s\) to app \(1 applied, newest 001_create_policies\), up to 003_add_flags/);
    expect(pending.summary).toContain('-- 003_add_flags.up.sql\nCREATE TABLE feature_flags');
    expect(await schema()).toBe(before);
    expect(await backups()).toEqual([]);
    await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', comment: 'after the release', step: 'approve-migrate' }] });
    expect(failureText(await handle.result().catch((e: unknown) => e))).toMatch(/rejected by bob: after the release; no migration was applied/);
    expect(await schema()).toBe(before);
    expect(await backups()).toEqual([]);
  });

  it('apply up to a migration: approved, backed up, applied, verified; the schema has the new column', async () => {
    const handle = await run({ mode: 'apply', to: '002' }, 'apply');
    const pending = await waitForPending(handle);
    expect(pending.summary).toContain('ALTER TABLE policies ADD COLUMN tenant text;');
    expect(pending.summary).not.toContain('feature_flags');
    expect(await versions()).toEqual(['001']);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'MIGRATE', step: 'approve-migrate' }] });
    const r = (await handle.result()) as DbMigrateResult;
    await recordHistory(client, handle.workflowId, 'db-migrate');
    expect(r.ok).toBe(true);
    expect(r.appliedNow).toEqual([{ version: '002', description: 'add_tenant' }]);
    expect(r.after?.map((a) => a.version)).toEqual(['001', '002']);
    expect(r.schemaChanges).toEqual({ added: ['policies.tenant text'], removed: [] });
    expect(await versions()).toEqual(['001', '002']);
    const cols = await sql<{ column_name: string }>(appUrl, `SELECT column_name FROM information_schema.columns WHERE table_name = 'policies' ORDER BY 1`);
    expect(cols.map((c) => c.column_name)).toEqual(['id', 'name', 'tenant']);
    expect(await sql(appUrl, `SELECT to_regclass('feature_flags') AS r`)).toEqual([{ r: null }]);
    // The pre-migration backup is a real, verified dump of the schema before.
    expect(await backups()).toEqual([r.backupId]);
    expect(existsSync(path.join(tmp, 'backups', 'app', r.backupId!, 'manifest.json'))).toBe(true);
  });

  it('apply without a backup (backup: false) applies the rest; the new table exists', async () => {
    const handle = await run({ mode: 'apply', backup: false }, 'apply-rest');
    const pending = await waitForPending(handle);
    expect(pending.summary).toMatch(/No backup is taken/);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'MIGRATE', step: 'approve-migrate' }] });
    const r = (await handle.result()) as DbMigrateResult;
    expect(r.appliedNow.map((m) => m.version)).toEqual(['003']);
    expect(r.backupId).toBeNull();
    expect(r.schemaChanges?.added).toEqual(expect.arrayContaining(['feature_flags', 'feature_flags.enabled boolean', 'feature_flags.name text']));
    expect(await versions()).toEqual(['001', '002', '003']);
    expect(await backups()).toHaveLength(1);
    // Nothing left: apply skips the approval.
    const none = (await (await run({ mode: 'apply' }, 'none')).result()) as DbMigrateResult;
    expect(none).toMatchObject({ ok: true, selected: [], appliedNow: [] });
    expect(none.progress.steps.filter((s) => s.status === 'skipped').map((s) => s.id)).toEqual(['approve-migrate', 'backup', 'apply', 'verify']);
  });

  it('applies only what the approver saw: a migration file added while it waited is refused, nothing applied', async () => {
    const dir = path.join(tmp, 'migrations');
    await writeFile(path.join(dir, '004_add_owner.up.sql'), 'ALTER TABLE policies ADD COLUMN owner text;');
    const handle = await run({ mode: 'apply', backup: false }, 'late-file');
    expect((await waitForPending(handle)).summary).toMatch(/Apply 1 migration\(s\) .* up to 004_add_owner/);
    // Merged from an older branch: its version sorts before the approved one.
    await writeFile(path.join(dir, '000_early.up.sql'), 'CREATE TABLE early (id int);');
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'MIGRATE', step: 'approve-migrate' }] });
    const err = await handle.result().catch((e: unknown) => e);
    expect(failureText(err)).toMatch(/database app: 000_early appeared after the approval and was not approved; nothing was applied by this step/);
    expect(await versions()).toEqual(['001', '002', '003']);
    expect(await sql(appUrl, `SELECT to_regclass('early') AS r`)).toEqual([{ r: null }]);
    await rm(path.join(dir, '000_early.up.sql'));
    await rm(path.join(dir, '004_add_owner.up.sql'));
  });
});
