import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMigrator, readMigrationFiles, type Migrator } from '../../activities/database/migrations.js';
import { createLogger } from '../../lib/logger.js';
import { freePort, startPostgres, type PgServer } from '../fixtures/servers.js';

const DEMO_MIGRATIONS = fileURLToPath(new URL('../../demo/migrations', import.meta.url));
const logger = createLogger({ test: 'migrations' }, 'silent');

let server: PgServer;
let dbCounter = 0;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  server = await startPostgres();
});

afterAll(async () => {
  await server?.stop();
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function freshDb(): Promise<string> {
  dbCounter += 1;
  return server.createDatabase(`mig_${process.pid}_${dbCounter}`);
}

async function migrationsDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'runbook-migrations-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  for (const [name, sql] of Object.entries(files)) await writeFile(path.join(dir, name), sql);
  return dir;
}

function migrator(url: string, dir: string): Migrator {
  const m = createMigrator({ url, dir, database: 'main', logger });
  cleanups.push(() => m.close());
  return m;
}

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

const recorded = (url: string) =>
  query<{ version: string; description: string }>(url, 'SELECT version, description FROM schema_migrations ORDER BY version');

async function tableExists(url: string, table: string): Promise<boolean> {
  const [row] = await query<{ ok: boolean }>(url, `SELECT to_regclass('${table}') IS NOT NULL AS ok`);
  return row!.ok;
}

async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected the call to fail').toBeInstanceOf(ApplicationFailure);
  const f = err as ApplicationFailure;
  expect(f.type).toBe('MigrationFailed');
  expect(f.nonRetryable).toBe(true);
  return f;
}

/** Three migrations that each create a table and record themselves in `ran`, for counting. */
const THREE = {
  '001_create_ran.up.sql': 'CREATE TABLE ran (version text NOT NULL);\nINSERT INTO ran VALUES (\'001\');\n',
  '001_create_ran.down.sql': 'DROP TABLE ran;\n',
  '002_create_a.up.sql': "SELECT pg_sleep(0.2);\nCREATE TABLE a (id int);\nINSERT INTO ran VALUES ('002');\n",
  '002_create_a.down.sql': 'DROP TABLE a;\n',
  '003_create_b.up.sql': "CREATE TABLE b (id int);\nINSERT INTO ran VALUES ('003');\n",
  '003_create_b.down.sql': 'DROP TABLE b;\n',
};

