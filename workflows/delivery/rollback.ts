import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { ErrorTypes } from '../../common/errors.js';
import type { AppRollbackInput, AppRollbackResult, ConfigRollbackInput, ConfigRollbackResult } from '../../common/delivery/types.js';
import { PROCEDURES } from '../../common/procedures.js';
import type { PlanService, RunbookPlan, ServiceActionResult } from '../../common/types.js';
import { selectServices } from '../shared/health.js';
import { longRunning, quick } from '../shared/profiles.js';
import { RunContext } from '../shared/run-context.js';

const { loadPlan, disableFeatureFlag, restoreEnvFile } = proxyActivities<Activities>(quick);
const { verifyServingVersion, waitHealthy, serviceAction, applyConfigManifest } = proxyActivities<Activities>(longRunning);
// One attempt: `rollout undo` run twice undoes the undo, so a failure goes to a human, never to a retry.
const { rollbackAppRevision } = proxyActivities<Activities>({ ...longRunning, heartbeatTimeout: undefined, startToCloseTimeout: '30 minutes', retry: { maximumAttempts: 1 } });

const DEFAULT_WAIT_SECONDS = 180;

function invalid(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ErrorTypes.InvalidInput);
}

async function waitForService(ctx: RunContext, plan: RunbookPlan, svc: PlanService, timeoutSeconds: number): Promise<void> {
  if (svc.probes.length === 0) {
    ctx.skip('wait', `${svc.name} has no probes configured`);
    return;
  }
  await ctx.step(
    'wait',
    () => waitHealthy({ services: [svc.name], timeoutSeconds, deadline: Date.now() + timeoutSeconds * 1000, pollIntervalSeconds: plan.pollIntervalSeconds }),
    (r) => `${r.length} probes healthy`,
  );
}

/** `app-rollback`: Fulcrum 8.1 / AlphaPulse 3.2 — previous (or given) revision, wait healthy, verify the version serving. */
export async function appRollback(rawInput?: AppRollbackInput): Promise<AppRollbackResult> {
  const input = await RunContext.input(PROCEDURES.appRollback, rawInput);
  if (input.expectVersion !== undefined && input.verifyUrl === undefined) throw invalid('expectVersion: needs verifyUrl (the endpoint that reports the version)');
  const target = input.revision ? `revision ${input.revision}` : input.image ? input.image : 'the previous revision';
  const ctx = new RunContext(PROCEDURES.appRollback, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['rollback', `Roll ${input.service} back to ${target}`],
    ['wait', `Wait for ${input.service} to be healthy`],
    ['verify', input.verifyUrl ? `Verify the version serving${input.expectVersion ? ` is ${input.expectVersion}` : ''}` : 'Verify the version serving (no verifyUrl)'],
  ]);
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadPlan({ procedure: PROCEDURES.appRollback }), (p) => `${p.services.length} services`);
    const [svc] = selectServices(plan, [input.service], 'service');
    if (svc!.driver === 'compose' && !input.image) throw invalid(`image: required for ${svc!.name} (compose driver): the previous image tag to run`);
    if (svc!.driver === 'kubernetes' && input.image) throw invalid(`image: not used for ${svc!.name} (kubernetes driver): give revision, or nothing for the previous one`);
    const timeoutSeconds = input.waitTimeoutSeconds ?? DEFAULT_WAIT_SECONDS;
    const done = await ctx.step(
      'rollback',
      () => rollbackAppRevision({ service: svc!.name, ...(input.revision ? { revision: input.revision } : {}), ...(input.image ? { image: input.image } : {}) }),
      (r) => r.commands.join(' && '),
    );
    await waitForService(ctx, plan, svc!, timeoutSeconds);
    let servingVersion: string | undefined;
    if (input.verifyUrl) {
      const v = await ctx.step(
        'verify',
        () => verifyServingVersion({ url: input.verifyUrl!, ...(input.expectVersion ? { expectVersion: input.expectVersion } : {}), timeoutSeconds, deadline: Date.now() + timeoutSeconds * 1000 }),
        (r) => r.detail,
      );
      servingVersion = v.version ?? undefined;
    } else {
      ctx.skip('verify', 'no verifyUrl given');
    }
    return { ok: true, service: svc!.name, commands: done.commands, ...(servingVersion ? { servingVersion } : {}), progress: ctx.progress };
  });
}

