import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigrator } from '../../activities/database/migrations.js';
import { approveUpdate } from '../../common/messages.js';
import type { RunPlan } from '../../common/plan.js';
import type { ProcedureId } from '../../common/procedures.js';
import type { RunProgress } from '../../common/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { planRun } from '../../client/plan.js';
import { measureSplit, startDeliveryBed, type DeliveryBed } from '../fixtures/delivery-traffic.js';
import { createRecordingCli, type RecordingCli } from '../fixtures/recording-cli.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { sql } from '../database/helpers.js';
import { deliveryConfig, startWebhook, waitForApproval } from '../delivery/helpers.js';

/**
 * The delivery plans that change traffic, schema, images or flags, compared with their real
 * runs on the same bed (real nginx, Prometheus, the demo services, PostgreSQL): release,
 * app-rollback, config-rollback, then blue-green-switch (last: it stops the canary). Each plan
 * changes nothing, and its steps (ids and titles, in order) are the ones the real run shows.
 */

let bed: DeliveryBed;
let postgres: PgServer;
let dbUrl: string;
let migrationsDir: string;
let docker: RecordingCli;
let loaded: LoadedConfig;
let webhook: Awaited<ReturnType<typeof startWebhook>>;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  [bed, postgres] = await Promise.all([startDeliveryBed(), startPostgres()]);
  webhook = await startWebhook();
  // The compose rollback pulls the previous image first and no registry is reachable: docker is a recording stand-in.
  docker = await createRecordingCli('docker');
  env = { ...process.env, DELIVERY_WEBHOOK: webhook.url, PATH: docker.path };
  dbUrl = await postgres.createDatabase('fulcrum');
  migrationsDir = await mkdtemp(path.join(tmpdir(), 'runbook-plan-release-'));
  for (const f of ['001_create_policies', '002_add_feature_flags']) {
    for (const d of ['up', 'down']) await copyFile(path.resolve('demo/migrations', `${f}.${d}.sql`), path.join(migrationsDir, `${f}.${d}.sql`));
  }
  const m = createMigrator({ url: dbUrl, dir: migrationsDir, database: 'fulcrum', logger: createLogger({ component: 'test' }, 'warn') });
  await m.up();
  await m.close();
  // What ships with the release.
  await writeFile(path.join(migrationsDir, '003_add_rollout_group.up.sql'), "ALTER TABLE policies ADD COLUMN rollout_group text NOT NULL DEFAULT 'a';\n");
  await writeFile(path.join(migrationsDir, '003_add_rollout_group.down.sql'), 'ALTER TABLE policies DROP COLUMN rollout_group;\n');
  loaded = await writeConfig(
    deliveryConfig(bed, {
      databases: [{ name: 'fulcrum', url: dbUrl, migrationsDir }],
      services: [{ name: 'dashboard', driver: { type: 'compose', file: 'docker-compose.unified.yml', service: 'dashboard' } }],
    }),
  );
}, 120_000);

afterAll(async () => {
  await bed?.stop();
  await webhook?.stop();
  await postgres?.stop();
  await docker?.remove();
  if (migrationsDir) await rm(migrationsDir, { recursive: true, force: true });
});

function plan(client: Client, taskQueue: string, procedure: ProcedureId, input: Record<string, unknown>): Promise<RunPlan> {
  return planRun({ client, taskQueue, procedure, input: { requestedBy: 'alice', ...input }, requestedBy: 'alice', environment: 'test' });
}

async function execute(client: Client, taskQueue: string, procedure: ProcedureId, input: Record<string, unknown>): Promise<RunProgress> {
  const r = (await client.workflow.execute(procedure, { taskQueue, workflowId: `${procedure}-${Date.now()}`, args: [{ requestedBy: 'alice', ...input }] })) as { progress: RunProgress };
  return r.progress;
}

const stepsOf = (x: RunPlan | RunProgress) => x.steps.map((s) => `${s.id}: ${s.title}`);
const upstream = () => readFile(bed.nginx.upstreamFile, 'utf8');
const versions = async () => (await sql<{ version: string }>(dbUrl, 'SELECT version FROM schema_migrations ORDER BY 1')).map((r) => r.version);
const flag = async (name: string) => (await sql<{ enabled: boolean }>(dbUrl, 'SELECT enabled FROM feature_flags WHERE name = $1', [name]))[0]?.enabled;

