import type { ProcedureId } from './procedures.js';

/**
 * Who may approve, and how many of them must, for one approval step. Resolved from the
 * config by the plan activities and carried in the run's plan, so a replay sees the same rule.
 */
export interface ApprovalRule {
  approvers: string[];
  /** Distinct approvers whose `approve` the step needs (N of M); one `reject` from any approver refuses it. */
  quorum: number;
}

/** A procedure's rule, and the rules of the steps that override it. */
export interface ApprovalPolicy extends ApprovalRule {
  steps: Record<string, ApprovalRule>;
}

/**
 * The approval steps each procedure can ask for: what `approvals.steps.<procedure>.<step>`
 * may name. Canary steps are named after the weight they leave (`approve-25`).
 */
export const APPROVAL_STEPS: Partial<Record<ProcedureId, readonly string[]>> = {
  'stack-stop': ['approve-delete'],
  'db-restore': ['approve-replace', 'approve-tables'],
  'db-migrate': ['approve-migrate'],
  'db-migration-rollback': ['approve-rollback'],
  'db-vacuum': ['approve-full'],
  'db-triage': ['approve-idle', 'approve-pids'],
  'pitr-restore': ['approve-restore', 'approve-cleanup'],
  'redis-restore': ['approve-restore'],
  'canary-deploy': ['approve-<weight>'],
  release: ['approve-<weight>', 'approve-migration-rollback'],
  'blue-green-switch': ['approve-switch'],
  'redis-triage': ['approve-flush', 'approve-restart'],
  'nats-lag-triage': ['approve-restart', 'approve-purge'],
  'service-error-triage': ['approve-remediation', 'approve-build-cache'],
};

/** Whether `step` is one `procedure` can ask for (`approve-<weight>` matches `approve-25`). */
export function isApprovalStep(procedure: ProcedureId, step: string): boolean {
  return (APPROVAL_STEPS[procedure] ?? []).some((s) => (s === 'approve-<weight>' ? /^approve-\d{1,3}$/.test(step) : s === step));
}

export interface ApprovalsConfig {
  approvers: Record<string, string[]>;
  quorum: Record<string, number>;
  steps: Record<string, Record<string, { approvers?: string[]; quorum?: number }>>;
}

/** The policy for one procedure: its approvers (or `default`'s), its quorum (or `default`'s, or 1), its step overrides. */
export function approvalPolicyFor(cfg: ApprovalsConfig, procedure: string): ApprovalPolicy {
  const approvers = [...(cfg.approvers[procedure] ?? cfg.approvers.default ?? [])];
  const quorum = cfg.quorum[procedure] ?? cfg.quorum.default ?? 1;
  const steps: Record<string, ApprovalRule> = {};
  for (const [step, rule] of Object.entries(cfg.steps[procedure] ?? {})) {
    steps[step] = { approvers: [...(rule.approvers ?? approvers)], quorum: rule.quorum ?? quorum };
  }
  return { approvers, quorum, steps };
}

/** The rule that applies to one step of a run. */
export function ruleForStep(policy: ApprovalPolicy, step: string): ApprovalRule {
  return policy.steps[step] ?? { approvers: policy.approvers, quorum: policy.quorum };
}

/**
 * The plan's policy. Plans recorded before per-step approvals carried only `approvers`; a run
 * started then and resumed by this code gets the same approvers with a quorum of one.
 */
export function policyOf(plan: { approvalPolicy?: ApprovalPolicy; approvers?: string[] }): ApprovalPolicy {
  return plan.approvalPolicy ?? { approvers: [...(plan.approvers ?? [])], quorum: 1, steps: {} };
}
