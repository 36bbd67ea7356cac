import { chmod, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BaseBackupManifest, DbBaseBackupResult, PitrRestoreResult } from '../../common/database/types.js';
import { approveUpdate } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { pgCtl } from '../../lib/local/index.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { startVersitygw, type S3Server } from '../fixtures/versitygw.js';
import { sql, waitForPending } from './helpers.js';

/**
 * WAL retention in object storage (AlphaPulse 5.2): when db-base-backup's retention deletes a
 * base backup, the WAL in the store that only it could replay goes too, and nothing a kept base
 * backup needs. Against a real S3 gateway, with archive_command = `runbook wal push`; a PITR from
 * the oldest kept base backup afterwards recovers from what is left.
 */

const BUCKET = 'runbook-wal';
const PREFIX = 'prod/pg';
const WAL = `${PREFIX}/ledger/wal/`;

let pgs: PgServer;
let s3: S3Server;
let client: S3Client;
let root: string;
let ledgerUrl: string;
let loaded: LoadedConfig;
let env: NodeJS.ProcessEnv;

/** Log and segment number of a WAL file name, as the pruning compares them (timeline left out). */
const position = (name: string) => name.slice(8, 24);
const count = async () => Number((await sql<{ n: string }>(ledgerUrl, 'SELECT count(*) AS n FROM entries'))[0]!.n);

async function walNames(): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const r = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: WAL, ContinuationToken: token }));
    out.push(...(r.Contents ?? []).map((o) => o.Key!.slice(WAL.length)));
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out.sort();
}

