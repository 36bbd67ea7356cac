import { policyOf } from '../../common/approvals.js';
import { ApplicationFailure, CancellationScope, condition, log, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { describeMeasurement, resolveQueries } from '../../common/delivery/analysis.js';
import { controlProblem, rollbackSignal, rollbackUpdate } from '../../common/delivery/messages.js';
import {
  DeliveryErrors,
  type BlueGreenInput,
  type BlueGreenResult,
  type Color,
  type DeliveryControlInput,
  type DeliveryPlan,
  type Measurement,
} from '../../common/delivery/types.js';
import { PROCEDURES } from '../../common/procedures.js';
import type { ServiceActionResult } from '../../common/types.js';
import { longRunning, quick } from '../shared/profiles.js';
import { handleCommand } from '../shared/commands.js';
import { RunContext } from '../shared/run-context.js';

const { deliveryPlan, trafficWeight, setTrafficWeight, backendHealth, measureAnalysis, deliveryNotify } = proxyActivities<Activities>(quick);
const { serviceAction } = proxyActivities<Activities>(longRunning);

/** Blue is the router's stable backend (canary weight 0), green its canary backend (weight 100). */
const weightOf = (c: Color) => (c === 'green' ? 100 : 0);
const colorOf = (w: number | null): Color | 'mixed' => (w === 0 ? 'blue' : w === 100 ? 'green' : 'mixed');

interface RollbackControl {
  window: 'before' | 'open' | 'closed';
  requested?: { by: string; reason?: string };
}

/**
 * The `rollback` signal and update: accepted only while the old color is still up (the
 * rollback window); the first accepted one wins.
 */
function rollbackControl(to: () => Color): RollbackControl {
  const control: RollbackControl = { window: 'before' };
  handleCommand(rollbackSignal, rollbackUpdate, {
    validate: (i?: DeliveryControlInput) => {
      const problem = controlProblem(i);
      if (problem) return problem;
      if (control.window === 'before') return 'nothing has been switched yet: reject the approval instead';
      if (control.window === 'closed') return 'the rollback window is over: the old color was scaled down; run blue-green-switch back instead';
      return undefined;
    },
    apply: (i?: DeliveryControlInput) => {
      control.requested ??= { by: typeof i?.by === 'string' && i.by.trim() ? i.by.trim() : 'unknown', ...(i?.reason ? { reason: i.reason } : {}) };
      return { accepted: true, detail: `switching back from ${to()} now` };
    },
    refuse: (_i, reason) => log.warn('rollback refused', { reason }),
    failure: (reason) => new Error(reason),
  });
  return control;
}

/** The color about to take traffic is healthy (and, unless skipped, its metrics pass), or the run fails with nothing switched. */
async function checkPreview(plan: DeliveryPlan, to: Color, skipAnalysis: boolean): Promise<{ health: string; analysis?: Measurement }> {
  const previewBackend = to === 'green' ? 'canary' : 'stable';
  const health = await backendHealth({ router: plan.router.name, backend: previewBackend });
  let analysis: Measurement | undefined;
  if (!skipAnalysis && plan.prometheusConfigured) {
    const selector = previewBackend === 'canary' ? plan.router.canarySelector : plan.router.stableSelector;
    analysis = await measureAnalysis({ queries: resolveQueries(plan.analysis, selector), onMissingData: plan.analysis.onMissingData });
  }
  if (!health.ok || (analysis && !analysis.ok)) {
    const bad = analysis?.results.find((r) => !r.ok);
    throw ApplicationFailure.create({
      type: DeliveryErrors.PreviewUnhealthy,
      nonRetryable: true,
      message: `${to} is not ready, nothing was switched: ${!health.ok ? health.detail : `${bad!.name} ${bad!.detail}`}`,
      details: [{ health, analysis }],
    });
  }
  return { health: health.detail, ...(analysis ? { analysis } : {}) };
}

/** `blue-green-switch`: Fulcrum 8.1's blue-green-switch.sh blue|green [--dry-run], with a rollback window. */
export async function blueGreenSwitch(rawInput?: BlueGreenInput): Promise<BlueGreenResult> {
  // Registered before the input check so a rollback sent at once gets its answer (nothing switched yet).
  let to: Color = 'green';
  const control = rollbackControl(() => to);
  const input = await RunContext.input(PROCEDURES.blueGreenSwitch, rawInput);
  to = input.to;
  const ctx = new RunContext(PROCEDURES.blueGreenSwitch, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration and the active color'],
  ]);
  return ctx.run(async () => {
    const { plan, current, commands } = await ctx.step('plan', async () => {
      const plan = await deliveryPlan({ procedure: PROCEDURES.blueGreenSwitch, router: input.router });
      const now = await trafficWeight({ router: input.router });
      return { plan, current: now.weight, commands: now.plan[String(weightOf(to))] ?? [] };
    }, (p) => `router ${p.plan.router.name}: ${colorOf(p.current)} active, switching to ${to}`);
    const from = colorOf(current);
    const oldColor: Color = to === 'green' ? 'blue' : 'green';
    const oldService = to === 'green' ? plan.router.stableService : plan.router.canaryService;
    const delay = input.scaleDownDelaySeconds ?? plan.scaleDownDelaySeconds;
    const whatChanges = [
      ...commands,
      `keep ${oldColor} for ${delay}s (rollback window)`,
      oldService ? `then stop ${oldService} (${oldColor})` : `then leave ${oldColor} running (no ${oldColor === 'blue' ? 'stableService' : 'canaryService'} configured)`,
    ];
    const base = { dryRun: input.dryRun === true, from, to, plan: whatChanges, approvals: ctx.approvals, progress: ctx.progress };

    if (input.dryRun) return { ...base, ok: true, switched: false, rolledBack: false };
    if (from === to) return { ...base, ok: true, plan: [], switched: false, rolledBack: false };

    ctx.addStep('check-preview', `Check ${to} (health${input.skipAnalysis ? '' : ' and metrics'})`);
    ctx.addStep('approve-switch', `Approve switching traffic from ${from} to ${to}`);
    ctx.addStep('switch', `Switch all traffic to ${to}`);
    ctx.addStep('keep-old', `Keep ${oldColor} for ${delay}s (rollback window)`);
    ctx.addStep('scale-down', `Stop ${oldColor}${oldService ? ` (${oldService})` : ''}`);

    const previewCheck = await ctx.step('check-preview', () => checkPreview(plan, to, input.skipAnalysis === true), (c) =>
      `${c.health}${c.analysis ? `; ${describeMeasurement(c.analysis)}` : ''}`,
    );

    const record = await ctx.requestApproval({
      step: 'approve-switch',
      summary: `Switch router ${plan.router.name} (${plan.environment}) from ${from} to ${to}: ${commands.join('; ')}. ${oldColor} stays up for ${delay}s for an instant rollback.`,
      destructive: true,
      policy: policyOf(plan),
      timeoutSeconds: input.approvalTimeoutSeconds ?? plan.approvalTimeoutSeconds,
    });
    RunContext.failUnlessApproved(record, 'nothing was switched');

    await ctx.step('switch', () => setTrafficWeight({ router: plan.router.name, weight: weightOf(to) }), (c) => `${to} active (${c.durationMs} ms)`);
    control.window = 'open';
    await ctx.step('keep-old', async () => {
      if (delay > 0) await condition(() => control.requested !== undefined, delay * 1000);
      return control.requested;
    }, (r) => (r ? `rollback requested by ${r.by}` : `${delay}s passed without a rollback`));

    if (control.requested) {
      const r = control.requested;
      ctx.skip('scale-down', `rolled back by ${r.by}`);
      ctx.addStep('switch-back', `Switch back to ${oldColor}`);
      await CancellationScope.nonCancellable(() =>
        ctx.step('switch-back', () => setTrafficWeight({ router: plan.router.name, weight: weightOf(oldColor) }), (c) => `${oldColor} active again (${c.durationMs} ms)`),
      );
      control.window = 'closed';
      await deliveryNotify({ event: 'blue-green-rolled-back', text: `Router ${plan.router.name}: switched back to ${oldColor} by ${r.by}`, details: { router: plan.router.name, by: r.by } });
      const result: BlueGreenResult = { ...base, ok: false, switched: true, rolledBack: true, previewCheck };
      throw ApplicationFailure.create({
        type: DeliveryErrors.SwitchRolledBack,
        nonRetryable: true,
        message: `switch to ${to} rolled back by ${r.by}${r.reason ? `: ${r.reason}` : ''}; ${oldColor} serves all traffic`,
        details: [result],
      });
    }
    control.window = 'closed';
    let scaledDown: ServiceActionResult | undefined;
    if (oldService) {
      scaledDown = await ctx.step('scale-down', () => serviceAction({ service: oldService, action: 'stop' }), (r) => r.command);
    } else {
      ctx.skip('scale-down', `no ${oldColor === 'blue' ? 'stableService' : 'canaryService'} configured for router ${plan.router.name}`);
    }
    await deliveryNotify({ event: 'blue-green-switched', text: `Router ${plan.router.name}: ${to} is active`, details: { router: plan.router.name, to } });
    return { ...base, ok: true, switched: true, rolledBack: false, previewCheck, ...(scaledDown ? { scaledDown } : {}) };
  });
}
