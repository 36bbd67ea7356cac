import { clip } from './bounds.js';
import { ErrorTypes } from './errors.js';
import type { ApprovalRecord, RunProgress, StepProgress } from './types.js';

/**
 * The account a run gives when it stops before its end: what it did, the step it was in,
 * the state it leaves and how to finish or undo. Workflow-safe: the workflow writes it, the
 * CLI reads it back from a closed run.
 */

/** Memo key of the run's last recorded steps and approvals: what is left to read of a terminated run. */
export const PROGRESS_MEMO = 'runbookProgress';

/** The failure type of a cancelled run: its message is the account, its details the RunAccount. */
export const RUN_CANCELLED = ErrorTypes.RunCancelled;

/** What a runbook says about the system if the run stops during (or after) a step. */
export interface StepHint {
  /** The state left, e.g. "apps stopped, infra running". */
  state: string;
  /** How to finish or undo, e.g. "run stack-start to bring them back". */
  next: string;
}

/** What a cleanup did, and when it knows better than the step's hint, the state it left. */
export interface CleanupReport {
  did?: string;
  state?: string;
  next?: string;
}

export interface ProgressMemo {
  progress: RunProgress;
  approvals: ApprovalRecord[];
}

export interface RunAccount {
  outcome: 'cancelled' | 'failed';
  /** One paragraph for a human: the message of a cancelled run's failure. */
  text: string;
  /** Title of the step that was running (or waiting for an approval) when the run stopped. */
  interrupted?: string;
  cleanup: string[];
  state?: string;
  next?: string;
  approvals: ApprovalRecord[];
  progress: RunProgress;
}

const MAX_ACCOUNT_CHARS = 4000;
const MAX_DETAIL_CHARS = 300;

/** The progress with each step's detail cut short: what a memo or an account may carry. */
export function compactProgress(progress: RunProgress): RunProgress {
  return {
    ...progress,
    steps: progress.steps.map((s) => (s.detail && s.detail.length > MAX_DETAIL_CHARS ? { ...s, detail: clip(s.detail, MAX_DETAIL_CHARS) } : { ...s })),
  };
}

/** The hint of the furthest step the run reached that has one. */
export function hintFor(steps: readonly StepProgress[], hints: ReadonlyMap<string, StepHint>): StepHint | undefined {
  let found: StepHint | undefined;
  for (const s of steps) if (s.status !== 'pending' && s.status !== 'skipped' && hints.has(s.id)) found = hints.get(s.id);
  return found;
}

/** "cancelled during Stop apps. Done: …. Not started: …. Cleanup: …. Left: …. To finish or undo: …" */
export function accountText(a: Omit<RunAccount, 'text'> & { reason?: string }): string {
  const steps = a.progress.steps;
  const done = steps.filter((s) => s.status === 'succeeded' && s.title !== a.interrupted);
  const notStarted = steps.filter((s) => s.status === 'pending');
  const failed = steps.filter((s) => s.status === 'failed');
  const parts = [
    `${a.outcome}${a.interrupted ? ` during step "${a.interrupted}"` : ''}${a.reason ? ` (${a.reason})` : ''}`,
    `done: ${done.map((s) => s.title).join(', ') || 'nothing'}`,
    ...a.approvals.map((r) => describeApproval(r)),
    ...(failed.length ? [`failed: ${failed.map((s) => `${s.title}${s.detail ? ` (${clip(s.detail, 200)})` : ''}`).join(', ')}`] : []),
    ...(notStarted.length ? [`not started: ${notStarted.map((s) => s.title).join(', ')}`] : []),
    ...(a.cleanup.length ? [`cleanup: ${a.cleanup.join('; ')}`] : []),
    ...(a.state ? [`left: ${a.state}`] : []),
    ...(a.next ? [`to finish or undo: ${a.next}`] : []),
  ];
  return clip(`${parts.join('. ')}.`, MAX_ACCOUNT_CHARS);
}

/** "step approve-delete approved by bob at 2026-…" (or rejected, or timed out). */
export function describeApproval(r: ApprovalRecord): string {
  if (r.decision === 'timed-out') return `step ${r.step} timed out at ${r.at}${r.comment ? ` (${clip(r.comment, 300)})` : ''}`;
  return `step ${r.step} ${r.decision} by ${clip(r.by ?? 'unknown')} at ${r.at}${r.comment ? ` ("${clip(r.comment, 300)}")` : ''}`;
}

/** A RunAccount found among a failure's details, if the run wrote one. */
export function accountIn(details: readonly unknown[] | undefined): RunAccount | undefined {
  for (const d of details ?? []) {
    if (d && typeof d === 'object' && 'progress' in d && 'outcome' in d && 'text' in d) return d as RunAccount;
  }
  return undefined;
}
