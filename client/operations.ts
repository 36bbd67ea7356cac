import { randomBytes } from 'node:crypto';
import {
  ApplicationFailure,
  type Client,
  type WorkflowExecutionDescription,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
} from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { clip } from '../common/bounds.js';
import { PLAN_ID_PREFIX, PLAN_MEMO } from '../common/plan.js';
import { accountIn, describeApproval, PROGRESS_MEMO, RUN_CANCELLED, type ProgressMemo, type RunAccount } from '../common/run-account.js';
import { approvalsQuery, approveUpdate, pendingApprovalQuery, progressQuery, rejectUpdate } from '../common/messages.js';
import { type ProcedureId, isProcedureId, PROCEDURE_IDS, workflowIdFor } from '../common/procedures.js';
import { RunbookProcedure } from '../common/search-attributes.js';
import { runMetadata } from '../common/summaries.js';
import type { ApprovalAnswer, ApprovalInput, ApprovalRecord, CommonInput, PendingApproval, RunProgress, StepProgress } from '../common/types.js';
import { PayloadDecryptionError } from '../lib/codec/index.js';
import { UserError } from './user-error.js';

// Light, so that commands can be defined without loading the SDK; re-exported for callers of this module.
export { defaultIdentity, UserError } from './user-error.js';

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
  /** A plan run (`runbook plan`): marked by its memo and id, ended by the server after `PLAN_RUN_TIMEOUT`. */
  plan?: boolean;
}

/** A plan runs only read-only steps; one still running after this is stuck on something it should not wait for. */
export const PLAN_RUN_TIMEOUT = '2 minutes';

