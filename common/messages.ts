import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ApprovalInput, ApprovalRecord, PendingApproval, RefusedApproval, RunProgress } from './types.js';

/**
 * Every run's messages, each taking one JSON object so the Temporal UI can send it.
 * Signals are for the UI (fire and forget; a refused answer is recorded in the run);
 * updates carry the same payload for the CLI, whose validator refuses at once.
 */
export const approveSignal = defineSignal<[ApprovalInput]>('approve');
export const rejectSignal = defineSignal<[ApprovalInput]>('reject');
export const approveUpdate = defineUpdate<ApprovalRecord, [ApprovalInput]>('approve');
export const rejectUpdate = defineUpdate<ApprovalRecord, [ApprovalInput]>('reject');

export const progressQuery = defineQuery<RunProgress>('progress');
export const pendingApprovalQuery = defineQuery<PendingApproval | null>('pendingApproval');
export const approvalsQuery = defineQuery<{ approvals: ApprovalRecord[]; refusals: RefusedApproval[] }>('approvals');
