import { policyOf } from '../../common/approvals.js';
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  type SignalDefinition,
} from '@temporalio/workflow';
import type { UpdateDefinition } from '@temporalio/common';
import type { Activities } from '../../activities/index.js';
import { ErrorTypes } from '../../common/errors.js';
import { analysisOverrideProblems, describeMeasurement, mergeAnalysis, resolveQueries } from '../../common/delivery/analysis.js';
import {
  abortSignal,
  abortUpdate,
  canaryStatusQuery,
  controlProblem,
  pauseSignal,
  pauseUpdate,
  promoteSignal,
  promoteUpdate,
  resumeSignal,
  resumeUpdate,
} from '../../common/delivery/messages.js';
import {
  DeliveryErrors,
  type AnalysisSettings,
  type CanaryDeployInput,
  type CanaryDeployResult,
  type CanaryStatus,
  type DeliveryControlInput,
  type DeliveryPlan,
  type Measurement,
  type QueryResult,
  type StepAnalysis,
} from '../../common/delivery/types.js';
import { PROCEDURES } from '../../common/procedures.js';
import type { ServiceActionResult } from '../../common/types.js';
import { longRunning, quick } from '../shared/profiles.js';
import type { CleanupReport } from '../../common/run-account.js';
import { handleCommand } from '../shared/commands.js';
import { RunContext, type EarlyAnswer } from '../shared/run-context.js';

const { deliveryPlan, setTrafficWeight, measureAnalysis, deliveryNotify } = proxyActivities<Activities>(quick);
const { serviceAction } = proxyActivities<Activities>(longRunning);

/** Promote, pause, resume and abort of a running canary, plus its live status (query `canaryStatus`). */
export class CanaryControls {
  paused = false;
  promoteRequested = false;
  abort: { by: string; reason?: string } | undefined;
  readonly status: CanaryStatus;

  constructor(router: string, steps: number[]) {
    this.status = { router, phase: 'planning', weight: 0, steps, stepIndex: -1, paused: false };
    const who = (i?: DeliveryControlInput) => (typeof i?.by === 'string' && i.by.trim() ? i.by.trim() : 'unknown');
    const finished = () => this.status.phase === 'promoted' || this.status.phase === 'rolled-back' || this.status.phase === 'rolling-back';
    const refusal = (i?: DeliveryControlInput) => controlProblem(i) ?? (finished() ? `the canary is already ${this.status.phase}` : undefined);
    /** A refused signal is dropped and logged, never kept: the canary has no refusal log to grow. */
    const control = (
      name: string,
      signal: SignalDefinition<[DeliveryControlInput]>,
      update: UpdateDefinition<CanaryStatus, [DeliveryControlInput]>,
      apply: (i?: DeliveryControlInput) => CanaryStatus,
      validate: (i?: DeliveryControlInput) => string | undefined = refusal,
    ) =>
      handleCommand(signal, update, {
        validate,
        apply,
        refuse: (_i, reason) => log.warn('canary control refused', { control: name, reason }),
        failure: (reason) => new Error(reason),
      });
    control('promote', promoteSignal, promoteUpdate, (i) => {
      this.promoteRequested = true;
      log.info('canary promote requested', { by: who(i) });
      return this.snapshot();
    });
    control('pause', pauseSignal, pauseUpdate, (i) => {
      this.paused = true;
      this.status.paused = true;
      log.info('canary paused', { by: who(i), reason: i?.reason });
      return this.snapshot();
    });
    control(
      'resume',
      resumeSignal,
      resumeUpdate,
      (i) => {
        this.paused = false;
        this.status.paused = false;
        log.info('canary resumed', { by: who(i) });
        return this.snapshot();
      },
      (i) => refusal(i) ?? (this.paused ? undefined : 'the canary is not paused'),
    );
    control('abort', abortSignal, abortUpdate, (i) => {
      this.abort ??= { by: who(i), ...(i?.reason ? { reason: i.reason } : {}) };
      this.status.abortRequested = this.abort;
      log.warn('canary abort requested', { ...this.abort });
      return this.snapshot();
    });
    setHandler(canaryStatusQuery, () => this.snapshot());
  }

  get aborted(): boolean {
    return this.abort !== undefined;
  }

  snapshot(): CanaryStatus {
    return { ...this.status, paused: this.paused };
  }
}

export interface CanaryOptions {
  steps: number[];
  bakeSeconds: number;
  approveEachStep: boolean;
  analysis: AnalysisSettings;
  skipAnalysis: boolean;
  approvalTimeoutSeconds: number;
}

