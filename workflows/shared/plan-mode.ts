import { workflowInfo } from '@temporalio/workflow';
import { isApprovalStep, ruleForStep, type ApprovalPolicy } from '../../common/approvals.js';
import { PLAN_MEMO, type PlanApproval, type PlanStep, type RunPlan } from '../../common/plan.js';
import type { ProcedureId } from '../../common/procedures.js';
import type { RunProgress } from '../../common/types.js';
import { runLocal } from './run-local.js';

/**
 * Plan mode (`runbook plan`): the run's commands pass through `gate` (workflows/shared/interceptors.ts).
 * Read-only activities run; the first command that would change, send or wait ends the plan by
 * throwing PlanHalt, and so does every command after it. The worker shares this module between
 * runs (worker/main.ts, preloadModules), so a run's plan state lives in its own globals
 * (workflows/shared/run-local.ts).
 */
export class PlanHalt extends Error {
  constructor(readonly step: string, readonly activity: string) {
    super(`plan: step ${step} would run ${activity}`);
    this.name = 'PlanHalt';
  }
}

interface PlanState {
  /** The step running now: the commands it sends are what it touches. */
  step: string;
  touches: Map<string, string[]>;
  halted?: { step: string; activity: string };
}


export function planning(): boolean {
  return workflowInfo().memo?.[PLAN_MEMO] === true;
}

function current(): PlanState {
  return runLocal('planState', (): PlanState => ({ step: 'input', touches: new Map() }));
}

/** Called by the interceptor for each command a plan run sends; throws when the plan ends here. */
export function gate(summary: string, readOnly: boolean): void {
  const s = current();
  if (s.halted) throw new PlanHalt(s.halted.step, s.halted.activity);
  const list = s.touches.get(s.step) ?? [];
  if (!list.includes(summary)) list.push(summary);
  s.touches.set(s.step, list);
  if (!readOnly) {
    s.halted = { step: s.step, activity: summary };
    throw new PlanHalt(s.step, summary);
  }
}

/** Records what the current step would do without doing it, where the plan can go on past it (a lock it would take). */
export function note(summary: string): void {
  const s = current();
  const list = s.touches.get(s.step) ?? [];
  if (!list.includes(summary)) list.push(summary);
  s.touches.set(s.step, list);
}

/** The step whose commands come next; throws when the plan has already ended. */
export function enterStep(id: string): void {
  const s = current();
  if (s.halted) throw new PlanHalt(s.halted.step, s.halted.activity);
  s.step = id;
}

export function halted(): { step: string; activity: string } | undefined {
  return current().halted;
}

export function touchesOf(step: string): string[] {
  return [...(current().touches.get(step) ?? [])];
}

export interface PlanFacts {
  procedure: ProcedureId;
  requestedBy: string;
  progress: RunProgress;
  /** Approvals the plan reached, as the run would ask them. */
  approvals: ReadonlyMap<string, PlanApproval>;
  /** The loaded plan's approval policy and timeout, for approvals after the point the plan stopped. */
  policy?: ApprovalPolicy;
  approvalTimeoutSeconds?: number;
  refused?: string;
}

/** The approval policy a step's result carries (a loaded plan, or an object holding one), if any. */
export function policyIn(result: unknown): { policy: ApprovalPolicy; timeoutSeconds?: number } | undefined {
  const candidates = [result, ...(result && typeof result === 'object' ? Object.values(result) : [])];
  for (const c of candidates) {
    if (!c || typeof c !== 'object' || !('approvalPolicy' in c)) continue;
    const p = c as { approvalPolicy?: ApprovalPolicy; approvalTimeoutSeconds?: unknown };
    if (!p.approvalPolicy) continue;
    return { policy: p.approvalPolicy, ...(typeof p.approvalTimeoutSeconds === 'number' ? { timeoutSeconds: p.approvalTimeoutSeconds } : {}) };
  }
  return undefined;
}

/** The run's plan from its progress: what ran, what it would do, who approves, what is refused. */
export function planOf(f: PlanFacts): RunPlan {
  const stop = halted();
  const failed = f.progress.steps.find((s) => s.status === 'failed');
  const steps: PlanStep[] = f.progress.steps.map((s) => {
    const touches = touchesOf(s.id);
    const reached = f.approvals.get(s.id);
    if (reached) return { id: s.id, title: s.title, kind: 'approval', detail: 'not asked in a plan', touches, approval: reached };
    if (s.status === 'succeeded') return { id: s.id, title: s.title, kind: 'checked', ...(s.detail ? { detail: s.detail } : {}), touches };
    if (s.status === 'skipped') return { id: s.id, title: s.title, kind: 'skipped', ...(s.detail ? { detail: s.detail } : {}), touches };
    if (s.status === 'failed' && !stop) return { id: s.id, title: s.title, kind: 'refused', ...(s.detail ? { detail: s.detail } : {}), touches };
    if (isApprovalStep(f.procedure, s.id) && f.policy) {
      const rule = ruleForStep(f.policy, s.id);
      const approval: PlanApproval = { approvers: [...rule.approvers], quorum: rule.quorum, ...(f.approvalTimeoutSeconds !== undefined ? { timeoutSeconds: f.approvalTimeoutSeconds } : {}) };
      return { id: s.id, title: s.title, kind: 'approval', detail: 'asked after the point the plan stopped', touches, approval };
    }
    const detail = stop?.step === s.id ? `would run ${stop.activity}` : undefined;
    return { id: s.id, title: s.title, kind: 'would-do', ...(detail ? { detail } : {}), touches };
  });
  return {
    plan: true,
    procedure: f.procedure,
    workflowId: workflowInfo().workflowId,
    requestedBy: f.requestedBy,
    steps,
    ...(stop ? { stoppedAt: stop } : {}),
    ...(f.refused !== undefined ? { refused: { ...(failed ? { step: failed.id } : {}), message: f.refused } } : {}),
  };
}
