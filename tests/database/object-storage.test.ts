import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type S3Client as S3 } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackupManifest, DbBackupResult, DbBaseBackupResult, RestoreDrillResult } from '../../common/database/types.js';
import { parseConfig, type LoadedConfig } from '../../lib/config.js';
import { recordHistory, runbookCli, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { startVersitygw, type S3Server } from '../fixtures/versitygw.js';
import { failureText, pgConfigService, sql } from './helpers.js';

/**
 * Off-host backups (AlphaPulse 3.4 and 5.2) against a real S3-compatible server, Versity's
 * gateway: db-backup uploads with checksums the server checks, retention applies to the
 * objects, a tampered object is refused on download, and a restore drill on a machine without
 * the local files restores from the store.
 */

const BUCKET = 'runbook-backups';
const PREFIX = 'prod/pg';

let pgs: PgServer;
let s3: S3Server;
let client: S3;
let appUrl: string;
let repo: string;
let loaded: LoadedConfig;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  [pgs, s3] = await Promise.all([startPostgres({ settings: { autovacuum: 'off' } }), startVersitygw()]);
  client = s3.client();
  await s3.createBucket(BUCKET);
  appUrl = await pgs.createDatabase('app');
  await sql(appUrl, `CREATE TABLE policies (id int PRIMARY KEY, name text NOT NULL)`);
  await sql(appUrl, `INSERT INTO policies SELECT g, 'policy-' || g FROM generate_series(1, 2000) g`);
  // About 6 MiB that compression cannot shrink: the custom-format dump is uploaded in two 5 MiB parts.
  await sql(appUrl, `CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL)`);
  await sql(appUrl, `INSERT INTO blobs SELECT g, decode(md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) || md5((g * 31)::text), 'hex') FROM generate_series(1, 100000) g`);
  repo = await mkdtemp(path.join(tmpdir(), 'runbook-s3-backups-'));
  env = { ...process.env, S3_ENDPOINT: s3.endpoint, S3_ACCESS_KEY_ID: s3.accessKeyId, S3_SECRET_ACCESS_KEY: s3.secretAccessKey };
  loaded = await writeConfig({
    environment: 's3test',
    services: [pgConfigService(pgs.url)],
    databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: {
      backups: { repository: repo, retention: 2, verifyTables: { app: ['policies', 'blobs'] } },
      objectStorage: {
        endpoint: '${S3_ENDPOINT}',
        bucket: BUCKET,
        prefix: PREFIX,
        forcePathStyle: true,
        accessKeyId: '${S3_ACCESS_KEY_ID}',
        secretAccessKey: '${S3_SECRET_ACCESS_KEY}',
        partSizeMiB: 5,
      },
    },
  });
}, 60_000);

afterAll(async () => {
  client?.destroy();
  await Promise.all([pgs?.stop(), s3?.stop()]);
  await rm(repo, { recursive: true, force: true });
});

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function getBytes(key: string): Promise<Uint8Array> {
  const r = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return r.Body!.transformToByteArray();
}

async function keysUnder(prefix: string): Promise<string[]> {
  const r = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (r.Contents ?? []).map((o) => o.Key!).sort();
}

