import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbBackupResult, DbRestoreResult } from '../../common/database/types.js';
import { approveUpdate, pendingApprovalQuery, progressQuery, rejectUpdate } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { failureText, pgConfigService, sql, tableDigest, waitForPending } from './helpers.js';

/** db-restore with `tables` (AlphaPulse 3.4, `pg_restore -t`) against a real PostgreSQL: one cluster and one worker for the file. */

let pgs: PgServer;
let appUrl: string;
let repo: string;
let loaded: LoadedConfig;
let client: Client;
let taskQueue: string;
let stopWorker: () => void;
let workerDone: Promise<void>;
let backupId: string;
/** Each table's content at backup time. */
const atBackup: Record<string, string> = {};

const digests = async () =>
  Object.fromEntries(await Promise.all(['trades', 'accounts', 'ledger'].map(async (t) => [t, await tableDigest(appUrl, t)] as const)));

function restore(input: Record<string, unknown>, id: string) {
  return client.workflow.start('db-restore', { taskQueue, workflowId: `db-restore-${id}-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice', ...input }] });
}

beforeAll(async () => {
  repo = await mkdtemp(path.join(tmpdir(), 'runbook-table-restore-'));
  pgs = await startPostgres({ settings: { autovacuum: 'off' } });
  appUrl = await pgs.createDatabase('app');
  await sql(appUrl, `CREATE TABLE trades (id int PRIMARY KEY, sym text NOT NULL, qty int NOT NULL, note text)`);
  // A note with a tab, a newline and a backslash: COPY escapes them, one line per row.
  await sql(appUrl, `INSERT INTO trades SELECT g, 'SYM' || (g % 7), g * 10, CASE WHEN g % 50 = 0 THEN E'multi\\nline\\t\\\\ note' END FROM generate_series(1, 500) g`);
  await sql(appUrl, `CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL)`);
  await sql(appUrl, `INSERT INTO accounts SELECT g, 'account-' || g FROM generate_series(1, 50) g`);
  await sql(appUrl, `CREATE TABLE ledger (id serial PRIMARY KEY, account_id int NOT NULL REFERENCES accounts(id), amount int NOT NULL)`);
  await sql(appUrl, `INSERT INTO ledger(account_id, amount) SELECT 1 + g % 50, g FROM generate_series(1, 100) g`);
  await sql(appUrl, `CREATE SCHEMA billing; CREATE TABLE billing.trades (id int PRIMARY KEY, total int NOT NULL)`);
  await sql(appUrl, `INSERT INTO billing.trades SELECT g, g * 2 FROM generate_series(1, 20) g`);
  loaded = await writeConfig({
    environment: 'tbltest',
    services: [pgConfigService(pgs.url)],
    databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: { backups: { repository: repo, verifyTables: { app: ['trades'] } } },
  });
  let ready!: (c: { client: Client; taskQueue: string }) => void;
  const started = new Promise<{ client: Client; taskQueue: string }>((resolve) => (ready = resolve));
  const hold = new Promise<void>((resolve) => (stopWorker = resolve));
  workerDone = withWorker(loaded, async (ctx) => {
    ready(ctx);
    await hold;
  });
  ({ client, taskQueue } = await started);
  const b = (await client.workflow.execute('db-backup', { taskQueue, workflowId: `db-backup-tbl-${Date.now()}`, args: [{ database: 'app', requestedBy: 'alice' }] })) as DbBackupResult;
  backupId = b.backup.id;
  Object.assign(atBackup, await digests());
  // After the backup, both tables change: a bad delete in trades, a bad update in accounts.
  await sql(appUrl, 'DELETE FROM trades WHERE id > 100');
  await sql(appUrl, `UPDATE accounts SET name = 'renamed' WHERE id <= 10`);
});

afterAll(async () => {
  stopWorker?.();
  await workerDone;
  await pgs?.stop();
  await rm(repo, { recursive: true, force: true });
});

describe('db-restore with tables (AlphaPulse 3.4 selective restore)', () => {
  it('refuses, before any approval and changing nothing: a table not in the backup, one referenced by a table left out, whole-database fields', async () => {
    const before = await digests();
    await sql(appUrl, 'CREATE TABLE made_later (id int)');
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ tables: ['made_later'] }, /tables: "made_later" is not in backup \S+ \(its tables with data: .*trades.*\); nothing was changed/],
      [{ tables: ['trades', 'public.nope'] }, /tables: "public\.nope" is not in backup/],
      [{ tables: ['accounts'] }, /tables: accounts is referenced by foreign key ledger_account_id_fkey of ledger, which is not restored: add ledger to tables/],
      [{ tables: ['trades'], replace: true }, /replace: not used with tables/],
      [{ tables: ['trades'], mode: 'docker-volume' }, /tables: not with mode docker-volume/],
      [{ tables: [] }, /tables: give at least one table/],
    ];
    for (const [input, message] of cases) {
      const handle = await restore(input, 'refused');
      const err = await handle.result().catch((e: unknown) => e);
      expect(failureText(err)).toMatch(message);
      expect(await handle.query(pendingApprovalQuery)).toBeNull();
    }
    await sql(appUrl, 'DROP TABLE made_later');
    expect(await digests()).toEqual(before);
  });

  it('waits for an approval confirmed with RESTORE TABLES, nothing changed; a reject changes nothing', async () => {
    const before = await digests();
    const handle = await restore({ tables: ['trades'] }, 'reject');
    const pending = await waitForPending(handle);
    expect(pending).toMatchObject({ step: 'approve-tables', confirmPhrase: 'RESTORE TABLES', destructive: true });
    expect(pending.summary).toMatch(/Restore the rows of trades in database app from backup \S+ .*trades now has 100 rows, the backup 500/);
    expect(await digests()).toEqual(before);
    await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', comment: 'wrong backup', step: 'approve-tables' }] });
    expect(failureText(await handle.result().catch((e: unknown) => e))).toMatch(/rejected by bob: wrong backup; no table was changed/);
    expect(await digests()).toEqual(before);
  });

  it('approved: trades is back to the backup, accounts keeps its changes, ledger is untouched', async () => {
    const before = await digests();
    expect(before.trades).not.toBe(atBackup.trades);
    expect(before.accounts).not.toBe(atBackup.accounts);
    const handle = await restore({ tables: ['trades'], backupId }, 'approve');
    await waitForPending(handle);
    expect(await digests()).toEqual(before);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'RESTORE TABLES', comment: 'bad delete', step: 'approve-tables' }] });
    const r = (await handle.result()) as DbRestoreResult;
    await recordHistory(client, handle.workflowId, 'db-restore-tables');
    expect(r).toMatchObject({ ok: true, backupId, target: 'app', replaced: false, keptAs: null, tables: ['trades'] });
    expect(r.counts).toEqual([{ table: 'trades', expected: 500, actual: 500 }]);
    expect((await handle.query(progressQuery)).steps.map((s) => [s.id, s.status])).toEqual([
      ['plan', 'succeeded'],
      ['choose', 'succeeded'],
      ['check', 'succeeded'],
      ['approve-tables', 'succeeded'],
      ['restore-tables', 'succeeded'],
      ['verify', 'succeeded'],
    ]);
    const after = await digests();
    expect(after.trades).toBe(atBackup.trades);
    expect(after.accounts).toBe(before.accounts);
    expect(after.ledger).toBe(before.ledger);
    // The table keeps its live definition: the primary key still refuses a duplicate.
    await expect(sql(appUrl, `INSERT INTO trades VALUES (1, 'X', 1, null)`)).rejects.toThrow(/duplicate key/);
  });

  it('two tables linked by a foreign key restore together: accounts and ledger', async () => {
    await sql(appUrl, 'DELETE FROM ledger WHERE id > 10');
    const handle = await restore({ tables: ['ledger', 'accounts'] }, 'pair');
    const pending = await waitForPending(handle);
    expect(pending.summary).toMatch(/Restore the rows of accounts, ledger/);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'RESTORE TABLES', step: 'approve-tables' }] });
    const r = (await handle.result()) as DbRestoreResult;
    expect(r.counts).toEqual([
      { table: 'accounts', expected: 50, actual: 50 },
      { table: 'ledger', expected: 100, actual: 100 },
    ]);
    expect(await digests()).toEqual(atBackup);
  });

  it('schema.table names the table in that schema, not the one of the same name in public', async () => {
    const original = await tableDigest(appUrl, 'billing.trades');
    await sql(appUrl, 'UPDATE billing.trades SET total = 0');
    await sql(appUrl, 'DELETE FROM trades WHERE id > 400');
    const publicTrades = await tableDigest(appUrl, 'trades');
    const handle = await restore({ tables: ['billing.trades'] }, 'schema');
    expect((await waitForPending(handle)).summary).toMatch(/billing\.trades now has 20 rows, the backup 20/);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'RESTORE TABLES', step: 'approve-tables' }] });
    const r = (await handle.result()) as DbRestoreResult;
    expect(r.counts).toEqual([{ table: 'billing.trades', expected: 20, actual: 20 }]);
    expect(await tableDigest(appUrl, 'billing.trades')).toBe(original);
    expect(await tableDigest(appUrl, 'trades')).toBe(publicTrades);
  });

  it('a load that breaks a foreign key to a table left out fails and rolls back: the table keeps its rows', async () => {
    await sql(appUrl, 'DELETE FROM ledger WHERE account_id = 5');
    await sql(appUrl, 'DELETE FROM accounts WHERE id = 5');
    const before = await digests();
    const handle = await restore({ tables: ['ledger'] }, 'fk');
    await waitForPending(handle);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'RESTORE TABLES', step: 'approve-tables' }] });
    const err = await handle.result().catch((e: unknown) => e);
    expect(failureText(err)).toMatch(/restoring ledger of app from backup \S+ failed and was rolled back \(the tables are as they were\): .*violates foreign key constraint "ledger_account_id_fkey"/s);
    expect(await digests()).toEqual(before);
  });
});
