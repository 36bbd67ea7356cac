import { setTimeout as sleep } from 'node:timers/promises';
import { ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applySchedules, listSchedules, scheduleId } from '../../client/database-schedules.js';
import { temporalAddress, temporalNamespace, testClient, writeConfig } from '../fixtures/runbook-worker.js';

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
async function listed(n: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await listSchedules(client, env)).length === n) return;
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
