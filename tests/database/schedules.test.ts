import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { applySchedules, listSchedules, scheduleId } from '../../client/database/schedules.js';
import type { BackupManifest, DbBackupResult, RestoreDrillResult } from '../../common/database/types.js';
import { RestoreDrillRpoSeconds, RestoreDrillRtoSeconds } from '../../common/search-attributes.js';
import type { LoadedConfig } from '../../lib/config.js';
import { runbookCli, temporalAddress, temporalNamespace, testClient, uniqueQueue, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { pgConfigService, sql } from './helpers.js';

const env = `sched-${Date.now().toString(36)}`;
const base = {
  environment: env,
  services: [{ name: 'postgres', group: 'infra', driver: { type: 'command', status: ['true'] } }],
  databases: [{ name: 'app', url: 'postgres://postgres@127.0.0.1:1/app' }],
};
const declared = [
  { id: 'daily-backup', procedure: 'db-backup', cron: ['0 2 * * *'], input: { database: 'app' } },
  { id: 'monthly-vacuum', procedure: 'db-vacuum', cron: ['0 3 1 * *'], input: { database: 'app' } },
  { id: 'hourly-triage', procedure: 'db-triage', everySeconds: 3600, input: { database: 'app' } },
];

let client: Client;
const cliEnv = () => ({ ...process.env, TEMPORAL_ADDRESS: temporalAddress(), TEMPORAL_NAMESPACE: temporalNamespace(), RUNBOOK_TASK_QUEUE: 'runbooks-sched-test' });

beforeAll(async () => {
  client = await testClient();
});

afterAll(async () => {
  for (const s of declared) await client.schedule.getHandle(scheduleId(env, s.id)).delete().catch(() => undefined);
});

/** Schedule listing is eventually consistent: wait until it shows `n` of ours. */
async function listed(n: number, environment = env): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await listSchedules(client, environment)).length === n) return;
    await sleep(100);
  }
  throw new Error(`schedule list never showed ${n} schedules`);
}