describe('migrations: up', () => {
  it('applies the demo migrations in order, records them, and a second run applies nothing', async () => {
    const url = await freshDb();
    const m = migrator(url, DEMO_MIGRATIONS);
    const progress: string[] = [];

    const first = await m.up({ onProgress: (x) => progress.push(x.version) });
    expect(first.applied).toEqual([
      { version: '001', description: 'create_policies' },
      { version: '002', description: 'add_feature_flags' },
    ]);
    expect(first.pending).toEqual([]);
    expect(progress).toEqual(['001', '002']);
    expect(await recorded(url)).toEqual([
      { version: '001', description: 'create_policies' },
      { version: '002', description: 'add_feature_flags' },
    ]);
    // The runbook's own rollback statement works against the migrated schema.
    await query(url, "INSERT INTO feature_flags (name, enabled) VALUES ('new-feature', true)");
    await query(url, "UPDATE feature_flags SET enabled = false WHERE name = 'new-feature'");
    expect(await query(url, 'SELECT count(*)::int AS n FROM policies')).toEqual([{ n: 0 }]);

    const second = await m.up();
    expect(second.applied).toEqual([]);
    expect(second.pending).toEqual([]);
    expect(await recorded(url)).toHaveLength(2);

    const status = await m.status();
    expect(status.pending).toEqual([]);
    expect(status.applied.map((a) => a.version)).toEqual(['001', '002']);
    expect(Number.isNaN(Date.parse(status.applied[0]!.appliedAt))).toBe(false);
  });

  it('orders versions numerically and stops at `to`', async () => {
    const url = await freshDb();
    const dir = await migrationsDir({
      '9_nine.up.sql': 'CREATE TABLE nine (id int);',
      '10_ten.up.sql': 'CREATE TABLE ten (id int);',
      '20260101120000_stamped.up.sql': 'CREATE TABLE stamped (id int);',
    });
    const m = migrator(url, dir);
    const res = await m.up({ to: '10' });
    expect(res.applied.map((a) => a.version)).toEqual(['9', '10']);
    expect(res.pending.map((a) => a.version)).toEqual(['20260101120000']);
    expect(await tableExists(url, 'stamped')).toBe(false);
    expect((await m.up()).applied.map((a) => a.version)).toEqual(['20260101120000']);
  });

  it('a dry run lists what would run and changes nothing', async () => {
    const url = await freshDb();
    const m = migrator(url, await migrationsDir(THREE));

    const dry = await m.up({ dryRun: true });
    expect(dry).toMatchObject({ database: 'main', dryRun: true, applied: [] });
    expect(dry.pending.map((p) => p.version)).toEqual(['001', '002', '003']);
    expect(await tableExists(url, 'schema_migrations')).toBe(false);
    expect(await tableExists(url, 'ran')).toBe(false);

    await m.up({ to: '001' });
    const dry2 = await m.up({ dryRun: true });
    expect(dry2.pending.map((p) => p.version)).toEqual(['002', '003']);
    expect(await recorded(url)).toEqual([{ version: '001', description: 'create_ran' }]);
    expect(await tableExists(url, 'a')).toBe(false);
  });

  it('a failing migration rolls back its own transaction, keeps the earlier ones, and names the file', async () => {
    const base = await freshDb();
    // Trust auth accepts any password: this one must never appear in an error.
    const url = base.replace('postgres@', 'postgres:s3cret-pw@');
    const dir = await migrationsDir({
      '001_ok.up.sql': 'CREATE TABLE ok (id int);',
      '002_broken.up.sql': 'CREATE TABLE half_done (id int);\nINSERT INTO ok VALUES (1);\nSELEC oops;\n',
      '003_after.up.sql': 'CREATE TABLE after (id int);',
    });
    const m = migrator(url, dir);

    const f = await failureOf(m.up());
    expect(f.message).toContain(path.join(dir, '002_broken.up.sql'));
    expect(f.message).toContain('syntax error at or near "SELEC"');
    expect(f.message).toContain('line 3');
    expect(f.message).not.toContain('s3cret-pw');

    expect(await recorded(base)).toEqual([{ version: '001', description: 'ok' }]);
    expect(await tableExists(base, 'ok')).toBe(true);
    expect(await query(base, 'SELECT count(*)::int AS n FROM ok')).toEqual([{ n: 0 }]);
    expect(await tableExists(base, 'half_done')).toBe(false);
    expect(await tableExists(base, 'after')).toBe(false);

    // Fixed file: the run resumes where it stopped.
    await writeFile(path.join(dir, '002_broken.up.sql'), 'CREATE TABLE half_done (id int);');
    expect((await m.up()).applied.map((a) => a.version)).toEqual(['002', '003']);
  });

  it('two concurrent runners apply each migration exactly once', async () => {
    const url = await freshDb();
    const dir = await migrationsDir(THREE);
    const [r1, r2] = await Promise.all([migrator(url, dir).up(), migrator(url, dir).up()]);

    const appliedVersions = [...r1.applied, ...r2.applied].map((a) => a.version).sort();
    expect(appliedVersions).toEqual(['001', '002', '003']);
    expect(r1.pending).toEqual([]);
    expect(r2.pending).toEqual([]);
    expect(await query(url, 'SELECT version FROM ran ORDER BY version')).toEqual([{ version: '001' }, { version: '002' }, { version: '003' }]);
    expect(await recorded(url)).toHaveLength(3);
  });

  it('an unreachable database is a retryable failure that names the database, not the password', async () => {
    const url = `postgres://postgres:s3cret-pw@127.0.0.1:${await freePort()}/postgres`;
    const err = await migrator(url, DEMO_MIGRATIONS)
      .up()
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    expect(err).toBeInstanceOf(Error);
    // Not a non-retryable ApplicationFailure: Temporal retries it until the database is up.
    expect(err).not.toBeInstanceOf(ApplicationFailure);
    expect(err!.message).toMatch(/database main: cannot connect to PostgreSQL: .*ECONNREFUSED/);
    expect(err!.message).not.toContain('s3cret-pw');
  });
});