/** `config-rollback`: Fulcrum 8.3 — env file from its backup, a feature flag off, or the previous ConfigMap. */
export async function configRollback(rawInput?: ConfigRollbackInput): Promise<ConfigRollbackResult> {
  const input = await RunContext.input(PROCEDURES.configRollback, rawInput);
  const need = (field: keyof ConfigRollbackInput, why: string) => {
    if (input[field] === undefined) throw invalid(`${field}: required for kind ${input.kind} (${why})`);
  };
  if (input.kind === 'env-file') need('envFile', 'the env file to restore');
  if (input.kind === 'feature-flag') {
    need('database', 'the database with the feature_flags table');
    need('flag', 'the flag to disable');
  }
  if (input.kind === 'configmap') {
    need('manifest', 'the previous ConfigMap manifest');
    need('service', 'the deployment to restart so pods pick it up');
  }
  const steps: Array<[string, string]> = [['plan', 'Load configuration']];
  if (input.kind === 'env-file') steps.push(['restore', `Restore ${input.envFile} from ${input.backupFile ?? `${input.envFile}.backup`}`]);
  if (input.kind === 'feature-flag') steps.push(['disable', `Disable feature flag ${input.flag} in ${input.database}`]);
  if (input.kind === 'configmap') steps.push(['apply', `kubectl apply -f ${input.manifest}`]);
  if (input.service) steps.push(['restart', `Restart ${input.service}`], ['wait', `Wait for ${input.service} to be healthy`]);
  const ctx = new RunContext(PROCEDURES.configRollback, input.requestedBy ?? 'unknown', steps);

  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadPlan({ procedure: PROCEDURES.configRollback }), (p) => `${p.services.length} services`);
    const svc = input.service ? selectServices(plan, [input.service], 'service')[0] : undefined;
    if (input.kind === 'feature-flag' && !plan.databases.some((d) => d.name === input.database)) {
      throw invalid(`database: unknown database "${input.database}": expected one of ${plan.databases.map((d) => d.name).join(', ') || '(none configured)'}`);
    }
    let detail = '';
    if (input.kind === 'env-file') {
      const r = await ctx.step('restore', () => restoreEnvFile({ envFile: input.envFile!, ...(input.backupFile ? { backupFile: input.backupFile } : {}) }), (x) => x.detail);
      detail = r.detail;
    } else if (input.kind === 'feature-flag') {
      const r = await ctx.step('disable', async () => {
        const flag = await disableFeatureFlag({ database: input.database!, flag: input.flag! });
        if (flag.after) {
          throw ApplicationFailure.create({ type: ErrorTypes.CommandFailed, message: `feature flag ${input.flag} is still enabled after the update` });
        }
        return flag;
      }, (f) => (f.before ? `${input.flag}: enabled → disabled (verified)` : `${input.flag} was already disabled`));
      detail = r.before ? `${input.flag} disabled` : `${input.flag} was already disabled`;
    } else {
      const r = await ctx.step('apply', () => applyConfigManifest({ service: input.service!, manifest: input.manifest! }), (x) => x.command);
      detail = r.output || r.command;
    }
    let restarted: ServiceActionResult | undefined;
    if (svc) {
      restarted = await ctx.step('restart', () => serviceAction({ service: svc.name, action: 'restart' }), (r) => r.command);
      const group = plan.groups.find((g) => g.name === svc.group);
      await waitForService(ctx, plan, svc, input.waitTimeoutSeconds ?? group?.waitTimeoutSeconds ?? DEFAULT_WAIT_SECONDS);
    }
    return { ok: true, kind: input.kind, detail, ...(restarted ? { restarted } : {}), progress: ctx.progress };
  });
}