/** Checks the canary inputs the field kinds cannot: step order and range, the analysis override. */
export function canaryOptions(input: CanaryDeployInput, plan: DeliveryPlan, procedure: string = PROCEDURES.canaryDeploy): CanaryOptions {
  const problems = analysisOverrideProblems(input.analysis);
  const steps = input.steps ?? plan.canary.steps;
  if (steps.length === 0 || steps.some((w) => w < 1 || w > 100) || steps.some((w, i) => i > 0 && w <= steps[i - 1]!)) {
    problems.push(`steps: expected increasing percentages 1..100, e.g. [5, 25, 50, 100] (got ${JSON.stringify(steps)})`);
  }
  const skipAnalysis = input.skipAnalysis === true;
  if (!skipAnalysis && !plan.prometheusConfigured) {
    problems.push('analysis needs delivery.prometheus.url in the config; or pass skipAnalysis: true to bake without a metric gate');
  }
  if (problems.length > 0) {
    throw ApplicationFailure.nonRetryable(`invalid input for ${procedure}: ${problems.join('; ')}`, ErrorTypes.InvalidInput);
  }
  return {
    steps,
    bakeSeconds: input.bakeSeconds ?? plan.canary.bakeSeconds,
    approveEachStep: input.approveEachStep === true,
    analysis: mergeAnalysis(plan.analysis, input.analysis),
    skipAnalysis,
    approvalTimeoutSeconds: input.approvalTimeoutSeconds ?? plan.approvalTimeoutSeconds,
  };
}

export function addCanarySteps(ctx: RunContext, opts: CanaryOptions): void {
  opts.steps.forEach((w, i) => {
    ctx.addStep(`set-${w}`, `Route ${w} % of traffic to the canary`);
    ctx.addStep(`bake-${w}`, `Bake at ${w} % (${opts.bakeSeconds}s)`);
    ctx.addStep(`analysis-${w}`, opts.skipAnalysis ? `Analysis at ${w} % (skipped)` : `Analysis at ${w} % (${opts.analysis.count} × ${opts.analysis.intervalSeconds}s)`);
    const next = opts.steps[i + 1];
    if (opts.approveEachStep && next !== undefined) ctx.addStep(`approve-${w}`, `Approve going from ${w} % to ${next} %`);
  });
}

class Rollback extends Error {
  constructor(
    readonly reason: string,
    readonly failedQuery?: QueryResult,
    readonly failedMeasurementAt?: string,
  ) {
    super(reason);
  }
}

/**
 * The canary itself: step through the weights, bake, analyse, optionally ask; on a
 * failed analysis, an abort, a rejection or a cancellation, traffic goes back to 0 %
 * first, then the canary is stopped and people are told. Never throws a rollback: the
 * result says what happened, the caller decides whether the run fails.
 */