describe('runbook schedules apply|list', () => {
  it('creates the declared schedules from the CLI, and a second apply changes nothing', async () => {
    const loaded = await writeConfig({ ...base, databaseOps: { schedules: declared } });
    const out = await execa(process.execPath, ['bin/runbook.mjs', 'schedules', 'apply', '--config', loaded.path, '--json'], { env: cliEnv() });
    expect(JSON.parse(out.stdout)).toEqual(declared.map((s) => ({ scheduleId: scheduleId(env, s.id), change: 'created' })));
    await listed(3);
    const again = await applySchedules(client, loaded.config, 'runbooks-sched-test');
    expect(again.map((c) => c.change)).toEqual(['unchanged', 'unchanged', 'unchanged']);

    const d = await client.schedule.getHandle(scheduleId(env, 'daily-backup')).describe();
    expect(d.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
    expect(d.action).toMatchObject({ type: 'startWorkflow', workflowType: 'db-backup', taskQueue: 'runbooks-sched-test', args: [{ database: 'app', requestedBy: 'schedule:daily-backup' }] });
    expect(d.info.nextActionTimes[0]!.getUTCHours()).toBe(2);

    const list = await execa(process.execPath, ['bin/runbook.mjs', 'schedules', 'list', '--config', loaded.path], { env: cliEnv() });
    expect(list.stdout).toMatch(new RegExp(`${scheduleId(env, 'daily-backup')}  db-backup  cron 0 2 \\* \\* \\* \\(UTC\\)  next: \\d{4}-`));
    expect(list.stdout).toMatch(/hourly-triage {2}db-triage {2}every 3600s/);
  });

  it('updates a changed schedule and deletes one no longer declared', async () => {
    const changed = [{ ...declared[0]!, cron: ['30 1 * * *'] }, declared[1]!];
    const loaded = await writeConfig({ ...base, databaseOps: { schedules: changed } });
    const changes = await applySchedules(client, loaded.config, 'runbooks-sched-test');
    expect(changes).toEqual([
      { scheduleId: scheduleId(env, 'daily-backup'), change: 'updated' },
      { scheduleId: scheduleId(env, 'monthly-vacuum'), change: 'unchanged' },
      { scheduleId: scheduleId(env, 'hourly-triage'), change: 'deleted' },
    ]);
    await listed(2);
    const d = await client.schedule.getHandle(scheduleId(env, 'daily-backup')).describe();
    expect(d.info.nextActionTimes[0]!.getUTCMinutes()).toBe(30);
  });

  it('refuses a bad declaration before changing anything', async () => {
    const loaded = await writeConfig({ ...base, databaseOps: { schedules: [{ id: 'x', procedure: 'db-backup', cron: ['0 2 * * *'], input: { databse: 'app' } }] } });
    await expect(applySchedules(client, loaded.config, 'runbooks-sched-test')).rejects.toThrow(
      /databaseOps\.schedules\[0\]\.input: unknown field "databse".*; database: required/,
    );
    await listed(2);
  });
});

/**
 * The schedules runbooks.example.yaml declares for the demo (daily backup with retention, monthly
 * vacuum, weekly restore drill), applied from the CLI against a real PostgreSQL; the triggered runs
 * are executed by a real worker on the schedules' task queue.
 */
describe('the example config schedules against a real PostgreSQL', () => {
  const exEnv = `sched-ex-${Date.now().toString(36)}`;
  const queue = uniqueQueue('sched-ex');
  let pgs: PgServer;
  let stateDir: string;
  let exampleOps: { timezone: string; backups: { repository: string; retention: number }; schedules: Array<{ id: string; procedure: string; cron: string[] }> };
  let loaded: LoadedConfig;
  const cli = runbookCli({ RUNBOOK_TASK_QUEUE: queue, RUNBOOK_USER: 'carol' });
  const configFor = (ops: unknown) => writeConfig({ environment: exEnv, services: [pgConfigService(pgs.url)], databases: [{ name: 'main', url: mainUrl, service: 'postgres' }], databaseOps: ops });
  let mainUrl: string;
  const full = (id: string) => scheduleId(exEnv, id);

  beforeAll(async () => {
    pgs = await startPostgres();
    mainUrl = await pgs.createDatabase('main');
    await sql(mainUrl, `CREATE TABLE trades (id int PRIMARY KEY, qty int)`);
    await sql(mainUrl, `INSERT INTO trades SELECT g, g % 7 FROM generate_series(1, 500) g`);
    stateDir = await mkdtemp(path.join(tmpdir(), 'runbook-sched-state-'));
    exampleOps = (parse(await readFile('runbooks.example.yaml', 'utf8')) as { databaseOps: typeof exampleOps }).databaseOps;
    loaded = await configFor(exampleOps);
  });

  afterAll(async () => {
    for (const s of exampleOps?.schedules ?? []) await client.schedule.getHandle(full(s.id)).delete().catch(() => undefined);
    await pgs?.stop();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  /** Runs `trigger <id>` from the CLI and waits for the run it started, with a worker polling the schedules' queue. */
  async function triggerAndWait<T>(id: string): Promise<{ workflowId: string; result: T }> {
    return withWorker(
      loaded,
      async ({ client: c }) => {
        const out = await cli('schedules', 'trigger', id, '--config', loaded.path, '--json');
        expect(out.stderr).toBe('');
        expect(out.exitCode).toBe(0);
        const run = JSON.parse(out.stdout) as { scheduleId: string; workflowId: string; started: boolean };
        expect(run).toMatchObject({ scheduleId: full(id), started: true });
        return { workflowId: run.workflowId, result: (await c.workflow.getHandle(run.workflowId).result()) as T };
      },
      { taskQueue: queue, env: { ...process.env, RUNBOOK_STATE_DIR: stateDir } },
    );
  }

  it('declares the seeds cadences in the config time zone, and the example passes config check', async () => {
    expect(exampleOps.timezone).toBe('UTC');
    expect(exampleOps.backups.retention).toBeGreaterThan(0);
    expect(exampleOps.schedules.map((s) => [s.id, s.procedure, s.cron])).toEqual([
      ['daily-backup', 'db-backup', ['0 2 * * *']],
      ['monthly-vacuum', 'db-vacuum', ['0 4 1 * *']],
      ['weekly-restore-drill', 'restore-drill', ['0 5 * * 0']],
    ]);
    // The scheduled vacuum is the plain one: VACUUM FULL waits for an approval no schedule can give.
    expect(JSON.stringify(exampleOps.schedules)).not.toMatch(/"full"/);
    const check = await cli('config', 'check', '--config', 'runbooks.example.yaml');
    expect(check.exitCode).toBe(0);
    expect(check.stdout).toMatch(/runbooks\.example\.yaml: valid/);
    expect(check.stdout).not.toMatch(/warning/);
  });

  it('apply creates them, a second apply changes nothing, list shows the next run times', async () => {
    const first = await cli('schedules', 'apply', '--config', loaded.path);
    expect(first.exitCode).toBe(0);
    expect(first.stdout.split('\n')).toEqual(exampleOps.schedules.map((s) => `created   ${full(s.id)}`));
    await listed(3, exEnv);
    const descBefore = await client.schedule.getHandle(full('daily-backup')).describe();
    const second = await cli('schedules', 'apply', '--config', loaded.path);
    expect(second.stdout.split('\n')).toEqual(exampleOps.schedules.map((s) => `unchanged ${full(s.id)}`));
    // Not recreated behind an "unchanged": same creation, same declaration.
    const descAfter = await client.schedule.getHandle(full('daily-backup')).describe();
    expect(descAfter.info.createdAt).toEqual(descBefore.info.createdAt);
    expect(descAfter.spec.timezone).toBe('UTC');

    const list = await cli('schedules', 'list', '--config', loaded.path, '--json');
    const rows = JSON.parse(list.stdout) as Array<{ scheduleId: string; paused: boolean; nextRuns: string[] }>;
    expect(rows.map((r) => r.scheduleId)).toEqual([full('daily-backup'), full('monthly-vacuum'), full('weekly-restore-drill')]);
    const next = (id: string) => rows.find((r) => r.scheduleId === full(id))!.nextRuns.map((t) => new Date(t));
    expect(next('daily-backup')).toHaveLength(3);
    for (const t of next('daily-backup')) expect([t.getUTCHours(), t.getUTCMinutes()]).toEqual([2, 0]);
    expect(next('daily-backup')[1]!.getTime() - next('daily-backup')[0]!.getTime()).toBe(24 * 3600_000);
    for (const t of next('monthly-vacuum')) expect([t.getUTCDate(), t.getUTCHours()]).toEqual([1, 4]);
    for (const t of next('weekly-restore-drill')) expect([t.getUTCDay(), t.getUTCHours()]).toEqual([0, 5]);
    expect(next('daily-backup')[0]!.getTime()).toBeGreaterThan(Date.now());
    const text = await cli('schedules', 'list', '--config', loaded.path);
    expect(text.stdout).toMatch(new RegExp(`${full('monthly-vacuum')}  db-vacuum  cron 0 4 1 \\* \\* \\(UTC\\)  next: \\d{4}-\\d\\d-01T04:00:00\\.000Z, `));
  });

  it('trigger daily-backup: the backup exists in the repository with its manifest and checksum', async () => {
    const { workflowId, result } = await triggerAndWait<DbBackupResult>('daily-backup');
    expect(workflowId).toMatch(/^db-backup--/);
    // The example's repository, ${RUNBOOK_STATE_DIR:-.runbook}/demo/backups, under the worker's state dir.
    const dir = path.join(stateDir, 'demo', 'backups', 'main', result.backup.id);
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as BackupManifest & { verifiedAt?: string };
    expect(manifest).toMatchObject({ database: 'main', format: 'custom' });
    expect(manifest.verifiedAt).toBeTruthy();
    expect(createHash('sha256').update(await readFile(path.join(dir, manifest.file))).digest('hex')).toBe(manifest.sha256);
    const listing = await execa(path.join(pgs.binDir, 'pg_restore'), ['--list', path.join(dir, manifest.file)]);
    expect(listing.stdout).toMatch(/TABLE DATA public trades/);
    // Started by the schedule: Temporal records which one on the run.
    const desc = await client.workflow.getHandle(workflowId).describe();
    expect(desc.type).toBe('db-backup');
    expect(desc.raw.workflowExecutionInfo?.searchAttributes?.indexedFields?.TemporalScheduledById).toBeDefined();
  }, 120_000);

  it('trigger weekly-restore-drill: the run records RTO and RPO in its result and search attributes', async () => {
    const { workflowId, result } = await triggerAndWait<RestoreDrillResult>('weekly-restore-drill');
    expect(result.logical?.backupId).toBeTruthy();
    expect(result.pitr).toBeNull();
    expect(result.logical!.restoreMs).toBeGreaterThan(0);
    expect(result.rtoSeconds).toBe(Math.round(result.logical!.restoreMs / 100) / 10);
    expect(result.rpoSeconds).toBeGreaterThan(0);
    expect(result.objectives).toEqual({ rtoSeconds: 3600, rpoSeconds: 900 });
    const desc = await client.workflow.getHandle(workflowId).describe();
    expect(desc.typedSearchAttributes.get(RestoreDrillRtoSeconds)).toBe(result.rtoSeconds);
    expect(desc.typedSearchAttributes.get(RestoreDrillRpoSeconds)).toBe(result.rpoSeconds);
    // The scratch database is gone again.
    expect(await sql(pgs.url, `SELECT datname FROM pg_database WHERE datname LIKE 'main_drill_%'`)).toEqual([]);
  }, 120_000);

  it('pause --reason and unpause show in list; an unknown id names the known ones', async () => {
    const paused = await cli('schedules', 'pause', 'monthly-vacuum', '--reason', 'reindexing by hand', '--config', loaded.path);
    expect(paused.stdout.trim()).toBe(`paused ${full('monthly-vacuum')}`);
    let list = await cli('schedules', 'list', '--config', loaded.path);
    expect(list.stdout).toContain(`${full('monthly-vacuum')}  db-vacuum  cron 0 4 1 * * (UTC)  PAUSED (paused by carol: reindexing by hand)  next: -`);
    expect(list.stdout).toMatch(new RegExp(`${full('daily-backup')}  db-backup  cron 0 2 \\* \\* \\* \\(UTC\\)  next: \\d{4}-`));
    // apply leaves a pause made by hand in place.
    const applied = await cli('schedules', 'apply', '--config', loaded.path);
    expect(applied.stdout).toContain(`unchanged ${full('monthly-vacuum')}`);
    expect((await client.schedule.getHandle(full('monthly-vacuum')).describe()).state.paused).toBe(true);

    const unpaused = await cli('schedules', 'unpause', full('monthly-vacuum'), '--config', loaded.path);
    expect(unpaused.stdout.trim()).toBe(`unpaused ${full('monthly-vacuum')}`);
    list = await cli('schedules', 'list', '--config', loaded.path);
    expect(list.stdout).toMatch(new RegExp(`${full('monthly-vacuum')}  db-vacuum  cron 0 4 1 \\* \\* \\(UTC\\)  next: \\d{4}-\\d\\d-01T04:00`));
    const again = await cli('schedules', 'unpause', 'monthly-vacuum', '--config', loaded.path);
    expect(again.stdout.trim()).toBe(`${full('monthly-vacuum')} was already unpaused: nothing changed`);

    const unknown = await cli('schedules', 'trigger', 'nightly-backup', '--config', loaded.path);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr.trim()).toBe(
      `runbook: no schedule "nightly-backup" (${full('nightly-backup')}): known schedules in environment ${exEnv}: daily-backup, monthly-vacuum, weekly-restore-drill`,
    );
  });

  it('a schedule removed from the config is deleted by apply, which says so; a time zone moves the cron times', async () => {
    const kept = exampleOps.schedules.filter((s) => s.id !== 'weekly-restore-drill');
    const changed = await configFor({ ...exampleOps, timezone: 'America/New_York', schedules: kept });
    const out = await cli('schedules', 'apply', '--config', changed.path);
    expect(out.exitCode).toBe(0);
    expect(out.stdout.split('\n')).toEqual([
      `updated   ${full('daily-backup')} (its declaration changed: recreated)`,
      `updated   ${full('monthly-vacuum')} (its declaration changed: recreated)`,
      `deleted   ${full('weekly-restore-drill')} (no longer declared in databaseOps.schedules)`,
    ]);
    await listed(2, exEnv);
    const d = await client.schedule.getHandle(full('daily-backup')).describe();
    expect(d.spec.timezone).toBe('America/New_York');
    const hourInNewYork = Number(new Intl.DateTimeFormat('en-US', { timeZone: 'America/New_York', hour: 'numeric', hourCycle: 'h23' }).format(d.info.nextActionTimes[0]!));
    expect(hourInNewYork).toBe(2);
    expect([6, 7]).toContain(d.info.nextActionTimes[0]!.getUTCHours());
    const list = await cli('schedules', 'list', '--config', changed.path);
    expect(list.stdout).toContain('cron 0 2 * * * (America/New_York)');
    expect(list.stdout).not.toContain('weekly-restore-drill');
    const gone = await cli('schedules', 'trigger', 'weekly-restore-drill', '--config', changed.path);
    expect(gone.stderr.trim()).toMatch(new RegExp(`known schedules in environment ${exEnv}: daily-backup, monthly-vacuum$`));
  });
});
