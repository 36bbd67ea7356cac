import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbVolumeBackupResult, DbVolumeRestoreResult, VolumeBackupManifest } from '../../common/database/types.js';
import { approveUpdate, pendingApprovalQuery, rejectUpdate } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { createRecordingCli, type RecordingCli } from '../fixtures/recording-cli.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort, startPostgres, type PgServer } from '../fixtures/servers.js';
import { failureText, sql, waitForPending } from './helpers.js';

/**
 * The Docker-volume variant of db-backup / db-restore. No Docker engine runs here: `docker`
 * is the recording stand-in, so what is asserted is the exact argv sequence the compose
 * driver and the tar containers run, and that nothing runs when it must not. The database
 * the runbook verifies is a real PostgreSQL (it stays up while the stand-in "stops" it).
 */

const FAKE_APP = fileURLToPath(new URL('./fake-app.mjs', import.meta.url));
const VOLUME = 'fulcrum-postgres-data';
const TARBALL_BYTES = 'the volume, as tar czf would have written it';

let tmp: string;
let repo: string;
let composeFile: string;
let pgs: PgServer;
let appUrl: string;
let apiPort: number;
let docker: RecordingCli;
let env: NodeJS.ProcessEnv;
let loaded: LoadedConfig;
let backupId: string;

const apiCmd = (action: string) => [process.execPath, FAKE_APP, action, tmp, String(apiPort)];
const apiPid = async () => readFile(path.join(tmp, `fake-app-${apiPort}.pid`), 'utf8').catch(() => null);
const apiRunning = async () => (await execa(process.execPath, apiCmd('status').slice(1), { reject: false })).exitCode === 0;
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

const compose = (...args: string[]) => ['compose', '-f', composeFile, ...args];
const tarContainer = (mounts: string[], ...command: string[]) => ['run', '--rm', '--network', 'none', ...mounts, 'alpine:3.20', ...command];
const volumeMount = (readonly: boolean) => ['--mount', `type=volume,source=${VOLUME},target=/data${readonly ? ',readonly' : ''}`];
const backupMount = (readonly: boolean) => ['--mount', `type=bind,source=${repo},target=/backup${readonly ? ',readonly' : ''}`];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'runbook-volume-'));
  repo = path.join(tmp, 'volumes', 'app');
  composeFile = path.join(tmp, 'docker-compose.unified.yml');
  pgs = await startPostgres({ settings: { autovacuum: 'off' } });
  appUrl = await pgs.createDatabase('app');
  await sql(appUrl, 'CREATE TABLE policies (id int PRIMARY KEY); INSERT INTO policies SELECT generate_series(1, 3)');
  apiPort = await freePort();
  docker = await createRecordingCli('docker');
  // The tar container writes into the bind-mounted repository: the stand-in does the same.
  await docker.respond([{ when: ['czf'], writes: { afterArg: 'czf', from: '/backup', to: repo, content: TARBALL_BYTES } }]);
  env = { ...process.env, PATH: docker.path };
  loaded = await writeConfig(
    {
      environment: 'voltest',
      services: [
        { name: 'postgres', group: 'infra', driver: { type: 'compose', file: 'docker-compose.unified.yml', service: 'postgres' }, probes: [{ type: 'postgres', url: appUrl }] },
        {
          name: 'api',
          group: 'apps',
          driver: { type: 'command', start: apiCmd('start'), stop: apiCmd('stop'), status: apiCmd('status') },
          probes: [{ type: 'http', url: `http://127.0.0.1:${apiPort}/` }],
        },
      ],
      stack: { groups: [{ name: 'infra', waitTimeoutSeconds: 30 }, { name: 'apps', waitTimeoutSeconds: 30 }], pollIntervalSeconds: 0.2 },
      databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
      approvals: { approvers: { default: ['alice', 'bob'] } },
      databaseOps: {
        backups: { repository: 'dumps', verifyTables: { app: ['policies'] } },
        volumes: [{ database: 'app', volume: VOLUME, repository: 'volumes' }],
      },
    },
    tmp,
  );
  await execa(process.execPath, apiCmd('start').slice(1));
});

