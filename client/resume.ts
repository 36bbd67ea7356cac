import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import type { temporal } from '@temporalio/proto';
import type Long from 'long';
import { clip, textProblem } from '../common/bounds.js';
import { repeatableBecause } from '../common/resume.js';
import { describeApproval } from '../common/run-account.js';
import type { ApprovalRecord, PendingApproval, RunProgress } from '../common/types.js';
import { UserError } from './user-error.js';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** What the closed run says of itself (its progress and approvals, decoded with the codec). */
export interface FailedRunFacts {
  workflowId: string;
  progress?: RunProgress;
  approvals: readonly ApprovalRecord[];
  failure?: string;
}

/** Where a resume resets a failed run to, what it repeats and which approvals it keeps. */
export interface ResumePlan {
  /** The failed step (from the run's progress), or the activity when the run recorded no steps. */
  step: { id: string; title: string; detail?: string };
  /** The failed activity; with `decided`, the first activity of a step that failed on what its activities returned. */
  failedActivity: { type: string; scheduledEventId: number; local: boolean; decided?: boolean };
  /** The WorkflowTaskCompleted event to reset to: the resumed run continues from the task before it. */
  resetEventId: number;
  /** Why the reset point is where it is, one line each. */
  why: string[];
  /** Activities the old run scheduled after the reset point: the new run runs them again. */
  repeats: Array<{ type: string; because: string }>;
  /** Approval gates before the reset point: they stay given. */
  kept: ApprovalRecord[];
  /** Gates whose request is after the reset point: they must be answered again (signals and updates are not reapplied). */
  freshApprovals: string[];
}

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));

function eventMs(e: HistoryEvent): number | undefined {
  const t = e.eventTime;
  return t?.seconds ? Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : undefined;
}

/** The activity type a local activity's marker names (core writes this bookkeeping unencrypted). */
function localActivityType(e: HistoryEvent): string | undefined {
  const m = e.markerRecordedEventAttributes;
  if (m?.markerName !== 'core_local_activity') return undefined;
  const data = m.details?.data?.payloads?.[0]?.data;
  if (!data) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type?: unknown };
    return typeof parsed.activity_type === 'string' ? parsed.activity_type : undefined;
  } catch {
    return undefined;
  }
}

/** True for the search attribute upsert RunContext makes when it asks for an approval (AwaitingApproval = true). */
function asksApproval(e: HistoryEvent, attribute: string): boolean {
  const field = e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.[attribute];
  if (!field?.data) return false;
  try {
    return JSON.parse(Buffer.from(field.data).toString('utf8')) === true;
  } catch {
    return false;
  }
}

/**
 * Works out a resume from a failed run's history: the last failed activity (or local activity)
 * and the workflow task that scheduled it; moved back before the approval request of the gate
 * the step is behind (that gate must be answered again), and before any child workflow (a
 * database lock) that the run started and that has ended since (the resumed run must take it
 * again). Refuses, with the reason, when there is no failed step, when the run failed on an
 * answer (rejected, timed out) rather than a step, or when an activity to repeat is not known
 * to be safe to repeat (common/resume.ts).
 */
