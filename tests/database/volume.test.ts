import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbVolumeRestoreResult } from '../../common/database/types.js';
import { approveUpdate } from '../../common/messages.js';
import type { LoadedConfig } from '../../lib/config.js';
import { createRecordingCli, type RecordingCli } from '../fixtures/recording-cli.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort, startPostgres, type PgServer } from '../fixtures/servers.js';
import { failureText, sql, waitForPending } from './helpers.js';

/**
 * The Docker-volume variant against a recording `docker` stand-in, only for what the real
 * engine here (tests/database/volume-real.test.ts: Podman 4.3's Docker API, docker-compose v1)
 * cannot show:
 * - the exact `docker compose` (v2) command lines: the real test runs Compose v1
 *   (`docker-compose`, the only one packaged here), so only the stand-in sees what a Docker
 *   host with the v2 plugin runs;
 * - a throwaway container that failed while `docker run` exited 0 (what Podman's API before 4.6
 *   does with `--rm`): the runbook reads the exit code back with `docker inspect`, and a real
 *   engine cannot be made to lose it on purpose;
 * - a database whose service is not a compose service (no engine involved at all).
 */

const FAKE_APP = fileURLToPath(new URL('./fake-app.mjs', import.meta.url));
const VOLUME = 'fulcrum-postgres-data';
const IMAGE = 'registry.example/tools/debian:12';

let tmp: string;
let repo: string;
let composeFile: string;
let pgs: PgServer;
let appUrl: string;
let apiPort: number;
let docker: RecordingCli;
let env: NodeJS.ProcessEnv;
let loaded: LoadedConfig;

const apiCmd = (action: string) => [process.execPath, FAKE_APP, action, tmp, String(apiPort)];
const apiRunning = async () => (await execa(process.execPath, apiCmd('status').slice(1), { reject: false })).exitCode === 0;

const compose = (...args: string[]) => ['compose', '-f', composeFile, '-p', 'fulcrum', ...args];
const NAME = /^runbook-(tar|wipe|untar)-[0-9a-f]{16}$/;

/** A tarball the checks accept (a data directory's PG_VERSION and global/pg_control), with its checksum. */
async function handMadeTarball(id: string): Promise<void> {
  const dir = await mkdtemp(path.join(tmp, 'datadir-'));
  await mkdir(path.join(dir, 'global'));
  await writeFile(path.join(dir, 'PG_VERSION'), '15\n');
  await writeFile(path.join(dir, 'global', 'pg_control'), 'control');
  const file = path.join(repo, `${id}.tar.gz`);
  await execa('tar', ['-czf', file, '-C', dir, '.']);
  await writeFile(`${file}.sha256`, `${createHash('sha256').update(await readFile(file)).digest('hex')}  ${id}.tar.gz\n`);
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'runbook-volume-'));
  repo = path.join(tmp, 'volumes', 'app');
  await mkdir(repo, { recursive: true });
  composeFile = path.join(tmp, 'docker-compose.unified.yml');
  pgs = await startPostgres({ settings: { autovacuum: 'off' } });
  appUrl = await pgs.createDatabase('app');
  await sql(appUrl, 'CREATE TABLE policies (id int PRIMARY KEY); INSERT INTO policies SELECT generate_series(1, 3)');
  apiPort = await freePort();
  docker = await createRecordingCli('docker');
  env = { ...process.env, PATH: docker.path };
  loaded = await writeConfig(
    {
      environment: 'voltest',
      services: [
        { name: 'postgres', group: 'infra', driver: { type: 'compose', file: 'docker-compose.unified.yml', service: 'postgres', project: 'fulcrum' }, probes: [{ type: 'postgres', url: appUrl }] },
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
        volumes: [{ database: 'app', volume: VOLUME, repository: 'volumes', image: IMAGE, keepCurrent: false }],
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

async function restore(backupId: string, workflowId: string): Promise<DbVolumeRestoreResult | unknown> {
  return withWorker(
    loaded,
    async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('db-restore', { taskQueue, workflowId, args: [{ database: 'app', mode: 'docker-volume', backupId, requestedBy: 'alice' }] });
      await waitForPending(handle);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'REPLACE', step: 'approve-replace' }] });
      const res = await handle.result().catch((e: unknown) => e);
      if (!(res instanceof Error)) await recordHistory(client, workflowId, 'db-restore-volume');
      return res;
    },
    { env },
  );
}

describe('db-restore mode docker-volume: what only the stand-in shows', () => {
  it('the exact commands with Compose v2: stop, empty the volume, unpack, up; each container run by name, its exit code read back, removed', async () => {
    await handMadeTarball('handmade');
    await docker.clear();
    await docker.respond([{ when: ['inspect'], stdout: '0\n' }]);
    const r = (await restore('handmade', `db-volume-argv-${Date.now()}`)) as DbVolumeRestoreResult;
    expect(r).toMatchObject({ ok: true, backupId: 'handmade', keptAs: null });
    const calls = await docker.calls();
    const names = calls.filter((c) => c[0] === 'run').map((c) => c[2]!);
    expect(names).toHaveLength(2);
    for (const n of names) expect(n).toMatch(NAME);
    const [wipe, untar] = names as [string, string];
    const container = (name: string, mounts: string[], ...command: string[]) => [
      ['rm', '--force', name],
      ['run', '--name', name, '--network', 'none', ...mounts, IMAGE, ...command],
      ['inspect', '--format', '{{.State.ExitCode}}', name],
      ['rm', '--force', name],
    ];
    const data = (ro: boolean) => ['--mount', `type=volume,source=${VOLUME},target=/data${ro ? ',ro' : ''}`];
    expect(calls).toEqual([
      compose('stop', 'postgres'),
      ...container(wipe, data(false), 'find', '/data', '-mindepth', '1', '-delete'),
      ...container(untar, [...data(false), '--mount', `type=bind,source=${repo},target=/backup,ro`], 'tar', '--numeric-owner', '-xzf', '/backup/handmade.tar.gz', '-C', '/data'),
      compose('up', '-d', 'postgres'),
    ]);
    expect(r.counts).toEqual([{ table: 'policies', expected: 3, actual: 3 }]);
    expect(await apiRunning()).toBe(true);
  });

  it('a container that failed while docker run exited 0 (Podman before 4.6 with --rm) fails the run; the database is left stopped for a human', async () => {
    await docker.clear();
    await docker.respond([{ when: ['inspect'], stdout: '2\n' }]);
    const err = await restore('handmade', `db-volume-exit-${Date.now()}`);
    expect(failureText(err)).toMatch(/emptying volume fulcrum-postgres-data: the container exited with 2 although docker run exited 0/);
    const calls = await docker.calls();
    // find's own exit code: not retried (it would fail the same way), and the half-emptied database is not started.
    expect(calls.filter((c) => c[0] === 'run' && c.includes('find')).length).toBe(1);
    expect(calls.some((c) => c.includes('up'))).toBe(false);
    expect(calls.filter((c) => c[0] === 'run').every((c) => !c.includes('tar'))).toBe(true);
    expect(await apiRunning()).toBe(false);
    await execa(process.execPath, apiCmd('start').slice(1));
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