afterAll(async () => {
  await execa(process.execPath, apiCmd('stop').slice(1)).catch(() => undefined);
  await pgs?.stop();
  await docker?.remove();
  await rm(tmp, { recursive: true, force: true });
});

describe('db-backup, mode docker-volume', () => {
  it('stops the apps and the compose service, tars the volume in a throwaway container, starts them again; sha256 and manifest', async () => {
    await docker.clear();
    const pidBefore = await apiPid();
    const r = await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const workflowId = `db-volume-backup-${Date.now()}`;
        const res = (await client.workflow.execute('db-backup', { taskQueue, workflowId, args: [{ database: 'app', mode: 'docker-volume', requestedBy: 'alice' }] })) as DbVolumeBackupResult;
        await recordHistory(client, workflowId, 'db-backup-volume');
        return res;
      },
      { env },
    );
    backupId = r.backup.id;
    const name = `${backupId}.tar.gz`;
    expect(await docker.calls()).toEqual([
      compose('stop', 'postgres'),
      tarContainer([...volumeMount(true), ...backupMount(false)], 'tar', 'czf', `/backup/${name}.partial`, '-C', '/data', '.'),
      compose('up', '-d', 'postgres'),
    ]);
    expect(r.mode).toBe('docker-volume');
    expect(r.backup).toMatchObject({ database: 'app', volume: VOLUME, file: name, sha256: sha256(TARBALL_BYTES), rowCounts: { policies: 3 } });
    expect(await readFile(path.join(repo, `${name}.sha256`), 'utf8')).toBe(`${sha256(TARBALL_BYTES)}  ${name}\n`);
    expect((JSON.parse(await readFile(path.join(repo, `${backupId}.json`), 'utf8')) as VolumeBackupManifest).id).toBe(backupId);
    expect(existsSync(path.join(repo, `${name}.partial`))).toBe(false);
    // The app was stopped around the copy (a new process now) and is serving again.
    expect(await apiPid()).not.toBe(pidBefore);
    expect(await apiRunning()).toBe(true);
  });
});