describe('runbook plan compared with the real run: release, app-rollback, config-rollback, blue-green-switch', () => {
  it('release: the plan applies no migration and moves no traffic; the real release (migration 003, canary at 50 %) executes the planned steps', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const input = { router: 'api', database: 'fulcrum', steps: [50], bakeSeconds: 1, skipAnalysis: true };
        const before = await upstream();
        const p = await plan(client, taskQueue, 'release', input);
        expect(p.refused).toBeUndefined();
        expect(p.stoppedAt?.activity).toMatch(/^migrate fulcrum/);
        expect(await versions()).toEqual(['001', '002']);
        expect(await upstream()).toBe(before);
        expect((await measureSplit(bed.nginx.url, 100)).byVersion).toEqual({ '1.0.0': 100 });

        const real = await execute(client, taskQueue, 'release', input);
        expect(real.steps.every((s) => s.status === 'succeeded' || s.status === 'skipped')).toBe(true);
        expect(real.steps.map((s) => s.id).slice(0, 5)).toEqual(['plan', 'migrate', 'set-50', 'bake-50', 'analysis-50']);
        expect(stepsOf(p)).toEqual(stepsOf(real));
        expect(await versions()).toEqual(['001', '002', '003']);
        expect(Math.abs((await measureSplit(bed.nginx.url, 200)).percent('2.0.0') - 50)).toBeLessThanOrEqual(15);
      },
      { env },
    );
  });

  it('app-rollback and config-rollback: the plans run no docker command and leave the flag on; the real rollbacks execute the planned steps', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const appInput = { service: 'dashboard', image: 'ghcr.io/org/dashboard:v1.0.0', verifyUrl: `${bed.stable.httpUrl}/api/version`, expectVersion: '1.0.0', waitTimeoutSeconds: 10 };
        const app = await plan(client, taskQueue, 'app-rollback', appInput);
        expect(app.refused).toBeUndefined();
        expect(app.stoppedAt?.activity).toMatch(/dashboard/);
        expect(await docker.calls()).toEqual([]);
        const realApp = await execute(client, taskQueue, 'app-rollback', appInput);
        expect(realApp.steps.map((s) => [s.id, s.status])).toEqual([
          ['plan', 'succeeded'],
          ['rollback', 'succeeded'],
          ['wait', 'skipped'],
          ['verify', 'succeeded'],
        ]);
        expect(stepsOf(app)).toEqual(stepsOf(realApp));
        expect((await docker.calls())[0]).toEqual(['pull', 'ghcr.io/org/dashboard:v1.0.0']);

        const flagInput = { kind: 'feature-flag', database: 'fulcrum', flag: 'new-checkout' };
        await sql(dbUrl, "INSERT INTO feature_flags (name, enabled) VALUES ('new-checkout', true)");
        const cfg = await plan(client, taskQueue, 'config-rollback', flagInput);
        expect(cfg.refused).toBeUndefined();
        expect(cfg.stoppedAt?.activity).toMatch(/^disableFeatureFlag/);
        expect(await flag('new-checkout')).toBe(true);
        const realCfg = await execute(client, taskQueue, 'config-rollback', flagInput);
        expect(realCfg.steps.map((s) => [s.id, s.status])).toEqual([
          ['plan', 'succeeded'],
          ['disable', 'succeeded'],
        ]);
        expect(stepsOf(cfg)).toEqual(stepsOf(realCfg));
        expect(await flag('new-checkout')).toBe(false);
      },
      { env },
    );
  });

  it('blue-green-switch: the plan lists approve-switch and moves nothing; the real switch, approved by bob, executes the planned steps', async () => {
    await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const input = { router: 'api', to: 'blue', skipAnalysis: true, scaleDownDelaySeconds: 1 };
        const before = await upstream();
        const p = await plan(client, taskQueue, 'blue-green-switch', input);
        expect(p.refused).toBeUndefined();
        expect(p.steps.find((s) => s.id === 'approve-switch')).toMatchObject({ kind: 'approval', approval: { approvers: ['alice', 'bob'] } });
        expect(await upstream()).toBe(before);
        expect(bed.canary.running()).toBe(true);

        const handle = await client.workflow.start('blue-green-switch', { taskQueue, workflowId: `bg-${Date.now()}`, args: [{ requestedBy: 'alice', ...input }] });
        await waitForApproval(handle, 'approve-switch');
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', step: 'approve-switch' }] });
        const real = ((await handle.result()) as { progress: RunProgress }).progress;
        expect(real.steps.map((s) => [s.id, s.status])).toEqual([
          ['plan', 'succeeded'],
          ['check-preview', 'succeeded'],
          ['approve-switch', 'succeeded'],
          ['switch', 'succeeded'],
          ['keep-old', 'succeeded'],
          ['scale-down', 'succeeded'],
        ]);
        expect(stepsOf(p)).toEqual(stepsOf(real));
        expect((await measureSplit(bed.nginx.url, 100)).byVersion).toEqual({ '1.0.0': 100 });
      },
      { env },
    );
  });
});