async function run<T>(procedure: string, input: Record<string, unknown>, config = loaded, database = 'app', record?: string): Promise<T> {
  return withWorker(
    config,
    async ({ client: temporal, taskQueue }) => {
      const workflowId = `${procedure}-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;
      const handle = await temporal.workflow.start(procedure, { taskQueue, workflowId, args: [{ database, requestedBy: 'alice', ...input }] });
      try {
        const result = (await handle.result()) as T;
        if (record) await recordHistory(temporal, workflowId, record);
        return result;
      } finally {
        // Whatever the outcome, the credentials never reached the run's history.
        const history = JSON.stringify((await handle.fetchHistory()).events);
        expect(history).not.toContain(s3.secretAccessKey);
      }
    },
    { env },
  );
}

describe('Versity S3 gateway (the real server these tests use)', () => {
  it('refuses a request signed with a wrong secret, and a PUT whose SHA-256 does not match its body', async () => {
    const wrong = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: 'not-the-secret' } });
    const refused = await wrong.send(new ListObjectsV2Command({ Bucket: BUCKET })).catch((e: unknown) => e as Error & { $metadata?: { httpStatusCode?: number } });
    wrong.destroy();
    expect(refused).toBeInstanceOf(Error);
    expect((refused as Error).name).toBe('SignatureDoesNotMatch');
    expect((refused as { $metadata: { httpStatusCode: number } }).$metadata.httpStatusCode).toBe(403);

    const body = Buffer.from('the real content');
    const badDigest = await client
      .send(new PutObjectCommand({ Bucket: BUCKET, Key: 'probe/x', Body: body, ChecksumSHA256: createHash('sha256').update('other content').digest('base64') }))
      .catch((e: unknown) => e as Error);
    expect(badDigest).toBeInstanceOf(Error);
    expect((badDigest as Error).name).toMatch(/BadDigest|InvalidRequest|XAmzContentChecksumMismatch/);
    expect(await keysUnder('probe/')).toEqual([]);
  });

  it('config refuses credentials written in the config', () => {
    const base = { environment: 'x', databaseOps: { objectStorage: { bucket: BUCKET, accessKeyId: '${S3_ACCESS_KEY_ID}', secretAccessKey: 'hunter2-literal' } } };
    expect(() => parseConfig(JSON.stringify(base), '/tmp/runbooks.yaml')).toThrow(/secretAccessKey must not be written in the config: write \$\{NAME\}/);
  });
});

describe('db-backup to object storage and restores from it', () => {
  const backups: BackupManifest[] = [];

  it('db-backup uploads the dump and its manifest; the object is what was dumped, checked by the server', async () => {
    const r = await run<DbBackupResult>('db-backup', {}, loaded, 'app', 'db-backup-object-storage');
    backups.push(r.backup);
    const folder = `${PREFIX}/app/${r.backup.id}`;
    expect(r.upload).toMatchObject({ location: `s3://${BUCKET}/${folder}/`, objects: 2, bytes: r.backup.sizeBytes, parts: 2, already: false });
    expect(r.progress.steps.map((s) => [s.id, s.status])).toEqual([
      ['plan', 'succeeded'],
      ['dump', 'succeeded'],
      ['verify', 'succeeded'],
      ['upload', 'succeeded'],
      ['retention', 'succeeded'],
    ]);
    expect(await keysUnder(`${folder}/`)).toEqual([`${folder}/dump.pgcustom`, `${folder}/manifest.json`]);
    // Independently of the runbook: the object's bytes hash to the manifest's checksum.
    expect(sha256(await getBytes(`${folder}/dump.pgcustom`))).toBe(r.backup.sha256);
    const stored = JSON.parse(Buffer.from(await getBytes(`${folder}/manifest.json`)).toString('utf8')) as BackupManifest & { verifiedAt?: string };
    expect(stored).toMatchObject({ id: r.backup.id, sha256: r.backup.sha256, rowCounts: { policies: 2000, blobs: 100000 } });
    expect(stored.verifiedAt).toBeTruthy();
    // The server kept the SHA-256 of each part it checked (composite: two parts).
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${folder}/dump.pgcustom`, ChecksumMode: 'ENABLED' }));
    expect(head.ChecksumSHA256).toMatch(/-2$/);
  });

  it('retention applies the same policy to the objects: the oldest backup is deleted from the store too', async () => {
    backups.push((await run<DbBackupResult>('db-backup', { format: 'directory' })).backup);
    const third = await run<DbBackupResult>('db-backup', {});
    backups.push(third.backup);
    expect(third.deleted).toEqual([backups[0]!.id]);
    expect(await keysUnder(`${PREFIX}/app/${backups[0]!.id}/`)).toEqual([]);
    expect(existsSync(path.join(repo, 'app', backups[0]!.id))).toBe(false);
    const dirKeys = await keysUnder(`${PREFIX}/app/${backups[1]!.id}/`);
    expect(dirKeys).toContain(`${PREFIX}/app/${backups[1]!.id}/dump.d/toc.dat`);
    expect(dirKeys.at(-1)).toBe(`${PREFIX}/app/${backups[1]!.id}/manifest.json`);
  });

  it('a tampered object is refused on download, before any database is created', async () => {
    const tampered = backups[1]!;
    const key = `${PREFIX}/app/${tampered.id}/dump.d/toc.dat`;
    const good = Buffer.from(await getBytes(key));
    good[good.length - 20] = good[good.length - 20]! ^ 0xff;
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: good }));
    // This machine never had the files.
    await rm(path.join(repo, 'app'), { recursive: true, force: true });
    const before = await sql<{ datname: string }>(pgs.url, 'SELECT datname FROM pg_database ORDER BY 1');
    const err = await run('db-restore', { backupId: tampered.id, target: 'app_from_tampered' }).catch((e: unknown) => e);
    expect(failureText(err)).toMatch(
      new RegExp(`backup ${tampered.id} of app downloaded from s3://${BUCKET}/${PREFIX}/app/${tampered.id}/ is corrupt: sha256 [0-9a-f]{64} differs from its manifest's ${tampered.sha256}`),
    );
    expect(await sql<{ datname: string }>(pgs.url, 'SELECT datname FROM pg_database ORDER BY 1')).toEqual(before);
    expect(existsSync(path.join(repo, 'app', tampered.id))).toBe(false);
  });

  it('restore-drill on a machine without the local backups restores from the store and verifies the rows', async () => {
    await rm(path.join(repo, 'app'), { recursive: true, force: true });
    const newest = backups[2]!;
    const r = await run<RestoreDrillResult>('restore-drill', {}, loaded, 'app', 'restore-drill-object-storage');
    expect(r.ok).toBe(true);
    expect(r.logical).toMatchObject({
      backupId: newest.id,
      fetchedFrom: `s3://${BUCKET}/${PREFIX}/app/${newest.id}/`,
      counts: [
        { table: 'policies', expected: 2000, actual: 2000 },
        { table: 'blobs', expected: 100000, actual: 100000 },
      ],
    });
    expect(r.rtoSeconds).toBeGreaterThan(0);
    // The fetched copy is the one in the store, byte for byte; the scratch database is gone.
    expect(sha256(await getBytes(`${PREFIX}/app/${newest.id}/dump.pgcustom`))).toBe(newest.sha256);
    expect(existsSync(path.join(repo, 'app', newest.id, 'dump.pgcustom'))).toBe(true);
    const left = await sql<{ datname: string }>(pgs.url, `SELECT datname FROM pg_database WHERE datname LIKE 'app_drill_%'`);
    expect(left).toEqual([]);
  });
});