describe('db-restore, mode docker-volume (Fulcrum: stop, restore the volume from a tarball, start)', () => {
  it('a missing tarball or a wrong checksum is refused before anything stops or runs', async () => {
    await docker.clear();
    await writeFile(path.join(repo, 'handmade.tar.gz'), 'tampered bytes');
    await writeFile(path.join(repo, 'handmade.tar.gz.sha256'), `${sha256('the original bytes')}  handmade.tar.gz\n`);
    await writeFile(path.join(repo, 'unsummed.tar.gz'), 'bytes without a checksum file');
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        for (const [backupId, why] of [
          ['nope', /backupId: no tarball nope\.tar\.gz in .*volumes\/app \(have: .*\); nothing was stopped/],
          ['handmade', /tarball .*handmade\.tar\.gz is corrupt or was changed: its sha256 [0-9a-f]{64} differs from handmade\.tar\.gz\.sha256 .*nothing was stopped/],
          ['unsummed', /unsummed\.tar\.gz has no usable checksum file unsummed\.tar\.gz\.sha256: .*sha256sum unsummed\.tar\.gz > unsummed\.tar\.gz\.sha256.*nothing was stopped/],
        ] as const) {
          const handle = await client.workflow.start('db-restore', {
            taskQueue,
            workflowId: `db-volume-refused-${backupId}-${Date.now()}`,
            args: [{ database: 'app', mode: 'docker-volume', backupId, requestedBy: 'alice' }],
          });
          expect(failureText(await handle.result().catch((e: unknown) => e))).toMatch(why);
          expect(await handle.query(pendingApprovalQuery)).toBeNull();
        }
      },
      { env },
    );
    expect(await docker.calls()).toEqual([]);
    expect(await apiRunning()).toBe(true);
    for (const f of ['handmade.tar.gz', 'handmade.tar.gz.sha256', 'unsummed.tar.gz']) await rm(path.join(repo, f));
  });

  it('rejected: nothing is stopped and no container runs', async () => {
    await docker.clear();
    const pidBefore = await apiPid();
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('db-restore', { taskQueue, workflowId: `db-volume-reject-${Date.now()}`, args: [{ database: 'app', mode: 'docker-volume', requestedBy: 'alice' }] });
        const pending = await waitForPending(handle);
        // The newest tarball db-backup made, by default; nothing runs while the approval waits.
        expect(pending).toMatchObject({ step: 'approve-replace', confirmPhrase: 'REPLACE', destructive: true });
        expect(pending.summary).toContain(`with ${backupId}.tar.gz`);
        expect(pending.summary).toMatch(/Stops api, postgres; the current contents are first saved as pre-restore-\S+\.tar\.gz/);
        expect(await docker.calls()).toEqual([]);
        await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', comment: 'wrong tarball', step: 'approve-replace' }] });
        expect(failureText(await handle.result().catch((e: unknown) => e))).toMatch(/rejected by bob: wrong tarball; nothing was stopped or restored/);
      },
      { env },
    );
    expect(await docker.calls()).toEqual([]);
    expect(await apiPid()).toBe(pidBefore);
    expect(await apiRunning()).toBe(true);
  });

  it('approved: stop, keep the current volume, empty it, unpack the tarball, start, healthy, tables verified, apps back', async () => {
    await docker.clear();
    const r = await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const handle = await client.workflow.start('db-restore', {
          taskQueue,
          workflowId: `db-volume-restore-${Date.now()}`,
          args: [{ database: 'app', mode: 'docker-volume', backupId, requestedBy: 'alice' }],
        });
        await waitForPending(handle);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'REPLACE', step: 'approve-replace' }] });
        const res = (await handle.result()) as DbVolumeRestoreResult;
        await recordHistory(client, handle.workflowId, 'db-restore-volume');
        return res;
      },
      { env },
    );
    expect(r).toMatchObject({ ok: true, mode: 'docker-volume', backupId, volume: VOLUME });
    expect(r.keptAs).toMatch(/^pre-restore-\d{8}T\d{6}Z-[0-9a-f]{8}$/);
    expect(await docker.calls()).toEqual([
      compose('stop', 'postgres'),
      tarContainer([...volumeMount(true), ...backupMount(false)], 'tar', 'czf', `/backup/${r.keptAs}.tar.gz.partial`, '-C', '/data', '.'),
      tarContainer(volumeMount(false), 'find', '/data', '-mindepth', '1', '-delete'),
      tarContainer([...volumeMount(false), ...backupMount(true)], 'tar', 'xzf', `/backup/${backupId}.tar.gz`, '-C', '/data'),
      compose('up', '-d', 'postgres'),
    ]);
    expect(r.counts).toEqual([{ table: 'policies', expected: 3, actual: 3 }]);
    // The pre-restore copy is a tarball like any other: restorable, with its checksum.
    expect(await readFile(path.join(repo, `${r.keptAs}.tar.gz.sha256`), 'utf8')).toBe(`${sha256(TARBALL_BYTES)}  ${r.keptAs}.tar.gz\n`);
    expect(await apiRunning()).toBe(true);
    expect((await readdir(repo)).filter((f) => f.endsWith('.tar.gz')).sort()).toEqual([`${backupId}.tar.gz`, `${r.keptAs}.tar.gz`].sort());
  });

  it('a database whose service is not a compose service is refused, naming the field', async () => {
    const other = await writeConfig({
      ...loaded.config,
      services: loaded.config.services.map((s) => (s.name === 'postgres' ? { ...s, driver: { type: 'command', status: ['true'] } } : s)),
    });
    await docker.clear();
    const err = await withWorker(
      other,
      ({ client, taskQueue }) =>
        client.workflow
          .execute('db-restore', { taskQueue, workflowId: `db-volume-nocompose-${Date.now()}`, args: [{ database: 'app', mode: 'docker-volume', requestedBy: 'alice' }] })
          .catch((e: unknown) => e),
      { env },
    );
    expect(failureText(err)).toMatch(/services\.postgres\.driver\.type is command: mode docker-volume needs the compose driver/);
    expect(await docker.calls()).toEqual([]);
  });
});