export async function runCanary(ctx: RunContext, plan: DeliveryPlan, opts: CanaryOptions, controls: CanaryControls): Promise<CanaryDeployResult> {
  const router = plan.router.name;
  const analyses: StepAnalysis[] = [];
  const base = () => ({ router, steps: analyses, approvals: ctx.approvals, progress: ctx.progress });
  const abortReason = () => `aborted by ${controls.abort!.by}${controls.abort!.reason ? `: ${controls.abort!.reason}` : ''}`;
  const checkAbort = () => {
    if (controls.aborted) throw new Rollback(abortReason());
  };

  try {
    for (const [i, weight] of opts.steps.entries()) {
      checkAbort();
      controls.status.stepIndex = i;
      controls.status.phase = 'setting-weight';
      await ctx.step(`set-${weight}`, async () => {
        const change = await setTrafficWeight({ router, weight });
        controls.status.weight = weight;
        return change;
      }, (c) => `${c.weight} % on canary (was ${c.previousWeight ?? 'unknown'} %)${c.changed ? `, ${c.durationMs} ms` : ', already in effect'}`);

      controls.status.phase = 'baking';
      await ctx.step(`bake-${weight}`, async () => {
        ctx.detail(`bake-${weight}`, `${weight} % on the canary, baking ${opts.bakeSeconds}s (signal promote to skip, abort to roll back)`);
        controls.promoteRequested = false;
        if (opts.bakeSeconds > 0) await condition(() => controls.aborted || controls.promoteRequested, opts.bakeSeconds * 1000);
        checkAbort();
        const promoted = controls.promoteRequested;
        controls.promoteRequested = false;
        return promoted;
      }, (promoted) => (promoted ? 'promoted: bake cut short' : `${opts.bakeSeconds}s baked`));

      const analysis: StepAnalysis = { weight, ok: true, measurements: [], failures: 0 };
      analyses.push(analysis);
      if (opts.skipAnalysis) {
        ctx.skip(`analysis-${weight}`, 'skipAnalysis');
      } else {
        controls.status.phase = 'analysing';
        await ctx.step(`analysis-${weight}`, () => analyse(analysis, opts.analysis, plan.router.canarySelector, controls, (text) => ctx.detail(`analysis-${weight}`, text)), (a) =>
          `${a.measurements.length - a.failures}/${a.measurements.length} passed; last: ${describeMeasurement(a.measurements.at(-1)!)}`,
        );
      }

      while (controls.paused && !controls.aborted) {
        controls.status.phase = 'paused';
        await condition(() => !controls.paused || controls.aborted);
      }
      checkAbort();

      const next = opts.steps[i + 1];
      if (opts.approveEachStep && next !== undefined) {
        controls.status.phase = 'awaiting-approval';
        const last = analysis.measurements.at(-1);
        const answer = await Promise.race([
          ctx.requestApproval({
            step: `approve-${weight}`,
            summary: `The canary on router ${router} is at ${weight} %${last ? ` (last analysis: ${describeMeasurement(last)})` : ''}. Approve to go to ${next} %, reject to roll back to 0 %.`,
            destructive: false,
            policy: policyOf(plan),
            timeoutSeconds: opts.approvalTimeoutSeconds,
          }),
          condition(() => controls.aborted).then(() => undefined),
        ]);
        checkAbort();
        if (answer && answer.decision !== 'approved') {
          throw new Rollback(answer.decision === 'timed-out' ? `no approval to go to ${next} % within ${opts.approvalTimeoutSeconds}s` : `going to ${next} % rejected by ${answer.by}${answer.comment ? `: ${answer.comment}` : ''}`);
        }
      }
    }
  } catch (err) {
    let reason: string;
    let rollback: Rollback | undefined;
    if (err instanceof Rollback) {
      rollback = err;
      reason = err.reason;
    } else if (isCancellation(err)) {
      reason = 'the run was cancelled';
    } else {
      reason = `the canary failed: ${err instanceof Error ? err.message : String(err)}`;
    }
    const undone = await rollBack(ctx, plan, controls, reason);
    if (!rollback) throw err;
    return {
      ...base(),
      ok: false,
      outcome: 'rolled-back',
      finalWeight: 0,
      reason,
      ...(rollback.failedQuery ? { failedQuery: rollback.failedQuery } : {}),
      ...(rollback.failedMeasurementAt ? { failedMeasurementAt: rollback.failedMeasurementAt } : {}),
      ...undone,
    };
  }

  controls.status.phase = 'promoted';
  const note = await deliveryNotify({
    event: 'canary-promoted',
    text: `Canary on ${router} promoted to ${opts.steps.at(-1)} % (${plan.environment})`,
    details: { router, weight: opts.steps.at(-1) },
  });
  return { ...base(), ok: true, outcome: 'promoted', finalWeight: controls.status.weight, notified: note.sent };
}

async function analyse(
  analysis: StepAnalysis,
  settings: AnalysisSettings,
  selector: string,
  controls: CanaryControls,
  report: (text: string) => void,
): Promise<StepAnalysis> {
  const queries = resolveQueries(settings, selector);
  for (let m = 0; m < settings.count; m++) {
    if (m > 0) {
      controls.promoteRequested = false;
      await condition(() => controls.aborted || controls.promoteRequested, settings.intervalSeconds * 1000);
      if (controls.aborted) throw new Rollback(`aborted by ${controls.abort!.by}${controls.abort!.reason ? `: ${controls.abort!.reason}` : ''}`);
      if (controls.promoteRequested) break;
    }
    let measurement: Measurement;
    try {
      measurement = await measureAnalysis({ queries, onMissingData: settings.onMissingData });
    } catch (err) {
      // Prometheus unreachable or a query it refuses: no evidence the canary is good.
      const detail = err instanceof ActivityFailure && err.cause ? err.cause.message : String(err);
      measurement = { at: new Date().toISOString(), ok: false, results: [{ name: 'prometheus', query: '', value: null, ok: false, detail }] };
    }
    analysis.measurements.push(measurement);
    controls.status.lastAnalysis = measurement;
    // Shown live in the UI's current details and `runbook status` while the step runs.
    report(
      `${analysis.weight} % on the canary, measurement ${analysis.measurements.length}: ` +
        measurement.results.map((r) => `${r.name} = ${r.value === null ? 'no data' : r.value} ${r.ok ? 'ok' : 'FAIL'}`).join(', '),
    );
    if (!measurement.ok) {
      analysis.failures += 1;
      if (analysis.failures > settings.failureLimit) {
        analysis.ok = false;
        const failed = measurement.results.find((r) => !r.ok)!;
        analysis.failed = failed;
        throw new Rollback(
          `analysis failed at ${analysis.weight} %: ${failed.name} = ${failed.value === null ? 'no data' : failed.value} (${failed.detail})${failed.query ? ` from ${failed.query}` : ''}`,
          failed,
          measurement.at,
        );
      }
    }
  }
  return analysis;
}

