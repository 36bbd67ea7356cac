import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { WorkflowHandle } from '@temporalio/client';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbVolumeBackupResult, DbVolumeRestoreResult } from '../../common/database/types.js';
import { approveUpdate, pendingApprovalQuery, rejectUpdate } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { containerEngineMissing, CONTAINERS_REQUIRED, startContainerEngine, type ContainerEngine } from '../fixtures/containers.js';
import { testClient, uniqueQueue, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort } from '../fixtures/servers.js';
import { killWorkers, spawnWorker } from '../fixtures/worker-process.js';
import { failureText, sql, tableDigest, waitForPending } from './helpers.js';

/**
 * db-backup / db-restore with `mode: "docker-volume"` against a real container engine: Podman's
 * Docker API with the docker CLI, PostgreSQL 15 in a container whose data directory is a named
 * volume, its compose service driven by docker-compose 1.29 (the driver's `command:
 * ['docker-compose']`, as on a Debian 12 host). The tar containers run the locally built Debian
 * base image.
 * What the user checks is what is asserted: the tables' contents (md5) after a restore, the
 * containers that were (not) stopped, the tarballs on disk.
 */

const missing = containerEngineMissing();
const FAKE_APP = fileURLToPath(new URL('./fake-app.mjs', import.meta.url));

let engine: ContainerEngine;
let tmp: string;
let repo: string;
let composeFile: string;
let project: string;
let volume: string;
let appUrl: string;
let apiPort: number;
let loaded: LoadedConfig;
let backupId: string;
/** md5 of each table when the backup was taken. */
let atBackup: Record<string, string>;

const apiCmd = (action: string) => [process.execPath, FAKE_APP, action, tmp, String(apiPort)];
/** The fake app's start/stop lines: a new line means the runbook stopped or started it. */
const appActions = async () => (await readFile(path.join(tmp, 'actions.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
const sha256 = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

/** The PostgreSQL container of the compose service: id, running, and when it last started. */
async function pgContainer(): Promise<{ id: string; running: boolean; startedAt: string }> {
  const id = (await engine.compose(['-f', composeFile, '-p', project, 'ps', '-q', 'postgres'])).stdout.trim();
  const [running, startedAt] = (await engine.docker(['inspect', '--format', '{{.State.Running}} {{.State.StartedAt}}', id])).stdout.trim().split(' ');
  return { id, running: running === 'true', startedAt: startedAt! };
}

/** Throwaway containers of the runbook (runbook-tar-…, runbook-wipe-…, runbook-untar-…), running or not. */
async function runbookContainers(): Promise<string[]> {
  const r = await engine.docker(['ps', '-a', '--filter', 'name=runbook-', '--format', '{{.Names}}']);
  return r.stdout.split('\n').filter((n) => /^runbook-(tar|wipe|untar)-/.test(n));
}

async function waitForPostgres(): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await sql(appUrl, 'SELECT 1');
      return;
    } catch (err) {
      if (i > 150) throw err;
      await sleep(200);
    }
  }
}

async function digests(tables: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const t of tables) out[t] = await tableDigest(appUrl, t);
  return out;
}

/** What a restore must undo: changed, deleted and added rows, and a dropped table. */
async function damage(): Promise<void> {
  await sql(appUrl, "DROP TABLE claims; UPDATE policies SET holder = 'changed' WHERE id % 7 = 0; DELETE FROM policies WHERE id > 900; INSERT INTO policies VALUES (5001, 'late', 1)");
}

/** Each activity the run started, with the attempt that ended it (history keeps only the last attempt's start). */
async function activityAttempts(workflowId: string): Promise<Array<{ type: string; attempt: number }>> {
  const history = await (await testClient()).workflow.getHandle(workflowId).fetchHistory();
  const events = history.events ?? [];
  return events.flatMap((e) => {
    const s = e.activityTaskStartedEventAttributes;
    const scheduled = s && events.find((x) => x.eventId?.toString() === s.scheduledEventId?.toString());
    return s && scheduled ? [{ type: scheduled.activityTaskScheduledEventAttributes!.activityType!.name!, attempt: s.attempt ?? 1 }] : [];
  });
}