export function planResume(events: readonly HistoryEvent[], run: FailedRunFacts, approvalAttribute = 'AwaitingApproval'): ResumePlan {
  const byId = new Map<number, HistoryEvent>();
  for (const e of events) byId.set(num(e.eventId), e);

  // An approval that was rejected or timed out is an answer, not a failure: resuming cannot change it.
  const unanswered = run.approvals.find((a) => a.decision !== 'approved');
  const failedSteps = run.progress?.steps.filter((s) => s.status === 'failed') ?? [];
  if (unanswered && failedSteps.some((s) => s.id === unanswered.step)) {
    throw new UserError(
      `run ${run.workflowId} did not fail in a step: ${describeApproval(unanswered)}. A resume cannot change an answer: start a new run (runbook run ${run.progress?.procedure ?? '<procedure>'})`,
    );
  }

  // The step the run stopped at: the first failed step after which no step succeeded. A later
  // failed step is the cleanup it set off (a canary's rollback that could not reach the router
  // either); a failed step the run went on from is not where it stopped.
  const startMs = (s: { startedAt?: string }) => (s.startedAt ? Date.parse(s.startedAt) : NaN);
  const succeededAfter = (f: { id: string; startedAt?: string }) =>
    (run.progress?.steps ?? []).filter((s) => s.id !== f.id && s.status === 'succeeded' && startMs(s) > startMs(f));
  const byStart = [...failedSteps].sort((a, b) => (startMs(a) || 0) - (startMs(b) || 0));
  const failedStep = byStart.find((s) => succeededAfter(s).length === 0);
  const lastFailed = byStart[byStart.length - 1];
  if (!failedStep && lastFailed) {
    // The run did something after its failure (a rollback, a cleanup): a resumed run would go on
    // from a state those steps changed.
    const done = succeededAfter(lastFailed);
    throw new UserError(
      `run ${run.workflowId} cannot be resumed from step ${lastFailed.id}: after it failed the run went on and did ${done.map((s) => `${s.id} (${s.title})`).join(', ')}, which changed what the steps before it had done. Fix the cause and start a new run (runbook run ${run.progress?.procedure ?? '<procedure>'})`,
    );
  }
  // The failed step's end, when the run recorded it: a cleanup activity that failed after the
  // step (and was ignored) is not the failure to resume from.
  const stepEnded = failedStep?.endedAt ? Date.parse(failedStep.endedAt) : NaN;
  let failed: { event: HistoryEvent; type: string; scheduledEventId: number; wftEventId: number; local: boolean; decided?: boolean } | undefined;
  for (const e of events) {
    const at = eventMs(e);
    if (!Number.isNaN(stepEnded) && at !== undefined && at > stepEnded + 1000) continue;
    const f = e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes;
    if (f) {
      const scheduled = byId.get(num(f.scheduledEventId));
      const a = scheduled?.activityTaskScheduledEventAttributes;
      if (scheduled && a) {
        failed = { event: e, type: a.activityType?.name ?? '?', scheduledEventId: num(scheduled.eventId), wftEventId: num(a.workflowTaskCompletedEventId), local: false };
      }
    }
    const type = localActivityType(e);
    if (type && e.markerRecordedEventAttributes?.failure) {
      failed = { event: e, type, scheduledEventId: num(e.eventId), wftEventId: num(e.markerRecordedEventAttributes.workflowTaskCompletedEventId), local: true };
    }
  }
  // A step can fail on what its activities returned (a preflight check, a verification): no
  // activity failed in it, so the whole step runs again, from its first activity.
  const stepStarted = failedStep?.startedAt ? Date.parse(failedStep.startedAt) : NaN;
  const failedAt = failed ? eventMs(failed.event) : undefined;
  if (!Number.isNaN(stepStarted) && (!failed || (failedAt !== undefined && failedAt < stepStarted - 1000))) {
    for (const e of events) {
      const at = eventMs(e);
      if (at === undefined || at < stepStarted - 1000 || (!Number.isNaN(stepEnded) && at > stepEnded + 1000)) continue;
      const a = e.activityTaskScheduledEventAttributes;
      const type = a?.activityType?.name ?? localActivityType(e);
      const task = num(a ? a.workflowTaskCompletedEventId : e.markerRecordedEventAttributes?.workflowTaskCompletedEventId);
      if (type && task > 0) {
        failed = { event: e, type, scheduledEventId: num(e.eventId), wftEventId: task, local: !a, decided: true };
        break;
      }
    }
  }
  if (!failed || failed.wftEventId <= 0) {
    throw new UserError(
      `run ${run.workflowId} has no failed step to resume from: no activity failed or timed out in its history${run.failure ? ` (it failed with: ${clip(run.failure, 300)})` : ''}. Fix the cause and start a new run`,
    );
  }
  const step = failedStep
    ? { id: failedStep.id, title: failedStep.title, ...(failedStep.detail ? { detail: failedStep.detail } : {}) }
    : { id: `activity-${failed.scheduledEventId}`, title: `activity ${failed.type}` };

  let reset = failed.wftEventId;
  const why = [
    failed.decided
      ? `the workflow task (event ${reset}) that scheduled ${failed.local ? 'local activity' : 'activity'} ${failed.type}, the first of step ${step.id}, which failed on what its activities returned`
      : `the workflow task (event ${reset}) that scheduled ${failed.local ? 'local activity' : 'activity'} ${failed.type} of step ${step.id}`,
  ];

  // The gate the failed step is behind: the last approval asked before the failed activity was scheduled.
  const requests = events.filter((e) => asksApproval(e, approvalAttribute));
  const gateIndex = requests.reduce((found, e, i) => (num(e.eventId) < failed.scheduledEventId ? i : found), -1);
  if (gateIndex >= 0) {
    const gateTask = num(requests[gateIndex]!.upsertWorkflowSearchAttributesEventAttributes?.workflowTaskCompletedEventId);
    if (gateTask > 0 && gateTask < reset) {
      reset = gateTask;
      why.push(`moved before the approval request of step ${run.approvals[gateIndex]?.step ?? `#${gateIndex + 1}`} (event ${gateTask}): a step behind an approval needs a fresh one`);
    }
  }

  // A child started before the reset point and not seen to end before it (a database lock, released
  // when the run failed: its end is not even in the parent's history) would be believed still held.
  const closedAt = new Map<number, number>();
  for (const e of events) {
    const c =
      e.childWorkflowExecutionCompletedEventAttributes ??
      e.childWorkflowExecutionFailedEventAttributes ??
      e.childWorkflowExecutionCanceledEventAttributes ??
      e.childWorkflowExecutionTimedOutEventAttributes ??
      e.childWorkflowExecutionTerminatedEventAttributes ??
      e.startChildWorkflowExecutionFailedEventAttributes;
    if (c) closedAt.set(num(c.initiatedEventId), num(e.eventId));
  }
  for (let moved = true; moved; ) {
    moved = false;
    for (const e of events) {
      const child = e.startChildWorkflowExecutionInitiatedEventAttributes;
      const id = num(e.eventId);
      if (!child || id >= reset) continue;
      const closed = closedAt.get(id);
      if (closed !== undefined && closed <= reset) continue;
      const task = num(child.workflowTaskCompletedEventId);
      if (task > 0 && task < reset) {
        reset = task;
        moved = true;
        why.push(`moved before child workflow ${child.workflowId ?? '?'} (${child.workflowType?.name ?? '?'}, event ${id}): it has ended since, so the resumed run starts it again`);
      }
    }
  }

  // Everything scheduled after the reset point runs again; each must be known to be safe to repeat.
  const repeats = new Map<string, string>();
  const unsafe: string[] = [];
  // Activities in flight at the reset point are dispatched again too.
  const activityDone = new Map<number, number>();
  for (const e of events) {
    const c = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes ?? e.activityTaskCanceledEventAttributes;
    if (c) activityDone.set(num(c.scheduledEventId), num(e.eventId));
  }
  for (const e of events) {
    const id = num(e.eventId);
    const inFlight = !!e.activityTaskScheduledEventAttributes && (activityDone.get(id) ?? Infinity) > reset;
    if (id <= reset && !inFlight) continue;
    const type = e.activityTaskScheduledEventAttributes?.activityType?.name ?? localActivityType(e);
    if (!type || repeats.has(type) || unsafe.includes(type)) continue;
    const because = repeatableBecause(type);
    if (because === undefined) unsafe.push(type);
    else repeats.set(type, because);
  }
  if (unsafe.length > 0) {
    throw new UserError(
      `run ${run.workflowId} cannot be resumed from step ${step.id}: it would run ${unsafe.join(', ')} again, which ${unsafe.length === 1 ? 'is' : 'are'} not known to be safe to repeat (common/resume.ts lists the activities checked). Fix the cause and start a new run`,
    );
  }

  const after = requests.filter((e) => num(e.eventId) > reset);
  const firstRedone = requests.length - after.length;
  const kept = run.approvals.slice(0, firstRedone);
  const freshApprovals = after.map((_, i) => run.approvals[firstRedone + i]?.step).filter((s): s is string => !!s);
  return {
    step,
    failedActivity: { type: failed.type, scheduledEventId: failed.scheduledEventId, local: failed.local, ...(failed.decided ? { decided: true } : {}) },
    resetEventId: reset,
    why,
    repeats: [...repeats].map(([type, because]) => ({ type, because })),
    kept,
    freshApprovals,
  };
}

export interface ResumeOutcome {
  workflowId: string;
  failedRunId: string;
  runId?: string;
  plan: ResumePlan;
  reason: string;
  dryRun: boolean;
  pending?: PendingApproval | null;
}

/**
 * `runbook resume`: resets the failed run to the workflow task before its failed step (Temporal's
 * Reset), keeping what the steps before it did and recorded. Refused for a run that is not failed.
 */
export async function resumeRun(
  client: import('@temporalio/client').Client,
  workflowId: string,
  opts: { by: string; dryRun?: boolean; waitSeconds?: number },
): Promise<ResumeOutcome> {
  const [{ closedRun }, { RUN_CANCELLED }, { AwaitingApproval }, proto] = await Promise.all([
    import('./operations.js'),
    import('../common/run-account.js'),
    import('../common/search-attributes.js'),
    import('@temporalio/proto'),
  ]);
  const by = opts.by.trim();
  const problem = textProblem('--as', by, { name: true, required: true }) ?? (by ? undefined : '--as: your name is required');
  if (problem) throw new UserError(problem);
  let desc;
  try {
    desc = await client.workflow.getHandle(workflowId).describe();
  } catch (err) {
    if ((err as Error).name === 'WorkflowNotFoundError') throw new UserError(`no run with id ${workflowId}`);
    throw err;
  }
  const status = desc.status.name;
  if (status === 'RUNNING') {
    throw new UserError(`run ${workflowId} is running (run ${desc.runId}): only a failed run can be resumed; see \`runbook status ${workflowId}\``);
  }
  const closed = await closedRun(client, desc);
  const cancelled = closed.failureType === RUN_CANCELLED || status === 'CANCELLED';
  if (status !== 'FAILED' || cancelled) {
    const how =
      status === 'COMPLETED'
        ? 'completed'
        : cancelled
          ? 'was cancelled'
          : status === 'TERMINATED'
            ? `was terminated${closed.terminated?.reason ? ` (reason: "${clip(closed.terminated.reason, 200)}")` : ''}`
            : status === 'TIMED_OUT'
              ? 'timed out'
              : `is ${status.toLowerCase()}`;
    throw new UserError(`run ${workflowId} ${how}${closed.closeTime ? ` at ${closed.closeTime}` : ''}: only a failed run can be resumed; nothing was changed`);
  }
  const history = await client.workflow.getHandle(workflowId, desc.runId, { followRuns: false }).fetchHistory();
  const plan = planResume(history.events ?? [], { workflowId, progress: closed.progress, approvals: closed.approvals, failure: closed.failure }, AwaitingApproval.name);
  const reason = clip(
    `runbook resume by ${by}: from step ${plan.step.id} (${plan.failedActivity.decided ? 'failed' : `${plan.failedActivity.type} failed`}${plan.step.detail ? `: ${clip(plan.step.detail, 200)}` : ''})` +
      (plan.freshApprovals.length ? `; approval of ${plan.freshApprovals.join(', ')} to be given again` : ''),
    1000,
  );
  const outcome: ResumeOutcome = { workflowId, failedRunId: desc.runId, plan, reason, dryRun: opts.dryRun === true };
  if (opts.dryRun) return outcome;

  const { ResetReapplyExcludeType } = proto.temporal.api.enums.v1;
  const response: temporal.api.workflowservice.v1.IResetWorkflowExecutionResponse = await client.workflowService.resetWorkflowExecution({
    namespace: client.options.namespace,
    workflowExecution: { workflowId, runId: desc.runId },
    reason,
        // protobufjs writes an int64 from a plain number as well as from a Long (typed as Long only).
    workflowTaskFinishEventId: plan.resetEventId as unknown as Long,
    requestId: randomUUID(),
    // The caller on the request; who resumed and why is in the reason, which the new run's history keeps.
    identity: `${by} (runbook resume)`,
    // The old answers must not count again: the gate asks anew.
    resetReapplyExcludeTypes: plan.freshApprovals.length
      ? [ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL, ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE]
      : [],
  });
  outcome.runId = response.runId ?? undefined;
  if (plan.freshApprovals.length && outcome.runId && (opts.waitSeconds ?? 10) > 0) {
    // The gate's phrase and approvers, once the worker has replayed the run up to it.
    const { pendingApprovalQuery } = await import('../common/messages.js');
    const handle = client.workflow.getHandle(workflowId, outcome.runId);
    const until = Date.now() + (opts.waitSeconds ?? 10) * 1000;
    while (Date.now() < until) {
      const p = await handle.query(pendingApprovalQuery).catch(() => null);
      if (p) {
        outcome.pending = p;
        break;
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  return outcome;
}

export function resumeReport(o: ResumeOutcome): string[] {
  const p = o.plan;
  const lines = [
    o.dryRun ? `would resume ${o.workflowId} (failed run ${o.failedRunId}); nothing was changed` : `resumed ${o.workflowId}: new run ${o.runId ?? '?'} (failed run ${o.failedRunId} is kept)`,
    `  from step ${p.step.title} (${p.step.id})${p.step.detail ? `: it failed with ${clip(p.step.detail, 300)}` : ''}`,
    `  reset to the workflow task of event ${p.resetEventId}: ${p.why.join('; ')}`,
    `  reason recorded: ${o.reason}`,
  ];
  if (p.repeats.length) lines.push('  runs again (each checked safe to repeat):', ...p.repeats.map((r) => `    ${r.type}: ${r.because}`));
  for (const a of p.kept) lines.push(`  kept: ${describeApproval(a)}`);
  for (const step of p.freshApprovals) {
    const pending = o.pending && o.pending.step === step ? o.pending : undefined;
    lines.push(
      `  a fresh approval of step ${step} is needed: the answer given before the failure does not count`,
      `    approve: runbook approve ${o.workflowId} --as <name>${pending?.confirmPhrase ? ` --confirm ${pending.confirmPhrase}` : ' --confirm <phrase>'} --step ${step}`,
      ...(pending ? [`    approvers: ${pending.approvers.join(', ') || '(none configured)'}${pending.destructive ? ' (not the requester)' : ''}; deadline ${pending.deadline}`] : []),
    );
  }
  if (!o.dryRun) lines.push(`  follow it: runbook status ${o.workflowId}`);
  return lines;
}

/** `runbook resume <workflowId> --as <name>`. */
export function registerResumeCommand(program: Command): void {
  program
    .command('resume')
    .description('resume a failed run from its failed step (Temporal Reset), keeping what the steps before it did; a step behind an approval needs a fresh approval')
    .argument('<workflowId>')
    .requiredOption('--as <name>', 'your name: recorded in the reset reason')
    .option('--dry-run', 'show where the run would resume and what would run again; change nothing')
    .option('--json', 'machine-readable output')
    .action(async (workflowId: string, opts: { as: string; dryRun?: boolean; json?: boolean }) => {
      const { connectCli } = await import('./connect.js');
      const { client, connection } = await connectCli();
      try {
        const outcome = await resumeRun(client, workflowId, { by: opts.as, dryRun: opts.dryRun });
        if (opts.json) console.log(JSON.stringify(outcome, null, 2));
        else for (const line of resumeReport(outcome)) console.log(line);
      } finally {
        await connection.close();
      }
    });
}