/** Validates before starting anything, then starts the run with its search attributes set. */
export async function startRun(opts: StartOptions): Promise<WorkflowHandle> {
  let input: CommonInput;
  // Every procedure's input schema (zod): loaded by the command that starts a run, not by `status`.
  const { parseInput } = await import('../common/inputs.js');
  try {
    input = parseInput(opts.procedure, opts.input);
  } catch (err) {
    throw new UserError((err as Error).message);
  }
  const withRequester = { ...input, requestedBy: input.requestedBy ?? opts.requestedBy };
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const workflowId =
    opts.workflowId ??
    `${opts.plan ? PLAN_ID_PREFIX : ''}${workflowIdFor(opts.procedure, { environment: opts.environment, unique: `${stamp}-${randomBytes(2).toString('hex')}` })}`;
  const meta = runMetadata({ procedure: opts.procedure, input: withRequester, environment: opts.environment });
  try {
    return await opts.client.workflow.start(opts.procedure, {
      taskQueue: opts.taskQueue,
      workflowId,
      args: [withRequester],
      typedSearchAttributes: [{ key: RunbookProcedure, value: opts.procedure }],
      // The UI's Summary and Details panels: procedure, target, requester and the input fields.
      ...meta,
      ...(opts.plan
        ? { memo: { [PLAN_MEMO]: true }, workflowExecutionTimeout: PLAN_RUN_TIMEOUT, staticSummary: `PLAN only (changes nothing): ${meta.staticSummary ?? opts.procedure}` }
        : {}),
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
 * With `keyFile` (an approver key from `runbook keys new`) the answer is signed for this run,
 * step and decision, now, with a fresh nonce.
 */
export async function answerApproval(
  client: Client,
  workflowId: string,
  decision: 'approve' | 'reject',
  input: Omit<ApprovalInput, 'step' | 'signed'> & { step?: string },
  opts: { keyFile?: string } = {},
): Promise<ApprovalAnswer> {
  const handle = client.workflow.getHandle(workflowId);
  // The key first: a missing or unreadable key file is the person's to fix before anything is sent.
  const signer = opts.keyFile !== undefined ? await approverSigner(opts.keyFile) : undefined;
  // A closed run cannot be queried without a worker, nor answered: say how it ended instead.
  const desc = await describeRun(client, workflowId);
  if (desc.status.name !== 'RUNNING') throw new UserError(closedRunLine(workflowId, await closedRun(client, desc)));
  try {
    let step = input.step;
    if (step === undefined) {
      const pending = await handle.query(pendingApprovalQuery);
      if (!pending) throw new UserError(`run ${workflowId} is not waiting for an approval (see \`runbook status ${workflowId}\`)`);
      step = pending.step;
    }
    const answer: ApprovalInput = { ...input, step };
    if (signer) answer.signed = signer({ by: answer.by, step, confirm: answer.confirm, comment: answer.comment }, { workflowId, runId: desc.runId, decision });
    return await handle.executeUpdate(decision === 'approve' ? approveUpdate : rejectUpdate, { args: [answer] });
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) {
      const reason = err.cause?.message ?? err.message;
      throw new UserError(`refused: ${reason}`);
    }
    // It closed between the look and the answer.
    if (err instanceof WorkflowNotFoundError || (err as Error).name === 'WorkflowNotFoundError') {
      const now = await describeRun(client, workflowId);
      throw new UserError(now.status.name === 'RUNNING' ? `run ${workflowId} did not take the answer: ${(err as Error).message}` : closedRunLine(workflowId, await closedRun(client, now)));
    }
    throw err;
  }
}

/** Signs answers with the approver key in `file`; loaded only by a command given a key. */
async function approverSigner(file: string) {
  const { ApprovalKeyError, loadApproverKey, signAnswer } = await import('../lib/approval-keys.js');
  try {
    const key = await loadApproverKey(file);
    return (answer: Parameters<typeof signAnswer>[1], target: Parameters<typeof signAnswer>[2]) => signAnswer(key, answer, target);
  } catch (err) {
    if (err instanceof ApprovalKeyError) throw new UserError(err.message);
    throw err;
  }
}

async function describeRun(client: Client, workflowId: string): Promise<WorkflowExecutionDescription> {
  try {
    return await client.workflow.getHandle(workflowId).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError || (err as Error).name === 'WorkflowNotFoundError') throw new UserError(`no run with id ${workflowId}`);
    throw err;
  }
}

/** What can be known of a run that is no longer running, from its result, its failure, its memo and its history. */
export interface ClosedRun {
  status: string;
  closeTime?: string;
  result?: unknown;
  failure?: string;
  failureType?: string;
  account?: RunAccount;
  progress?: RunProgress;
  approvals: ApprovalRecord[];
  /** Where the steps come from: the result, the failure's account, the last progress the run recorded, or its history. */
  progressFrom?: 'result' | 'account' | 'memo' | 'history';
  terminated?: { reason?: string; identity?: string };
  cancelRequested?: { at?: string; identity?: string };
}

export async function closedRun(client: Client, desc: WorkflowExecutionDescription): Promise<ClosedRun> {
  const handle = client.workflow.getHandle(desc.workflowId, desc.runId, { followRuns: false });
  const memo = desc.memo?.[PROGRESS_MEMO] as ProgressMemo | undefined;
  const out: ClosedRun = { status: desc.status.name, closeTime: desc.closeTime?.toISOString(), approvals: [] };
  let failureDetails: unknown[] = [];
  try {
    const result = (await handle.result()) as { progress?: RunProgress; approvals?: ApprovalRecord[] } | undefined;
    out.result = result;
    if (result?.progress) [out.progress, out.progressFrom] = [result.progress, 'result'];
    if (Array.isArray(result?.approvals)) out.approvals = result.approvals;
  } catch (err) {
    // A run this CLI cannot decrypt has not failed: say which key is missing instead.
    if (err instanceof PayloadDecryptionError) throw err;
    out.failure = failureMessage(err);
    const app = err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure ? err.cause : undefined;
    if (app) {
      out.failureType = app.type ?? undefined;
      failureDetails = app.details ?? [];
    }
  }
  out.account = accountIn(failureDetails);
  if (out.account) {
    out.progress ??= out.account.progress;
    out.progressFrom ??= 'account';
    if (out.approvals.length === 0) out.approvals = out.account.approvals;
  }
  // An approval that timed out or was rejected is the failure's first detail.
  const record = failureDetails.find((d): d is ApprovalRecord => !!d && typeof d === 'object' && 'decision' in d && 'step' in d);
  if (record && !out.approvals.some((a) => a.step === record.step && a.at === record.at)) out.approvals.push(record);
  if (!out.progress && memo?.progress) [out.progress, out.progressFrom] = [memo.progress, 'memo'];
  if (out.approvals.length === 0 && memo?.approvals) out.approvals = memo.approvals;

  const endedByItself = out.status === 'COMPLETED' || (out.status === 'FAILED' && out.failureType !== RUN_CANCELLED);
  if (!endedByItself || !out.progress) {
    const history = await handle.fetchHistory();
    const events = history.events ?? [];
    for (const e of events) {
      const term = e.workflowExecutionTerminatedEventAttributes;
      if (term) out.terminated = { reason: term.reason ?? undefined, identity: term.identity ?? undefined };
      const cancel = e.workflowExecutionCancelRequestedEventAttributes;
      if (cancel && !out.cancelRequested) out.cancelRequested = { at: eventTime(e), identity: cancel.identity ?? undefined };
    }
    if (!out.progress) [out.progress, out.progressFrom] = [progressFromHistory(desc.type, events), 'history'];
  }
  // No code ran after a termination or a timeout: what was in flight is shown as interrupted.
  if (out.progress && !out.account && out.status !== 'COMPLETED') {
    const why = out.status === 'TERMINATED' ? 'terminated' : out.status === 'TIMED_OUT' ? 'timed out' : out.status === 'CANCELLED' ? 'cancelled' : 'stopped';
    out.progress = {
      ...out.progress,
      steps: out.progress.steps.map((s): StepProgress =>
        s.status === 'running' || s.status === 'waiting-approval'
          ? { ...s, status: 'interrupted', detail: `${s.status === 'waiting-approval' ? 'waiting for an answer' : 'in flight'} when the run was ${why}${s.detail ? `; last: ${s.detail}` : ''}` }
          : s,
      ),
    };
  }
  return out;
}

/** The lines `runbook status` prints under the steps of a closed run. */
export function closedRunReport(c: Omit<ClosedRun, 'result' | 'progress'>): string[] {
  const lines: string[] = [];
  if (c.progressFrom === 'memo') lines.push('(steps as the run last recorded them)');
  if (c.progressFrom === 'history') lines.push('(steps rebuilt from the history: the activities run, done or in flight)');
  for (const a of c.approvals) lines.push(`approval: ${describeApproval(a)}`);
  if (c.terminated) lines.push(`terminated: ${c.terminated.reason ? `reason "${clip(c.terminated.reason, 300)}"` : 'no reason given'}${c.terminated.identity ? ` by ${clip(c.terminated.identity, 200)}` : ''}`);
  if (c.cancelRequested) lines.push(`cancel requested${c.cancelRequested.at ? ` at ${c.cancelRequested.at}` : ''}${c.cancelRequested.identity ? ` by ${clip(c.cancelRequested.identity, 200)}` : ''}`);
  if (c.account?.outcome === 'cancelled') lines.push(`cancelled: ${c.account.text}`);
  else if (c.failure) lines.push(`failure: ${c.failure}`);
  if (c.account?.outcome === 'failed' && c.account.state) lines.push(`left: ${c.account.state}`);
  if (c.account?.outcome === 'failed' && c.account.next) lines.push(`to finish or undo: ${c.account.next}`);
  return lines;
}

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

function eventTime(e: HistoryEvent): string | undefined {
  const t = e.eventTime;
  if (!t?.seconds) return undefined;
  return new Date(Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6)).toISOString();
}

/**
 * Steps of a run that recorded none (started before runs kept their progress in a memo): its
 * activities from the history, done or in flight when it closed.
 */
export function progressFromHistory(procedure: string, events: readonly HistoryEvent[]): RunProgress {
  const steps: StepProgress[] = [];
  const scheduled = new Map<string, StepProgress>();
  const end = (id: unknown, status: StepProgress['status'], e: HistoryEvent, detail?: string) => {
    const s = scheduled.get(String(id));
    if (!s) return;
    s.status = status;
    s.endedAt = eventTime(e);
    if (detail) s.detail = clip(detail, 300);
  };
  for (const e of events) {
    const a = e.activityTaskScheduledEventAttributes;
    if (a) {
      const s: StepProgress = { id: `activity-${String(e.eventId)}`, title: `activity ${a.activityType?.name ?? '?'}`, status: 'running', startedAt: eventTime(e) };
      steps.push(s);
      scheduled.set(String(e.eventId), s);
    }
    if (e.activityTaskCompletedEventAttributes) end(e.activityTaskCompletedEventAttributes.scheduledEventId, 'succeeded', e);
    if (e.activityTaskFailedEventAttributes) end(e.activityTaskFailedEventAttributes.scheduledEventId, 'failed', e, e.activityTaskFailedEventAttributes.failure?.message ?? undefined);
    if (e.activityTaskTimedOutEventAttributes) end(e.activityTaskTimedOutEventAttributes.scheduledEventId, 'failed', e, 'timed out');
    if (e.activityTaskCanceledEventAttributes) end(e.activityTaskCanceledEventAttributes.scheduledEventId, 'interrupted', e, 'cancelled');
    const m = e.markerRecordedEventAttributes;
    if (m?.markerName === 'core_local_activity') {
      const type = localActivityType(m);
      if (type) steps.push({ id: `local-${String(e.eventId)}`, title: `local activity ${type}`, status: m.failure ? 'failed' : 'succeeded', endedAt: eventTime(e) });
    }
  }
  return { procedure, steps };
}

/** The core SDK writes a local activity's bookkeeping (not its result) unencrypted in its marker. */
function localActivityType(m: temporal.api.history.v1.IMarkerRecordedEventAttributes): string | undefined {
  const data = m.details?.data?.payloads?.[0]?.data;
  if (!data) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type?: string };
    return typeof parsed.activity_type === 'string' ? parsed.activity_type : undefined;
  } catch {
    return undefined;
  }
}

