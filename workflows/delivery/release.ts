import { policyOf } from '../../common/approvals.js';
import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { DeliveryErrors, type ReleaseInput, type ReleaseResult } from '../../common/delivery/types.js';
import { PROCEDURES } from '../../common/procedures.js';
import type { MigrationRunResult } from '../../common/types.js';
import { addCanarySteps, CanaryControls, canaryLeft, canaryNotStarted, canaryOptions, runCanary } from './canary.js';
import { longRunning, quick } from '../shared/profiles.js';
import { RunContext } from '../shared/run-context.js';

const { deliveryPlan } = proxyActivities<Activities>(quick);
const { migrate, rollbackReleaseMigrations } = proxyActivities<Activities>(longRunning);

/**
 * `release`: the database migration forward, then the canary, in one durable run. When
 * the canary fails, traffic goes back first (users feel it); the schema is rolled back
 * only after an approval, because down migrations can drop data.
 */
export async function release(rawInput?: ReleaseInput): Promise<ReleaseResult> {
  const input = await RunContext.input(PROCEDURES.release, rawInput, [canaryNotStarted]);
  const ctx = new RunContext(PROCEDURES.release, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['migrate', `Migrate ${input.database} forward`],
  ]);
  const controls = new CanaryControls(input.router, input.steps ?? []);
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => deliveryPlan({ procedure: PROCEDURES.release, router: input.router }), (p) => `router ${p.router.name} (${p.router.type})`);
    const opts = canaryOptions(input, plan, PROCEDURES.release);
    controls.status.steps = opts.steps;
    addCanarySteps(ctx, opts);
    ctx.hint('migrate', {
      state: `no traffic was moved; migrations of ${input.database} may be applied (each in its own transaction)`,
      next: `run release again (applied migrations are skipped), or db-migration-rollback of ${input.database} to undo them`,
    });
    // runCanary rolls the canary back (non-cancellable) before the cancellation reaches here.
    ctx.onCancel(async () => {
      const left = canaryLeft(plan, controls);
      return left.state ? { state: `${left.state}; the migrations this release applied stay applied`, next: `${left.next}; db-migration-rollback of ${input.database} undoes the migrations` } : {};
    });
    const migration = await ctx.step('migrate', () => migrate({ database: input.database, dryRun: false }), (m) =>
      m.applied.length ? `applied ${m.applied.map((x) => x.version).join(', ')}` : 'nothing to apply',
    );
    const canary = await runCanary(ctx, plan, opts, controls);
    if (canary.ok) return { ok: true, migration, canary, progress: ctx.progress };

    const versions = migration.applied.map((m) => m.version);
    let migrationRolledBack: MigrationRunResult | undefined;
    let schema = 'no migration was applied by this release';
    if (versions.length > 0) {
      ctx.addStep('approve-migration-rollback', `Approve rolling back migrations ${versions.join(', ')}`);
      ctx.addStep('migration-rollback', `Roll back migrations ${versions.join(', ')} of ${input.database}`);
      const record = await ctx.requestApproval({
        step: 'approve-migration-rollback',
        summary: `The canary was rolled back (${canary.reason}); traffic is 100 % on stable. Roll back migrations ${versions.join(', ')} of database ${input.database} with their down SQL? Data written to what they created is lost.`,
        destructive: true,
        confirmPhrase: 'ROLLBACK',
        policy: policyOf(plan),
        timeoutSeconds: input.approvalTimeoutSeconds ?? plan.approvalTimeoutSeconds,
      });
      if (record.decision === 'approved') {
        migrationRolledBack = await ctx.step('migration-rollback', () => rollbackReleaseMigrations({ database: input.database, versions }), (r) =>
          `rolled back ${r.applied.map((m) => m.version).join(', ') || 'nothing (already rolled back)'}`,
        );
        schema = `migrations ${versions.join(', ')} rolled back`;
      } else {
        ctx.skip('migration-rollback', `not approved (${record.decision}${record.by ? ` by ${record.by}` : ''}): migrations ${versions.join(', ')} stay applied`);
        schema = `migrations ${versions.join(', ')} left applied (${record.decision})`;
      }
    }
    const result: ReleaseResult = { ok: false, migration, canary, ...(migrationRolledBack ? { migrationRolledBack } : {}), progress: ctx.progress };
    throw ApplicationFailure.create({
      type: DeliveryErrors.ReleaseRolledBack,
      nonRetryable: true,
      message: `release rolled back: traffic 100 % stable (${canary.reason}); ${schema}`,
      details: [result],
    });
  });
}