async function baseIds(): Promise<string[]> {
  const r = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${PREFIX}/ledger/base/`, Delimiter: '/' }));
  return (r.CommonPrefixes ?? []).map((p) => p.Prefix!.slice(`${PREFIX}/ledger/base/`.length, -1)).sort();
}

/** Switches to a new segment and waits until archive_command has put the old one in the store. */
async function archiveCurrentWal(): Promise<string> {
  const f = (await sql<{ f: string }>(ledgerUrl, 'SELECT pg_walfile_name(pg_switch_wal()) AS f'))[0]!.f;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const a = (await sql<{ last: string | null; failed: string }>(ledgerUrl, 'SELECT last_archived_wal AS last, failed_count::text AS failed FROM pg_stat_archiver'))[0]!;
    if (a.last && a.last >= f) return f;
    if (Number(a.failed) > 0) throw new Error(`archive_command failed ${a.failed} time(s); server log:\n${await readFile(path.join(root, 'pg.log'), 'utf8').catch(() => '')}`);
    if (Date.now() > deadline) throw new Error(`${f} not archived after 30 s`);
    await sleep(200);
  }
}

beforeAll(async () => {
  [pgs, s3] = await Promise.all([startPostgres({ settings: { autovacuum: 'off', archive_mode: 'on' } }), startVersitygw()]);
  client = s3.client();
  await s3.createBucket(BUCKET);
  root = await mkdtemp(path.join(tmpdir(), 'runbook-wal-retention-'));
  // archive_command reads the credentials from an env file only the server's OS user can read.
  const envFile = path.join(root, 's3.env');
  await writeFile(envFile, `S3_ENDPOINT=${s3.endpoint}\nS3_ACCESS_KEY_ID=${s3.accessKeyId}\nS3_SECRET_ACCESS_KEY=${s3.secretAccessKey}\n`, { mode: 0o600 });
  if (process.getuid?.() === 0) {
    const id = async (flag: string) => Number((await execa('id', [flag, 'postgres'])).stdout);
    for (const p of [root, envFile]) await chown(p, await id('-u'), await id('-g'));
  }
  await chmod(root, 0o755);
  ledgerUrl = await pgs.createDatabase('ledger');
  env = { ...process.env, S3_ENDPOINT: s3.endpoint, S3_ACCESS_KEY_ID: s3.accessKeyId, S3_SECRET_ACCESS_KEY: s3.secretAccessKey };
  const ctl = (...args: string[]) => pgCtl(pgs, ...args);
  loaded = await writeConfig(
    {
      environment: 'walretention',
      services: [
        {
          name: 'postgres',
          group: 'infra',
          driver: { type: 'command', cwd: '/', start: ctl('-l', path.join(root, 'pg.log'), '-w', 'start'), stop: ctl('-m', 'fast', '-w', 'stop'), status: ctl('status') },
          probes: [{ type: 'postgres', url: ledgerUrl }],
        },
      ],
      stack: { groups: [{ name: 'infra', waitTimeoutSeconds: 60 }], pollIntervalSeconds: 0.2 },
      databases: [{ name: 'ledger', url: ledgerUrl, service: 'postgres' }],
      approvals: { approvers: { default: ['alice', 'bob'] } },
      databaseOps: {
        objectStorage: { endpoint: '${S3_ENDPOINT}', bucket: BUCKET, prefix: PREFIX, forcePathStyle: true, accessKeyId: '${S3_ACCESS_KEY_ID}', secretAccessKey: '${S3_SECRET_ACCESS_KEY}' },
        pitr: [
          {
            database: 'ledger',
            dataDir: pgs.dataDir,
            walArchive: path.join(root, 'wal'),
            baseBackups: path.join(root, 'base'),
            restoreDir: path.join(root, 'restore'),
            verifyTables: ['entries'],
            objectStorage: true,
            retention: 2,
          },
        ],
      },
    },
    root,
  );
  const runbook = path.resolve('bin/runbook.mjs');
  await sql(pgs.url, `ALTER SYSTEM SET archive_command = '${process.execPath} --env-file=${envFile} ${runbook} wal push %p %f --database ledger --config ${loaded.path}'`);
  await sql(pgs.url, 'SELECT pg_reload_conf()');
  await sql(ledgerUrl, 'CREATE TABLE entries (id int PRIMARY KEY, amount numeric NOT NULL)');
}, 60_000);

afterAll(async () => {
  client?.destroy();
  await Promise.all([pgs?.stop(), s3?.stop()]);
  if (root) await rm(root, { recursive: true, force: true });
});

describe('WAL retention in object storage', () => {
  const bases: BaseBackupManifest[] = [];
  let T: string;

  it('db-base-backup keeping 2: the third deletes the first base backup and exactly the WAL before the oldest kept one', async () => {
    const insert = (from: number) => sql(ledgerUrl, `INSERT INTO entries SELECT g, g * 1.5 FROM generate_series(${from}, ${from + 99}) g`);
    const third = await withWorker(
      loaded,
      async ({ client: temporal, taskQueue }) => {
        const baseBackup = async (record?: string) => {
          const workflowId = `db-base-backup-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;
          const r = (await temporal.workflow.execute('db-base-backup', { taskQueue, workflowId, args: [{ database: 'ledger', requestedBy: 'alice' }] })) as DbBaseBackupResult;
          if (record) await recordHistory(temporal, workflowId, record);
          bases.push(r.backup);
          return r;
        };
        await insert(1);
        await archiveCurrentWal();
        const first = await baseBackup();
        // Nothing older than the only base backup exists yet to delete but what precedes it.
        expect(first.walRetention).toMatchObject({ keepFrom: first.backup.startWal, oldestBaseBackupId: first.backup.id });
        await insert(101);
        await archiveCurrentWal();
        await baseBackup();
        await insert(201);
        await archiveCurrentWal();
        // T: rows 1-300 committed, after the second base backup was consistent and before the third.
        await sleep(1100);
        T = new Date().toISOString();
        await sleep(1100);
        await insert(301);
        await archiveCurrentWal();
        return { before: await walNames(), r: await baseBackup('db-base-backup-wal-retention') };
      },
      { env },
    );
    const [b1, b2, b3] = bases;
    expect(third.r.deleted).toEqual([b1!.id]);
    expect(await baseIds()).toEqual([b2!.id, b3!.id].sort());

    const cutoff = b2!.startWal!;
    const doomed = third.before.filter((n) => !n.endsWith('.history') && position(n) < position(cutoff));
    // What went: the first base backup's start segment and its backup history file among them.
    expect(doomed).toContain(b1!.startWal);
    expect(doomed.some((n) => n.startsWith(b1!.startWal!) && n.endsWith('.backup'))).toBe(true);
    expect(third.r.walRetention).toMatchObject({
      keepFrom: cutoff,
      oldestBaseBackupId: b2!.id,
      deleted: doomed.length,
      firstDeleted: doomed[0],
      lastDeleted: doomed.at(-1),
    });
    expect(third.r.progress.steps.map((s) => [s.id, s.status])).toEqual([
      ['plan', 'succeeded'],
      ['wal-check', 'succeeded'],
      ['base-backup', 'succeeded'],
      ['upload', 'succeeded'],
      ['retention', 'succeeded'],
      ['wal-retention', 'succeeded'],
    ]);

    const after = await walNames();
    // Nothing before the cutoff is left; everything from it on that was there is kept.
    expect(after.filter((n) => position(n) < position(cutoff))).toEqual([]);
    expect(third.before.filter((n) => !doomed.includes(n)).every((n) => after.includes(n))).toBe(true);
    expect(after).toContain(cutoff);
    expect(after.some((n) => n.startsWith(cutoff) && n.endsWith('.backup'))).toBe(true);
    // The rest was archived while the third base backup ran, all of it after the listing's last
    // segment: the segment in use at the listing is finished by the backup's start (CI saw 07
    // archived then, with the backup starting in 08) and belongs to what is kept.
    const lastListed = third.before.map(position).sort().at(-1)!;
    const newer = after.filter((n) => !third.before.includes(n));
    expect(newer.filter((n) => position(n) <= lastListed), `archived after the listing yet not after its last segment; listing: ${third.before.join(' ')}`).toEqual([]);
    expect(newer.filter((n) => !n.endsWith('.backup') && !n.endsWith('.history')).every((n) => position(n) >= position(cutoff))).toBe(true);
    expect(third.r.walRetention?.remaining).toBeGreaterThanOrEqual(third.before.length - doomed.length);
  });

  it('pitr-restore to a time only the oldest kept base backup reaches recovers it from the store, after the pruning', async () => {
    // A machine without the local copies: the base backup and the WAL come from the store.
    await rm(path.join(root, 'base'), { recursive: true, force: true });
    const r = await withWorker(
      loaded,
      async ({ client: temporal, taskQueue }) => {
        const handle = await temporal.workflow.start('pitr-restore', { taskQueue, workflowId: `pitr-after-retention-${Date.now()}`, args: [{ database: 'ledger', targetTime: T, requestedBy: 'alice' }] });
        expect(await waitForPending(handle)).toMatchObject({ step: 'approve-restore', confirmPhrase: 'RESTORE' });
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'RESTORE', step: 'approve-restore' }] });
        expect(await waitForPending(handle, 120_000)).toMatchObject({ step: 'approve-cleanup', confirmPhrase: 'DELETE' });
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', step: 'approve-cleanup' }] });
        return (await handle.result()) as PitrRestoreResult;
      },
      { env },
    );
    expect(r.baseBackupId).toBe(bases[1]!.id);
    // The window the run checked starts at the oldest kept base backup's first segment.
    expect(r.progress.steps.find((s) => s.id === 'window')?.detail).toMatch(new RegExp(`^2 base backups, WAL archived from ${bases[1]!.startWal} until `));
    expect(r.counts).toEqual({ entries: 300 });
    expect(await count()).toBe(300);
  }, 120_000);

  it('while another pg_basebackup runs on the cluster, no WAL is deleted and the run says why', async () => {
    await sql(ledgerUrl, 'INSERT INTO entries SELECT g, g * 1.5 FROM generate_series(301, 400) g');
    await archiveCurrentWal();
    // A base backup taken by someone else, throttled so that it is still running during the run.
    const other = execa(path.join(pgs.binDir, 'pg_basebackup'), ['-d', pgs.url, '-D', path.join(root, 'other-base'), '-X', 'none', '--max-rate=32'], { reject: false });
    try {
      for (let i = 0; ; i++) {
        const [p] = await sql<{ n: string }>(pgs.url, 'SELECT count(*) AS n FROM pg_stat_progress_basebackup');
        if (Number(p!.n) > 0) break;
        if (i > 100) throw new Error('the throttled pg_basebackup did not start');
        await sleep(100);
      }
      const before = await walNames();
      const r = await withWorker(
        loaded,
        ({ client: temporal, taskQueue }) =>
          temporal.workflow.execute('db-base-backup', { taskQueue, workflowId: `db-base-backup-busy-${Date.now()}`, args: [{ database: 'ledger', requestedBy: 'alice' }] }) as Promise<DbBaseBackupResult>,
        { env },
      );
      // The base backup retention still applies; the WAL one waits for a run that can tell what is safe.
      expect(r.deleted).toEqual([bases[1]!.id]);
      expect(r.walRetention).toMatchObject({ deleted: 0, keepFrom: null, skipped: 'a pg_basebackup is in progress on the cluster' });
      expect(r.progress.steps.find((s) => s.id === 'wal-retention')?.detail).toBe('nothing deleted: a pg_basebackup is in progress on the cluster');
      const after = await walNames();
      expect(before.filter((n) => !after.includes(n))).toEqual([]);
    } finally {
      other.kill('SIGTERM');
      await other;
    }
  }, 60_000);
});
