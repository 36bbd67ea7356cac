import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigrator } from '../../activities/migrations.js';
import type { ReleaseResult } from '../../common/families/delivery-types.js';
import { approveUpdate } from '../../common/messages.js';
import { createLogger } from '../../lib/logger.js';
import { measureSplit, startDeliveryBed, startLoad, type DeliveryBed } from '../fixtures/delivery-traffic.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, type PgServer } from '../fixtures/servers.js';
import { deliveryConfig, waitForApproval, warmCanary } from './helpers.js';

let bed: DeliveryBed;
let postgres: PgServer;
let dbUrl: string;
let migrationsDir: string;

async function appliedVersions(): Promise<string[]> {
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  try {
    return (await db.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version')).rows.map((r) => r.version);
  } finally {
    await db.end();
  }
}

async function columnExists(): Promise<boolean> {
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  try {
    const r = await db.query("SELECT 1 FROM information_schema.columns WHERE table_name = 'policies' AND column_name = 'rollout_group'");
    return r.rowCount === 1;
  } finally {
    await db.end();
  }
}

beforeAll(async () => {
  [bed, postgres] = await Promise.all([startDeliveryBed(), startPostgres()]);
  dbUrl = await postgres.createDatabase('fulcrum');
  migrationsDir = await mkdtemp(path.join(tmpdir(), 'runbook-release-migrations-'));
  for (const f of ['001_create_policies', '002_add_feature_flags']) {
    for (const d of ['up', 'down']) await copyFile(path.resolve('demo/migrations', `${f}.${d}.sql`), path.join(migrationsDir, `${f}.${d}.sql`));
  }
  // What ships with the release: a new column the new version writes.
  await writeFile(path.join(migrationsDir, '003_add_rollout_group.up.sql'), "ALTER TABLE policies ADD COLUMN rollout_group text NOT NULL DEFAULT 'a';\n");
  await writeFile(path.join(migrationsDir, '003_add_rollout_group.down.sql'), 'ALTER TABLE policies DROP COLUMN rollout_group;\n');
  const m = createMigrator({ url: dbUrl, dir: migrationsDir, database: 'fulcrum', logger: createLogger({ component: 'test' }, 'warn') });
  await m.up({ to: '002' });
  await m.close();
}, 120_000);

afterAll(async () => {
  await bed?.stop();
  await postgres?.stop();
  await rm(migrationsDir, { recursive: true, force: true });
});

describe('release: migration forward + canary in one run', () => {
  it('a failing canary: traffic back first, then the migration rollback waits for an approval', async () => {
    const loaded = await writeConfig(deliveryConfig(bed, { databases: [{ name: 'fulcrum', url: dbUrl, migrationsDir }] }));
    await bed.setCanary({ errorRate: 0.5 });
    await warmCanary(bed);
    const load = startLoad(bed.nginx.url, 60);
    let err: unknown;
    try {
      err = await withWorker(loaded, async ({ client, taskQueue }) => {
        const workflowId = `release-${Date.now()}`;
        const handle = await client.workflow.start('release', {
          taskQueue,
          workflowId,
          args: [{ router: 'api', database: 'fulcrum', steps: [5, 50, 100], requestedBy: 'alice' }],
        });
        const pending = await waitForApproval(handle, 'approve-migration-rollback');
        // Before anyone answers: users are already off the canary, the schema is untouched.
        expect(pending).toMatchObject({ destructive: true, confirmPhrase: 'ROLLBACK' });
        expect(pending.summary).toMatch(/error-rate.*Roll back migrations 003 of database fulcrum/s);
        expect((await measureSplit(bed.nginx.url, 400)).byVersion).toEqual({ '1.0.0': 400 });
        expect(await appliedVersions()).toEqual(['001', '002', '003']);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'ROLLBACK' }] });
        const e = await handle.result().catch((x: unknown) => x);
        await recordHistory(client, workflowId, 'release');
        return e;
      });
    } finally {
      await load.stop();
    }
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    expect(cause.type).toBe('ReleaseRolledBack');
    expect(cause.message).toMatch(/traffic 100 % stable .*error-rate.*; migrations 003 rolled back/);
    const result = cause.details![0] as ReleaseResult;
    expect(result.migration.applied.map((m) => m.version)).toEqual(['003']);
    expect(result.migrationRolledBack?.applied.map((m) => m.version)).toEqual(['003']);
    const order = result.progress.steps.map((s) => s.id);
    expect(order.indexOf('rollback-traffic')).toBeLessThan(order.indexOf('approve-migration-rollback'));
    expect(await appliedVersions()).toEqual(['001', '002']);
    expect(await columnExists()).toBe(false);
  }, 90_000);
});
