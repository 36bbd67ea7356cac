import { randomBytes } from 'node:crypto';
import { userInfo } from 'node:os';
import {
  type Client,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
} from '@temporalio/client';
import { validateInput } from '../common/inputs.js';
import { approvalsQuery, approveUpdate, pendingApprovalQuery, progressQuery, rejectUpdate } from '../common/messages.js';
import { type ProcedureId, isProcedureId, PROCEDURE_IDS, workflowIdFor } from '../common/procedures.js';
import { RunbookProcedure } from '../common/search-attributes.js';
import type { ApprovalAnswer, ApprovalInput, ApprovalRecord, CommonInput, PendingApproval, RunProgress } from '../common/types.js';
import { PayloadDecryptionError } from '../lib/codec/index.js';

/** An error the CLI prints as one line, without a stack trace. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

export function defaultIdentity(env: NodeJS.ProcessEnv = process.env): string {
  return env.RUNBOOK_USER ?? env.USER ?? userInfo().username;
}

export function parseProcedure(name: string): ProcedureId {
  if (!isProcedureId(name)) throw new UserError(`unknown procedure "${name}": expected one of ${PROCEDURE_IDS.join(', ')}`);
  return name;
}

export function parseJsonInput(text: string | undefined, field = '--input'): unknown {
  if (text === undefined) return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UserError(`${field}: not valid JSON (${(err as Error).message}); example: --input '{"clean": true}'`);
  }
}

export interface StartOptions {
  client: Client;
  taskQueue: string;
  procedure: ProcedureId;
  input: unknown;
  requestedBy: string;
  environment: string;
  workflowId?: string;
}

/** Validates before starting anything, then starts the run with its search attributes set. */
export async function startRun(opts: StartOptions): Promise<WorkflowHandle> {
  let input: CommonInput;
  try {
    input = validateInput<CommonInput>(opts.procedure, opts.input);
  } catch (err) {
    throw new UserError((err as Error).message);
  }
  const withRequester = { ...input, requestedBy: input.requestedBy ?? opts.requestedBy };
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const workflowId =
    opts.workflowId ?? workflowIdFor(opts.procedure, { environment: opts.environment, unique: `${stamp}-${randomBytes(2).toString('hex')}` });
  try {
    return await opts.client.workflow.start(opts.procedure, {
      taskQueue: opts.taskQueue,
      workflowId,
      args: [withRequester],
      typedSearchAttributes: [{ key: RunbookProcedure, value: opts.procedure }],
      staticSummary: `${opts.procedure} requested by ${withRequester.requestedBy}`,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new UserError(`a run with id ${workflowId} is already running: use \`runbook status ${workflowId}\``);
    }
    throw err;
  }
}

/**
 * Sends an approve/reject as an update and returns the run's answer. Without `step` it names
 * the step pending right now, so an answer still cannot land on a step that replaces it later.
 */
export async function answerApproval(
  client: Client,
  workflowId: string,
  decision: 'approve' | 'reject',
  input: Omit<ApprovalInput, 'step'> & { step?: string },
): Promise<ApprovalAnswer> {
  const handle = client.workflow.getHandle(workflowId);
  try {
    let step = input.step;
    if (step === undefined) {
      const pending = await handle.query(pendingApprovalQuery);
      if (!pending) throw new UserError(`run ${workflowId} is not waiting for an approval (see \`runbook status ${workflowId}\`)`);
      step = pending.step;
    }
    return await handle.executeUpdate(decision === 'approve' ? approveUpdate : rejectUpdate, { args: [{ ...input, step }] });
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) {
      const reason = err.cause?.message ?? err.message;
      throw new UserError(`refused: ${reason}`);
    }
    const name = (err as Error).name;
    if (name === 'WorkflowNotFoundError') throw new UserError(`no run with id ${workflowId}`);
    throw err;
  }
}

export interface RunStatus {
  workflowId: string;
  runId: string;
  procedure: string;
  status: string;
  startTime: string;
  closeTime?: string;
  currentStep?: string;
  progress?: RunProgress;
  pendingApproval: PendingApproval | null;
  approvals?: { approvals: ApprovalRecord[]; refusals: Array<{ step: string; by: string; reason: string; at: string }> };
  result?: unknown;
  failure?: string;
}

export async function runStatus(client: Client, workflowId: string): Promise<RunStatus> {
  const handle = client.workflow.getHandle(workflowId);
  let desc;
  try {
    desc = await handle.describe();
  } catch (err) {
    if ((err as Error).name === 'WorkflowNotFoundError') throw new UserError(`no run with id ${workflowId}`);
    throw err;
  }
  const status: RunStatus = {
    workflowId,
    runId: desc.runId,
    procedure: desc.type,
    status: desc.status.name,
    startTime: desc.startTime.toISOString(),
    closeTime: desc.closeTime?.toISOString(),
    pendingApproval: null,
  };
  if (desc.status.name === 'RUNNING') {
    const [progress, pending, approvals] = await Promise.all([
      handle.query(progressQuery),
      handle.query(pendingApprovalQuery),
      handle.query(approvalsQuery),
    ]);
    status.progress = progress;
    status.currentStep = progress.currentStep;
    status.pendingApproval = pending;
    status.approvals = approvals;
  } else {
    try {
      const result = (await handle.result()) as { progress?: RunProgress } | undefined;
      status.result = result;
      status.progress = result?.progress;
      status.currentStep = result?.progress?.currentStep;
    } catch (err) {
      // A run this CLI cannot decrypt has not failed: say which key is missing instead.
      if (err instanceof PayloadDecryptionError) throw err;
      status.failure = failureMessage(err);
    }
  }
  return status;
}

export function failureMessage(err: unknown): string {
  if (err instanceof WorkflowFailedError) {
    let e: Error | undefined = err.cause;
    const parts: string[] = [];
    while (e) {
      if (e.message && !parts.includes(e.message)) parts.push(e.message);
      e = e.cause instanceof Error ? e.cause : undefined;
    }
    return parts[parts.length - 1] ?? err.message;
  }
  return err instanceof Error ? err.message : String(err);
}