/** One line that says how a closed run ended and how its approvals were decided: the answer to an approve/reject sent too late. */
export function closedRunLine(workflowId: string, c: ClosedRun): string {
  const cancelled = c.failureType === RUN_CANCELLED || c.status === 'CANCELLED';
  const how =
    c.status === 'COMPLETED'
      ? 'completed'
      : cancelled
        ? 'was cancelled'
        : c.status === 'TERMINATED'
          ? 'was terminated'
          : c.status === 'TIMED_OUT'
            ? 'timed out (workflow run timeout)'
            : c.status === 'FAILED'
              ? 'failed'
              : `is ${c.status.toLowerCase()}`;
  const parts = [`run ${workflowId} ${how}${c.closeTime ? ` at ${c.closeTime}` : ''}`];
  if (c.terminated) parts[0] += ` (${c.terminated.reason ? `reason: "${clip(c.terminated.reason, 200)}"` : 'no reason given'}${c.terminated.identity ? `, by ${clip(c.terminated.identity, 200)}` : ''})`;
  else if (cancelled && c.cancelRequested?.identity) parts[0] += ` (cancel requested by ${clip(c.cancelRequested.identity, 200)})`;
  const decided = c.approvals.map(describeApproval);
  const waiting = c.progress?.steps.find((s) => s.status === 'interrupted' && /waiting for an answer/.test(s.detail ?? ''));
  if (decided.length) parts.push(decided.join('; '));
  if (waiting) parts.push(`it was waiting for an answer to step ${waiting.id}, which it can no longer take`);
  if (!decided.length && !waiting) parts.push('it had no decided approval');
  if (c.status === 'FAILED' && !cancelled && c.failure && !c.approvals.some((a) => a.decision !== 'approved')) parts.push(`failure: ${clip(c.failure, 300)}`);
  return `${parts.join('; ')}. Nothing is left to answer (see \`runbook status ${workflowId}\`)`;
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
  /** Of a closed run: how it ended, its approvals, and the account of a cancelled or failed one. */
  closed?: Omit<ClosedRun, 'result' | 'progress'>;
}

export async function runStatus(client: Client, workflowId: string): Promise<RunStatus> {
  const handle = client.workflow.getHandle(workflowId);
  const desc = await describeRun(client, workflowId);
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
    const { result, progress, ...closed } = await closedRun(client, desc);
    status.result = result;
    status.progress = progress;
    status.currentStep = progress?.currentStep;
    status.failure = closed.failure;
    status.closed = closed;
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
