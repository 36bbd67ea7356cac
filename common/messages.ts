import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ApprovalAnswer, ApprovalInput, ApprovalRecord, PendingApproval, RefusedApproval, RunProgress } from './types.js';

/**
 * Every run's messages, each taking one JSON object so the Temporal UI can send it.
 * Signals are for the UI (fire and forget); updates carry the same payload for the CLI,
 * which hears the outcome at once. Either way a refused answer is recorded in the run,
 * with its reason, and changes nothing.
 */
export const approveSignal = defineSignal<[ApprovalInput]>('approve');
export const rejectSignal = defineSignal<[ApprovalInput]>('reject');
export const approveUpdate = defineUpdate<ApprovalAnswer, [ApprovalInput]>('approve');
export const rejectUpdate = defineUpdate<ApprovalAnswer, [ApprovalInput]>('reject');

export const progressQuery = defineQuery<RunProgress>('progress');
export const pendingApprovalQuery = defineQuery<PendingApproval | null>('pendingApproval');
/** Refused answers: the first few kept with their reasons, the rest counted in `refusalsDropped`. */
export const approvalsQuery = defineQuery<{ approvals: ApprovalRecord[]; refusals: RefusedApproval[]; refusalsDropped: number }>('approvals');

/**
 * To a database's lock run (workflow `db-lock`) from the run holding it: release the lock.
 * No payload; the lock also ends when its holder ends, however it ends.
 */
export const releaseLockSignal = defineSignal('release');
