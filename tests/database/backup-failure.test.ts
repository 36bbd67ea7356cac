import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackupManifest, DbBackupResult } from '../../common/database/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { startVersitygw, type S3Server } from '../fixtures/versitygw.js';
import { failureText, pgConfigService, sql } from './helpers.js';

/**
 * db-backup hashes pg_dump's output on its way to disk and, with object storage, uploads it at the
 * same time. A pg_dump that dies midway (its backend terminated while it copies a table, after the
 * TOC and some data were written) must fail the run and leave neither a dump nor a manifest, locally
 * or in the store, and no multipart upload behind.
 */

const BUCKET = 'runbook-backups-failure';
const PREFIX = 'prod/pg';

let pgs: PgServer;
let s3: S3Server;
let client: S3Client;
let appUrl: string;
let repo: string;
let loaded: LoadedConfig;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  [pgs, s3] = await Promise.all([startPostgres({ settings: { autovacuum: 'off' } }), startVersitygw()]);
  client = s3.client();
  await s3.createBucket(BUCKET);
  appUrl = await pgs.createDatabase('app');
  // Enough rows (about 40 MB of text) that pg_dump is still copying them when it is stopped.
  await sql(appUrl, `CREATE TABLE events (id int PRIMARY KEY, body text NOT NULL)`);
  await sql(appUrl, `INSERT INTO events SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) FROM generate_series(1, 400000) g`);
  repo = await mkdtemp(path.join(tmpdir(), 'runbook-backup-failure-'));
  env = { ...process.env, S3_ENDPOINT: s3.endpoint, S3_ACCESS_KEY_ID: s3.accessKeyId, S3_SECRET_ACCESS_KEY: s3.secretAccessKey };
  loaded = await writeConfig({
    environment: 'backupfail',
    services: [pgConfigService(pgs.url)],
    databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: {
      backups: { repository: repo, retention: 3, verifyTables: { app: ['events'] } },
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

async function backup(): Promise<DbBackupResult> {
  return withWorker(
    loaded,
    async ({ client: temporal, taskQueue }) => {
      const workflowId = `db-backup-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;
      return (await temporal.workflow.execute('db-backup', { taskQueue, workflowId, args: [{ database: 'app', requestedBy: 'alice' }] })) as DbBackupResult;
    },
    { env },
  );
}

/** Sizes of the dumps being written (`*.partial`) under the repository. */
async function partials(): Promise<number[]> {
  const dir = path.join(repo, 'app');
  if (!existsSync(dir)) return [];
  const out: number[] = [];
  for (const id of await readdir(dir)) {
    for (const f of await readdir(path.join(dir, id)).catch(() => [])) {
      if (f.endsWith('.partial')) out.push((await stat(path.join(dir, id, f)).catch(() => ({ size: 0 }))).size);
    }
  }
  return out;
}

async function storeContents(): Promise<{ keys: string[]; uploads: string[] }> {
  const objects = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${PREFIX}/` }));
  const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: `${PREFIX}/` }));
  return { keys: (objects.Contents ?? []).map((o) => o.Key!).sort(), uploads: (uploads.Uploads ?? []).map((u) => u.Key!) };
}

describe('db-backup when pg_dump fails midway', () => {
  it('fails the run naming pg_dump; no dump, no manifest, nothing in the store, no multipart upload left', async () => {
    // Every attempt's pg_dump is stopped once more than 1 MB of its output is on disk: its backend is
    // terminated while it runs COPY, so pg_dump exits non-zero after writing a TOC and part of the data.
    let running = true;
    const killedAt: number[] = [];
    const killer = (async () => {
      while (running) {
        const written = Math.max(0, ...(await partials()));
        if (written > 1024 * 1024) {
          const rows = await sql<{ pid: number }>(
            appUrl,
            `SELECT pg_terminate_backend(pid) AS ok, pid FROM pg_stat_activity WHERE application_name = 'pg_dump' AND query ILIKE 'COPY %'`,
          );
          if (rows.length > 0) killedAt.push(written);
        }
        await sleep(20);
      }
    })();
    const failed = await backup().then(
      () => undefined,
      (err: unknown) => err,
    );
    running = false;
    await killer;

    expect(failed).toBeDefined();
    const text = failureText(failed);
    expect(text).toMatch(/pg_dump/);
    expect(text).toMatch(/exit code 1/);
    expect(text).toMatch(/terminating connection|server closed the connection|connection to server/i);
    // Each of the activity's attempts was stopped midway, after data had reached the disk.
    expect(killedAt.length).toBeGreaterThanOrEqual(1);
    expect(Math.min(...killedAt)).toBeGreaterThan(1024 * 1024);

    // Nothing a restore could mistake for a backup: no folder, no dump, no manifest.
    const dir = path.join(repo, 'app');
    expect(existsSync(dir) ? await readdir(dir) : []).toEqual([]);
    // The store holds no object and no unfinished multipart upload.
    expect(await storeContents()).toEqual({ keys: [], uploads: [] });
  }, 60_000);

  it('afterwards a db-backup streams the dump to the store while writing it; both copies are the same bytes', async () => {
    const r = await backup();
    const m: BackupManifest = r.backup;
    expect(r.upload).toMatchObject({ duringDump: true, objects: 2, bytes: m.sizeBytes, already: false });
    expect(m.streamedTo?.key).toBe(`${PREFIX}/app/${m.id}/dump.pgcustom`);
    expect(r.verified.tocEntries).toBeGreaterThan(0);
    const verify = r.progress.steps.find((s) => s.id === 'verify');
    expect(verify?.detail).toMatch(/size and checksum ok, \d+ TOC entries/);
    expect((await storeContents()).keys).toEqual([`${PREFIX}/app/${m.id}/dump.pgcustom`, `${PREFIX}/app/${m.id}/manifest.json`]);
    // The dump written through a pipe restores, in parallel too.
    const file = path.join(repo, 'app', m.id, 'dump.pgcustom');
    await sql(appUrl.replace(/\/app(\?|$)/, '/postgres$1'), 'CREATE DATABASE restored');
    await execa(path.join(pgs.binDir, 'pg_restore'), ['--no-password', '--exit-on-error', '--jobs=2', `--dbname=${appUrl.replace(/\/app(\?|$)/, '/restored$1')}`, file]);
    const [n] = await sql<{ n: string }>(appUrl.replace(/\/app(\?|$)/, '/restored$1'), 'SELECT count(*) AS n FROM events');
    expect(Number(n!.n)).toBe(400000);
  }, 60_000);
});