describe('migrations: down', () => {
  it('rolls back by steps, newest first, removing rows and undoing schema', async () => {
    const url = await freshDb();
    const m = migrator(url, await migrationsDir(THREE));
    await m.up();
    const progress: string[] = [];

    const res = await m.down({ steps: 2, onProgress: (x) => progress.push(x.version) });
    expect(res.applied.map((a) => a.version)).toEqual(['003', '002']);
    expect(progress).toEqual(['003', '002']);
    expect(res.downSql).toEqual({ '003': 'DROP TABLE b;\n', '002': 'DROP TABLE a;\n' });
    expect(await recorded(url)).toEqual([{ version: '001', description: 'create_ran' }]);
    expect(await tableExists(url, 'a')).toBe(false);
    expect(await tableExists(url, 'b')).toBe(false);
    expect(await tableExists(url, 'ran')).toBe(true);

    // Default is one step.
    expect((await m.down({})).applied.map((a) => a.version)).toEqual(['001']);
    expect(await recorded(url)).toEqual([]);
    expect(await tableExists(url, 'ran')).toBe(false);
  });

  it('rolls back every migration newer than `to`; a dry run only shows the SQL', async () => {
    const url = await freshDb();
    const m = migrator(url, await migrationsDir(THREE));
    await m.up();

    const dry = await m.down({ to: '001', dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(dry.applied).toEqual([]);
    expect(dry.pending.map((p) => p.version)).toEqual(['003', '002']);
    expect(dry.downSql).toEqual({ '003': 'DROP TABLE b;\n', '002': 'DROP TABLE a;\n' });
    expect(await recorded(url)).toHaveLength(3);
    expect(await tableExists(url, 'b')).toBe(true);

    const res = await m.down({ to: '001' });
    expect(res.applied.map((a) => a.version)).toEqual(['003', '002']);
    expect(await recorded(url)).toEqual([{ version: '001', description: 'create_ran' }]);
    expect(await tableExists(url, 'a')).toBe(false);
    expect((await m.status()).pending.map((p) => p.version)).toEqual(['002', '003']);

    await failureOf(m.down({ to: '7' }));
  });

  it('fails before changing anything when a selected migration has no .down.sql', async () => {
    const url = await freshDb();
    const dir = await migrationsDir({
      '001_one.up.sql': 'CREATE TABLE one (id int);',
      '001_one.down.sql': 'DROP TABLE one;',
      '002_two.up.sql': 'CREATE TABLE two (id int);',
      '003_three.up.sql': 'CREATE TABLE three (id int);',
      '003_three.down.sql': 'DROP TABLE three;',
    });
    const m = migrator(url, dir);
    await m.up();

    for (const dryRun of [true, false]) {
      const f = await failureOf(m.down({ to: '0', dryRun }));
      expect(f.message).toContain(path.join(dir, '002_two.down.sql'));
      expect(f.message).toContain('missing');
    }
    // 003 has a down file and is first in line, but nothing was rolled back.
    expect((await recorded(url)).map((r) => r.version)).toEqual(['001', '002', '003']);
    expect(await tableExists(url, 'three')).toBe(true);
  });
});

describe('migration file names', () => {
  const cases: Array<[string, Record<string, string>, string, string]> = [
    ['a dash instead of an underscore', { '001-create.up.sql': '' }, '001-create.up.sql', 'bad name'],
    ['an upper-case description', { '001_Create.up.sql': '' }, '001_Create.up.sql', 'bad name'],
    ['no direction', { '001_create.sql': '' }, '001_create.sql', 'bad name'],
    ['a duplicate version', { '001_a.up.sql': '', '001_b.up.sql': '' }, '001_b.up.sql', 'repeats version 001 of 001_a.up.sql'],
    ['a down without its up', { '001_a.up.sql': '', '002_b.down.sql': '' }, '002_b.down.sql', 'no matching 002_b.up.sql'],
    ['a down whose description differs', { '001_a.up.sql': '', '001_c.down.sql': '' }, '001_c.down.sql', 'the up file for version 001 is 001_a.up.sql'],
  ];

  it.each(cases)('rejects %s, naming the file and the expected pattern', async (_what, files, bad, why) => {
    const dir = await migrationsDir(files);
    const f = await failureOf(readMigrationFiles(dir));
    expect(f.message).toContain(path.join(dir, bad));
    expect(f.message).toContain(why);
    expect(f.message).toContain('<version>_<description>.up.sql');
  });

  it('refuses to run anything from a directory with a bad name in it', async () => {
    const url = await freshDb();
    const dir = await migrationsDir({ '001_ok.up.sql': 'CREATE TABLE ok (id int);', 'oops.sql': 'SELECT 1;', 'README.md': 'ignored' });
    await failureOf(migrator(url, dir).up());
    expect(await tableExists(url, 'schema_migrations')).toBe(false);
    expect(await tableExists(url, 'ok')).toBe(false);
  });

  it('pairs up and down files and ignores other files', async () => {
    const files = await readMigrationFiles(DEMO_MIGRATIONS);
    expect(files).toEqual([
      {
        version: '001',
        description: 'create_policies',
        upPath: path.join(DEMO_MIGRATIONS, '001_create_policies.up.sql'),
        downPath: path.join(DEMO_MIGRATIONS, '001_create_policies.down.sql'),
      },
      {
        version: '002',
        description: 'add_feature_flags',
        upPath: path.join(DEMO_MIGRATIONS, '002_add_feature_flags.up.sql'),
        downPath: path.join(DEMO_MIGRATIONS, '002_add_feature_flags.down.sql'),
      },
    ]);
  });
});