const tarList = async (file: string) => (await execa('tar', ['-tzf', file])).stdout.split('\n');

describe.skipIf(missing !== undefined && !CONTAINERS_REQUIRED)('db-backup / db-restore mode docker-volume, real container engine', () => {
  beforeAll(async () => {
    if (missing) throw new Error(missing);
    engine = await startContainerEngine({ images: ['postgres'] });
    tmp = await mkdtemp(path.join(tmpdir(), 'runbook-volume-real-'));
    repo = path.join(tmp, 'volumes', 'app');
    composeFile = path.join(tmp, 'docker-compose.unified.yml');
    project = engine.project('vol');
    volume = engine.name('pgdata');
    const port = await freePort();
    apiPort = await freePort();
    appUrl = `postgres://postgres@127.0.0.1:${port}/app`;
    await engine.docker(['volume', 'create', ...engine.labelArgs, volume]);
    // Fulcrum's shape: the database's data directory in a named volume of the compose project.
    await writeFile(
      composeFile,
      [
        "version: '3.7'",
        'services:',
        '  postgres:',
        `    image: ${engine.images.postgres}`,
        '    environment:',
        '      POSTGRES_DB: app',
        `    ports: ['127.0.0.1:${port}:5432']`,
        '    volumes: [pgdata:/var/lib/postgresql/data]',
        'volumes:',
        '  pgdata:',
        '    external: true',
        `    name: ${volume}`,
        '',
      ].join('\n'),
    );
    await engine.compose(['-f', composeFile, '-p', project, 'up', '-d', 'postgres']);
    await waitForPostgres();
    await sql(appUrl, "CREATE TABLE policies (id int PRIMARY KEY, holder text NOT NULL, premium int NOT NULL); INSERT INTO policies SELECT g, 'holder-' || g, g * 3 FROM generate_series(1, 1000) g");
    await sql(appUrl, 'CREATE TABLE claims (id int PRIMARY KEY, policy int REFERENCES policies, amount numeric); INSERT INTO claims SELECT g, g % 1000 + 1, g * 1.5 FROM generate_series(1, 2000) g');
    loaded = await writeConfig(
      {
        environment: 'volreal',
        services: [
          {
            name: 'postgres',
            group: 'infra',
            // Debian 12 packages Compose v1 only: the driver's command says so.
            driver: { type: 'compose', file: 'docker-compose.unified.yml', service: 'postgres', project, command: ['docker-compose'] },
            probes: [{ type: 'postgres', url: appUrl }],
          },
          {
            name: 'api',
            group: 'apps',
            driver: { type: 'command', start: apiCmd('start'), stop: apiCmd('stop'), status: apiCmd('status') },
            probes: [{ type: 'http', url: `http://127.0.0.1:${apiPort}/` }],
          },
        ],
        stack: { groups: [{ name: 'infra', waitTimeoutSeconds: 60 }, { name: 'apps', waitTimeoutSeconds: 30 }], pollIntervalSeconds: 0.2 },
        databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
        approvals: { approvers: { default: ['alice', 'bob'] } },
        databaseOps: {
          backups: { repository: 'dumps', verifyTables: { app: ['policies', 'claims'] } },
          volumes: [{ database: 'app', volume, repository: 'volumes', image: engine.images.base }],
        },
      },
      tmp,
    );
    await execa(process.execPath, apiCmd('start').slice(1));
  }, 240_000);

  afterAll(async () => {
    killWorkers();
    if (tmp) await execa(process.execPath, apiCmd('stop').slice(1)).catch(() => undefined);
    if (engine) {
      for (const n of await runbookContainers().catch(() => [])) await engine.docker(['rm', '-f', n], { allowFailure: true });
      await engine.compose(['-f', composeFile, '-p', project, 'down'], { allowFailure: true });
      await engine.stop();
    }
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('db-backup: the apps and the database container stop, a throwaway container tars the volume, everything starts again', async () => {
    atBackup = await digests(['policies', 'claims']);
    const before = await pgContainer();
    const r = await withWorker(
      loaded,
      ({ client, taskQueue }) =>
        client.workflow.execute('db-backup', { taskQueue, workflowId: `volreal-backup-${Date.now()}`, args: [{ database: 'app', mode: 'docker-volume', requestedBy: 'alice' }] }) as Promise<DbVolumeBackupResult>,
      { env: engine.env },
    );
    backupId = r.backup.id;
    const file = path.join(repo, `${backupId}.tar.gz`);
    expect(r.backup).toMatchObject({ database: 'app', volume, rowCounts: { policies: 1000, claims: 2000 } });
    expect(r.backup.sha256).toBe(await sha256(file));
    expect(await readFile(`${file}.sha256`, 'utf8')).toBe(`${r.backup.sha256}  ${backupId}.tar.gz\n`);
    // A cold copy of the whole data directory, owners kept by number.
    const entries = await tarList(file);
    expect(entries).toEqual(expect.arrayContaining(['./PG_VERSION', './global/pg_control', './pg_wal/']));
    // Mounted `ro`: podman refuses Docker's `readonly` spelling.
    expect(r.commands.some((c) => c.includes(`--mount type=volume,source=${volume},target=/data,ro `))).toBe(true);
    // The database container was really stopped and started again; the data is served as before.
    const after = await pgContainer();
    expect(after.id).toBe(before.id);
    expect(after.running).toBe(true);
    expect(after.startedAt).not.toBe(before.startedAt);
    expect(await digests(['policies', 'claims'])).toEqual(atBackup);
    expect((await appActions()).slice(-2)).toEqual(['stop', 'start']);
    expect(await runbookContainers()).toEqual([]);
  }, 60_000);

  it('bad tarballs are refused before anything stops: missing, no checksum file, a checksum mismatch, a truncated copy summed again, an archive without a data directory', async () => {
    const good = path.join(repo, `${backupId}.tar.gz`);
    const goodSum = (await readFile(`${good}.sha256`, 'utf8')).split(' ')[0]!;
    // One byte changed in the middle, the original checksum beside it.
    await copyFile(good, path.join(repo, 'flipped.tar.gz'));
    const bytes = await readFile(path.join(repo, 'flipped.tar.gz'));
    const middle = bytes.length >> 1;
    bytes[middle] = bytes[middle]! ^ 0xff;
    await writeFile(path.join(repo, 'flipped.tar.gz'), bytes);
    await writeFile(path.join(repo, 'flipped.tar.gz.sha256'), `${goodSum}  flipped.tar.gz\n`);
    // Cut short (a copy that ran out of disk), then summed again: the checksum alone passes.
    await copyFile(good, path.join(repo, 'truncated.tar.gz'));
    await truncate(path.join(repo, 'truncated.tar.gz'), Math.floor(bytes.length / 2));
    await writeFile(path.join(repo, 'truncated.tar.gz.sha256'), `${await sha256(path.join(repo, 'truncated.tar.gz'))}  truncated.tar.gz\n`);
    // A valid tarball of the wrong thing.
    const other = path.join(tmp, 'not-a-data-dir');
    await mkdir(other, { recursive: true });
    await writeFile(path.join(other, 'notes.txt'), 'not PostgreSQL');
    await execa('tar', ['-czf', path.join(repo, 'notes.tar.gz'), '-C', other, '.']);
    await writeFile(path.join(repo, 'notes.tar.gz.sha256'), `${await sha256(path.join(repo, 'notes.tar.gz'))}  notes.tar.gz\n`);
    // And no checksum file at all.
    await copyFile(good, path.join(repo, 'unsummed.tar.gz'));

    const before = await pgContainer();
    const actions = await appActions();
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        for (const [id, why] of [
          ['nope', /backupId: no tarball nope\.tar\.gz in .*volumes\/app \(have: .*\); nothing was stopped/],
          ['unsummed', /unsummed\.tar\.gz has no usable checksum file unsummed\.tar\.gz\.sha256: .*sha256sum unsummed\.tar\.gz > unsummed\.tar\.gz\.sha256.*nothing was stopped/],
          ['flipped', /tarball .*flipped\.tar\.gz is corrupt or was changed: its sha256 [0-9a-f]{64} differs from flipped\.tar\.gz\.sha256.*nothing was stopped/],
          ['truncated', /tarball .*truncated\.tar\.gz cannot be read to its end \(unexpected end of file\): it is truncated or not a gzip-compressed tar; nothing was stopped/],
          ['notes', /tarball .*notes\.tar\.gz holds no PostgreSQL data directory \(PG_VERSION beside global\/pg_control\) in its 2 entries; nothing was stopped/],
        ] as const) {
          const handle = await client.workflow.start('db-restore', {
            taskQueue,
            workflowId: `volreal-corrupt-${id}-${Date.now()}`,
            args: [{ database: 'app', mode: 'docker-volume', backupId: id, requestedBy: 'alice' }],
          });
          expect(failureText(await handle.result().catch((e: unknown) => e))).toMatch(why);
          expect(await handle.query(pendingApprovalQuery)).toBeNull();
        }
      },
      { env: engine.env },
    );
    expect(await pgContainer()).toEqual(before);
    expect(await appActions()).toEqual(actions);
    expect(await runbookContainers()).toEqual([]);
    expect((await readdir(repo)).filter((f) => f.startsWith('pre-restore-'))).toEqual([]);
    for (const f of ['flipped', 'truncated', 'notes', 'unsummed']) for (const ext of ['.tar.gz', '.tar.gz.sha256']) await rm(path.join(repo, f + ext), { force: true });
  }, 60_000);

  it('db-restore rejected: nothing stops, no container runs, the changed data stays', async () => {
    await sql(appUrl, "UPDATE policies SET premium = premium + 1 WHERE id = 1");
    const changed = await tableDigest(appUrl, 'policies');
    const before = await pgContainer();
    const actions = await appActions();
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('db-restore', { taskQueue, workflowId: `volreal-reject-${Date.now()}`, args: [{ database: 'app', mode: 'docker-volume', requestedBy: 'alice' }] });
        // The newest tarball db-backup made, by default.
        const pending = await waitForPending(handle);
        expect(pending.summary).toContain(`with ${backupId}.tar.gz`);
        expect(pending.summary).toMatch(/Stops api, postgres; the current contents are first saved as pre-restore-\S+\.tar\.gz/);
        await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', comment: 'wrong tarball', step: 'approve-replace' }] });
        expect(failureText(await handle.result().catch((e: unknown) => e))).toMatch(/rejected by bob: wrong tarball; nothing was stopped or restored/);
      },
      { env: engine.env },
    );
    expect(await pgContainer()).toEqual(before);
    expect(await appActions()).toEqual(actions);
    expect(await runbookContainers()).toEqual([]);
    expect(await tableDigest(appUrl, 'policies')).toBe(changed);
  }, 30_000);

  it('db-restore: change and drop data, nothing stops before the approval, then the volume is replaced and every table is back (md5)', async () => {
    await damage();
    const damaged = await tableDigest(appUrl, 'policies');
    expect(damaged).not.toBe(atBackup.policies);
    const before = await pgContainer();
    const actions = await appActions();
    const r = await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('db-restore', {
          taskQueue,
          workflowId: `volreal-restore-${Date.now()}`,
          args: [{ database: 'app', mode: 'docker-volume', backupId, requestedBy: 'alice' }],
        });
        const pending = await waitForPending(handle);
        expect(pending).toMatchObject({ step: 'approve-replace', confirmPhrase: 'REPLACE', destructive: true });
        expect(pending.summary).toContain(`Docker volume ${volume}`);
        // While the approval waits: the same container still serving the changed data, the app untouched, no tar container.
        await sleep(1000);
        expect(await pgContainer()).toEqual(before);
        expect(await tableDigest(appUrl, 'policies')).toBe(damaged);
        expect(await appActions()).toEqual(actions);
        expect(await runbookContainers()).toEqual([]);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'REPLACE', step: 'approve-replace' }] });
        return (await handle.result()) as DbVolumeRestoreResult;
      },
      { env: engine.env },
    );
    expect(r).toMatchObject({ ok: true, mode: 'docker-volume', backupId, volume });
    expect(r.counts).toEqual([
      { table: 'policies', expected: 1000, actual: 1000 },
      { table: 'claims', expected: 2000, actual: 2000 },
    ]);
    expect(await digests(['policies', 'claims'])).toEqual(atBackup);
    expect((await pgContainer()).startedAt).not.toBe(before.startedAt);
    // The contents it replaced were kept: a restorable tarball with its checksum.
    const kept = path.join(repo, `${r.keptAs}.tar.gz`);
    expect(await readFile(`${kept}.sha256`, 'utf8')).toBe(`${await sha256(kept)}  ${r.keptAs}.tar.gz\n`);
    expect(await tarList(kept)).toContain('./PG_VERSION');
    expect(r.commands.some((c) => /docker run --name runbook-untar-[0-9a-f]{16} --network none --mount type=volume,source=\S+,target=\/data --mount type=bind,source=\S+,target=\/backup,ro /.test(c))).toBe(true);
    expect((await appActions()).slice(actions.length)).toEqual(['stop', 'start']);
    expect(await runbookContainers()).toEqual([]);
  }, 60_000);

  it('a worker SIGKILLed while the volume is being emptied or unpacked: a new worker redoes the step and the tables are back (md5)', async () => {
    await damage();
    const taskQueue = uniqueQueue('volreal-crash');
    const first = await spawnWorker(loaded.path, taskQueue, { env: engine.env, detached: true });
    const client = await testClient();
    const handle: WorkflowHandle = await client.workflow.start('db-restore', {
      taskQueue,
      workflowId: `volreal-crash-${Date.now()}`,
      args: [{ database: 'app', mode: 'docker-volume', backupId, requestedBy: 'alice' }],
    });
    await waitForPending(handle);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'REPLACE', step: 'approve-replace' }] });
    let seen: string[] = [];
    for (let i = 0; i < 1200 && !seen.some((n) => /^runbook-(wipe|untar)-/.test(n)); i++) {
      seen = await runbookContainers();
      if (seen.length === 0) await sleep(20);
    }
    expect(seen.some((n) => /^runbook-(wipe|untar)-/.test(n))).toBe(true);
    // The worker and the docker CLI it runs die together, as when its container is killed.
    process.kill(-first.child.pid!, 'SIGKILL');
    await first.exited;

    const r = await withWorker(loaded, async () => (await handle.result()) as DbVolumeRestoreResult, { env: engine.env, taskQueue });
    expect(r.ok).toBe(true);
    expect(await digests(['policies', 'claims'])).toEqual(atBackup);
    const started = await activityAttempts(handle.workflowId);
    // Emptied and unpacked again by the new worker; the volume was stopped and saved only once.
    expect(started.find((a) => a.type === 'untarVolume')!.attempt).toBeGreaterThanOrEqual(2);
    expect(started.filter((a) => a.type === 'tarVolume').map((a) => a.attempt)).toEqual([1]);
    expect(await runbookContainers()).toEqual([]);
  }, 90_000);

  it('Fulcrum 8.2 point-in-time recovery from a tarball made by hand the runbook’s way (docker run … tar czf), no manifest', async () => {
    // Fulcrum: stop, `docker run --rm -v fulcrum-postgres-data:/data -v $(pwd):/backup alpine tar czf …`, start.
    await sql(appUrl, "INSERT INTO policies VALUES (7001, 'point-in-time', 9)");
    const atPoint = await digests(['policies', 'claims']);
    await engine.compose(['-f', composeFile, '-p', project, 'stop', 'postgres']);
    await engine.docker(['run', '--rm', ...engine.labelArgs, '-v', `${volume}:/data:ro`, '-v', `${repo}:/backup`, engine.images.base, 'tar', '-czf', '/backup/postgres-backup.tar.gz', '-C', '/data', '.']);
    await engine.compose(['-f', composeFile, '-p', project, 'up', '-d', 'postgres']);
    await waitForPostgres();
    // Through podman's API `docker run --rm` exits 0 even on failure: the file is the evidence.
    expect(existsSync(path.join(repo, 'postgres-backup.tar.gz'))).toBe(true);
    await execa('sha256sum', ['postgres-backup.tar.gz'], { cwd: repo }).then((s) => writeFile(path.join(repo, 'postgres-backup.tar.gz.sha256'), `${s.stdout}\n`));
    await sql(appUrl, "DELETE FROM claims WHERE id > 10; UPDATE policies SET premium = 0; DROP TABLE policies CASCADE");

    const r = await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('db-restore', {
          taskQueue,
          workflowId: `volreal-pitr-${Date.now()}`,
          args: [{ database: 'app', mode: 'docker-volume', backupId: 'postgres-backup', requestedBy: 'alice' }],
        });
        await waitForPending(handle);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'REPLACE', step: 'approve-replace' }] });
        return (await handle.result()) as DbVolumeRestoreResult;
      },
      { env: engine.env },
    );
    // No manifest: the verified tables only have to exist, and the contents are those of the point.
    expect(r.counts.map((c) => c.table)).toEqual(['policies', 'claims']);
    expect(await digests(['policies', 'claims'])).toEqual(atPoint);
    expect(await runbookContainers()).toEqual([]);
  }, 60_000);

  it('an unpack that fails in the container fails the run (not exit 0 as `docker run --rm` on Podman 4.3 would report); the database stays stopped and the pre-restore tarball brings it back', async () => {
    // It passes every check made before anything stops (checksum, read to its end, a data
    // directory), then fails in the container: its last entry is a hard link to a file it lacks.
    const dir = path.join(tmp, 'dangling');
    await mkdir(path.join(dir, 'global'), { recursive: true });
    await writeFile(path.join(dir, 'PG_VERSION'), '15\n');
    await writeFile(path.join(dir, 'global', 'pg_control'), 'control');
    await writeFile(path.join(dir, 'a'), 'linked');
    await execa('ln', [path.join(dir, 'a'), path.join(dir, 'b')]);
    const tarPath = path.join(tmp, 'dangling.tar');
    await execa('tar', ['-cf', tarPath, '-C', dir, './PG_VERSION', './global', './a', './b']);
    await execa('tar', ['--delete', '-f', tarPath, './a']);
    await execa('gzip', ['-f', tarPath]);
    await copyFile(`${tarPath}.gz`, path.join(repo, 'dangling.tar.gz'));
    await writeFile(path.join(repo, 'dangling.tar.gz.sha256'), `${await sha256(path.join(repo, 'dangling.tar.gz'))}  dangling.tar.gz\n`);
    const before = await digests(['policies', 'claims']);

    const restore = (backupId: string, started?: (workflowId: string) => void) =>
      withWorker(
        loaded,
        async ({ client, taskQueue }) => {
          const handle = await client.workflow.start('db-restore', { taskQueue, workflowId: `volreal-${backupId}-${Date.now()}`, args: [{ database: 'app', mode: 'docker-volume', backupId, requestedBy: 'alice' }] });
          started?.(handle.workflowId);
          await waitForPending(handle);
          await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'REPLACE', step: 'approve-replace' }] });
          return (await handle.result().catch((e: unknown) => e)) as DbVolumeRestoreResult | Error;
        },
        { env: engine.env },
      );
    let failedId = '';
    const failed = await restore('dangling', (id) => (failedId = id));
    expect(failureText(failed)).toMatch(/restoring volume \S+: command failed \(exit code 2\): docker run --name runbook-untar-.*Cannot hard link to .\.\/a/s);
    // tar's own exit code: not retried (the same archive fails the same way).
    expect((await activityAttempts(failedId)).filter((a) => a.type === 'untarVolume')).toEqual([{ type: 'untarVolume', attempt: 1 }]);
    // A half-restored data directory is not started: the container stays stopped, the app too.
    expect((await pgContainer()).running).toBe(false);
    expect((await appActions()).at(-1)).toBe('stop');
    expect(await runbookContainers()).toEqual([]);
    const kept = (await readdir(repo)).filter((f) => f.startsWith('pre-restore-') && f.endsWith('.tar.gz')).sort();
    const newest = kept.at(-1)!.slice(0, -'.tar.gz'.length);

    const back = await restore(newest);
    expect(back).toMatchObject({ ok: true, backupId: newest });
    expect(await digests(['policies', 'claims'])).toEqual(before);
    for (const ext of ['.tar.gz', '.tar.gz.sha256']) await rm(path.join(repo, `dangling${ext}`));
  }, 90_000);
});