/** Traffic back to 0 % first (it is what users feel), then the canary stopped, then the notification. */
async function rollBack(
  ctx: RunContext,
  plan: DeliveryPlan,
  controls: CanaryControls,
  reason: string,
): Promise<{ trafficZeroAt?: string; canaryStopped?: ServiceActionResult; notified: boolean }> {
  controls.status.phase = 'rolling-back';
  return CancellationScope.nonCancellable(async () => {
    ctx.addStep('rollback-traffic', 'Roll back: all traffic to stable (0 %)');
    const canary = plan.router.canaryService;
    if (canary) ctx.addStep('stop-canary', `Roll back: stop the canary (${canary})`);
    ctx.addStep('notify', 'Notify');
    const change = await ctx.step('rollback-traffic', () => setTrafficWeight({ router: plan.router.name, weight: 0 }), (c) => `0 % on canary (was ${c.previousWeight ?? 'unknown'} %); ${reason}`);
    const trafficZeroAt = new Date().toISOString();
    controls.status.weight = change.weight;
    let canaryStopped: ServiceActionResult | undefined;
    if (canary) {
      canaryStopped = await ctx.step('stop-canary', () => serviceAction({ service: canary, action: 'stop' }), (r) => r.command);
    }
    const note = await ctx.step('notify', () =>
      deliveryNotify({
        event: 'canary-rolled-back',
        text: `Canary on ${plan.router.name} rolled back to 0 % (${plan.environment}): ${reason}`,
        details: { router: plan.router.name, reason },
      }), (n) => n.detail);
    controls.status.phase = 'rolled-back';
    return { trafficZeroAt, ...(canaryStopped ? { canaryStopped } : {}), notified: note.sent };
  });
}

/** Where a stopped canary left traffic, and what to do next. */
export function canaryLeft(plan: DeliveryPlan, controls: CanaryControls): CleanupReport {
  const router = plan.router.name;
  if (controls.status.phase === 'planning') return {};
  if (controls.status.phase === 'rolled-back') {
    return {
      state: `all traffic on stable (0 % on the canary of router ${router})${plan.router.canaryService ? `, ${plan.router.canaryService} stopped` : ''}`,
      next: 'start a new canary-deploy when the canary is ready',
    };
  }
  return {
    state: `${controls.status.weight} % of traffic may still be on the canary of router ${router}: the rollback did not finish`,
    next: `set router ${router} to 0 % on the canary by hand, then stop the canary service`,
  };
}

/** The canary's status while its input is checked: planning, no traffic yet. */
export const canaryNotStarted: EarlyAnswer = () =>
  setHandler(canaryStatusQuery, () => ({ router: '', phase: 'planning', weight: 0, steps: [], stepIndex: -1, paused: false }));

/** `canary-deploy`: AlphaPulse 3.1 — 5 → 25 → 50 → 100 % with a Prometheus gate at every step. */
export async function canaryDeploy(rawInput?: CanaryDeployInput): Promise<CanaryDeployResult> {
  const input = await RunContext.input(PROCEDURES.canaryDeploy, rawInput, [canaryNotStarted]);
  const ctx = new RunContext(PROCEDURES.canaryDeploy, input.requestedBy ?? 'unknown', [['plan', 'Load configuration']]);
  const controls = new CanaryControls(input.router, input.steps ?? []);
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => deliveryPlan({ procedure: PROCEDURES.canaryDeploy, router: input.router }), (p) =>
      `router ${p.router.name} (${p.router.type}): stable ${p.router.stable}, canary ${p.router.canary}`,
    );
    const opts = canaryOptions(input, plan);
    controls.status.steps = opts.steps;
    addCanarySteps(ctx, opts);
    // The rollback itself runs in runCanary (non-cancellable); a cancelled run's account says where traffic was left.
    ctx.onCancel(async () => canaryLeft(plan, controls));
    const result = await runCanary(ctx, plan, opts, controls);
    if (!result.ok) {
      throw ApplicationFailure.create({
        type: DeliveryErrors.CanaryRolledBack,
        nonRetryable: true,
        message: `canary on ${plan.router.name} rolled back, traffic 100 % stable: ${result.reason}`,
        details: [result],
      });
    }
    return result;
  });
}