describe('PITR from object storage: base backups uploaded, WAL archived by `runbook wal push`', () => {
  let pg2: PgServer;
  let root: string;
  let ledgerUrl: string;
  let pitrConfig: LoadedConfig;
  const walKey = (name: string) => `${PREFIX}/ledger/wal/${name}`;
  const cli = () => runbookCli({ S3_ENDPOINT: s3.endpoint, S3_ACCESS_KEY_ID: s3.accessKeyId, S3_SECRET_ACCESS_KEY: s3.secretAccessKey });

  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'runbook-s3-pitr-'));
    // archive_command reads the credentials from an env file only the server's OS user can read.
    const envFile = path.join(root, 's3.env');
    await writeFile(envFile, `S3_ENDPOINT=${s3.endpoint}\nS3_ACCESS_KEY_ID=${s3.accessKeyId}\nS3_SECRET_ACCESS_KEY=${s3.secretAccessKey}\n`, { mode: 0o600 });
    if (process.getuid?.() === 0) {
      const id = async (flag: string) => Number((await execa('id', [flag, 'postgres'])).stdout);
      for (const p of [root, envFile]) await chown(p, await id('-u'), await id('-g'));
    }
    await chmod(root, 0o755);
    pg2 = await startPostgres({ settings: { autovacuum: 'off', archive_mode: 'on' } });
    ledgerUrl = await pg2.createDatabase('ledger');
    pitrConfig = await writeConfig(
      {
        environment: 's3pitr',
        services: [pgConfigService(pg2.url)],
        databases: [{ name: 'ledger', url: ledgerUrl, service: 'postgres' }],
        approvals: { approvers: { default: ['alice', 'bob'] } },
        databaseOps: {
          objectStorage: { endpoint: '${S3_ENDPOINT}', bucket: BUCKET, prefix: PREFIX, forcePathStyle: true, accessKeyId: '${S3_ACCESS_KEY_ID}', secretAccessKey: '${S3_SECRET_ACCESS_KEY}' },
          pitr: [
            {
              database: 'ledger',
              dataDir: pg2.dataDir,
              walArchive: path.join(root, 'wal'),
              baseBackups: path.join(root, 'base'),
              restoreDir: path.join(root, 'restore'),
              verifyTables: ['entries'],
              objectStorage: true,
            },
          ],
        },
      },
      root,
    );
    const runbook = path.resolve('bin/runbook.mjs');
    await sql(pg2.url, `ALTER SYSTEM SET archive_command = '${process.execPath} --env-file=${path.join(root, 's3.env')} ${runbook} wal push %p %f --database ledger --config ${pitrConfig.path}'`);
    await sql(pg2.url, 'SELECT pg_reload_conf()');
    await sql(ledgerUrl, 'CREATE TABLE entries (id int PRIMARY KEY, amount numeric NOT NULL)');
    await sql(ledgerUrl, 'INSERT INTO entries SELECT g, g * 1.5 FROM generate_series(1, 1000) g');
  }, 60_000);

  afterAll(async () => {
    await pg2?.stop();
    await rm(root, { recursive: true, force: true });
  });

  /** Switches to a new segment and waits until archive_command has put the old one in the store. */
  async function archiveCurrentWal(): Promise<string> {
    const f = (await sql<{ f: string }>(ledgerUrl, 'SELECT pg_walfile_name(pg_switch_wal()) AS f'))[0]!.f;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const a = (await sql<{ last: string | null; failed: string }>(ledgerUrl, 'SELECT last_archived_wal AS last, failed_count::text AS failed FROM pg_stat_archiver'))[0]!;
      if (a.last && a.last >= f) return f;
      if (Number(a.failed) > 0) throw new Error(`archive_command failed ${a.failed} time(s); server log:\n${await readFile(path.join(path.dirname(pg2.dataDir), 'postgres.log'), 'utf8').catch(() => '')}`);
      if (Date.now() > deadline) throw new Error(`${f} not archived after 30 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('db-base-backup uploads the base backup; archive_command puts each WAL segment in the store, checked', async () => {
    const r = await run<DbBaseBackupResult>('db-base-backup', {}, pitrConfig, 'ledger', 'db-base-backup-object-storage');
    expect(r.upload).toMatchObject({ location: `s3://${BUCKET}/${PREFIX}/ledger/base/${r.backup.id}/`, objects: 2, already: false });
    expect(r.progress.steps.map((s) => s.id)).toEqual(['plan', 'wal-check', 'base-backup', 'upload', 'retention', 'wal-retention']);
    // The only base backup is kept: nothing from its first segment on may go.
    expect(r.walRetention).toMatchObject({ keepFrom: r.backup.startWal, oldestBaseBackupId: r.backup.id });
    expect(await keysUnder(`${PREFIX}/ledger/base/${r.backup.id}/`)).toEqual([`${PREFIX}/ledger/base/${r.backup.id}/base.tar`, `${PREFIX}/ledger/base/${r.backup.id}/manifest.json`]);
    await sql(ledgerUrl, 'INSERT INTO entries SELECT g, g * 1.5 FROM generate_series(1001, 1500) g');
    const segment = await archiveCurrentWal();
    expect(await keysUnder(walKey(segment))).toEqual([walKey(segment)]);
    expect(existsSync(path.join(root, 'wal', segment))).toBe(false);

    // `runbook wal fetch` (a restore_command) gets the same bytes; a name the archive lacks exits 1.
    const dest = path.join(root, 'fetched');
    const fetched = await cli()('wal', 'fetch', segment, dest, '--database', 'ledger', '--config', pitrConfig.path);
    expect(fetched.exitCode, fetched.stderr).toBe(0);
    expect(sha256(await readFile(dest))).toBe(sha256(await getBytes(walKey(segment))));
    const missing = await cli()('wal', 'fetch', 'FFFFFFFF0000000000000001', dest, '--database', 'ledger', '--config', pitrConfig.path);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toMatch(/not in the archive/);
    // Another file under an archived name is refused, never overwritten.
    await writeFile(path.join(root, 'other'), 'not a WAL segment');
    const clash = await cli()('wal', 'push', path.join(root, 'other'), segment, '--database', 'ledger', '--config', pitrConfig.path);
    expect(clash.exitCode).toBe(1);
    expect(clash.stderr).toMatch(/already exists with other content/);
    expect(sha256(await getBytes(walKey(segment)))).toBe(sha256(await readFile(dest)));
  });

  it('restore-drill recovers base backup + WAL from the store on a machine without them', async () => {
    await rm(path.join(root, 'base'), { recursive: true, force: true });
    const r = await run<RestoreDrillResult>('restore-drill', {}, pitrConfig, 'ledger', 'restore-drill-pitr-object-storage');
    expect(r.pitr).toMatchObject({ counts: { entries: 1500 } });
    expect(r.logical).toBeNull();
    expect(existsSync(path.join(root, 'restore'))).toBe(true);
    expect((await execa('ls', [path.join(root, 'restore')])).stdout).toBe('');
  });
});
