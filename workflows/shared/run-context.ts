import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  ContinueAsNew,
  isCancellation,
  log,
  metricMeter,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  TemporalFailure,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
  type SignalDefinition,
} from '@temporalio/workflow';
import type { UpdateDefinition } from '@temporalio/common';
import { ErrorTypes } from '../../common/errors.js';
import { clip, messageProblem, textProblem, undecodableReason } from '../../common/bounds.js';
import type { ProcedureInput } from '../../common/inputs.js';
import {
  approvalsQuery,
  approveSignal,
  approveUpdate,
  pendingApprovalQuery,
  progressQuery,
  rejectSignal,
  rejectUpdate,
} from '../../common/messages.js';
import type { ProcedureId } from '../../common/procedures.js';
import { AwaitingApproval, RunbookProcedure } from '../../common/search-attributes.js';
import { ruleForStep, type ApprovalPolicy } from '../../common/approvals.js';
import { SIGNED_ANSWER_MAX_AGE_SECONDS, SIGNED_ANSWER_MAX_SKEW_SECONDS, signedProblem } from '../../common/signed-approvals.js';
import type { Activities } from '../../activities/index.js';
import type { VerifyApprovalResult } from '../../activities/approvals.js';
import { keepRefusal } from './commands.js';
import { enterStep, halted, planning, planOf, policyIn } from './plan-mode.js';
import type { PlanApproval, RunPlan } from '../../common/plan.js';
import { localQuick, quick } from './profiles.js';
import {
  accountText,
  compactProgress,
  hintFor,
  PROGRESS_MEMO,
  RUN_CANCELLED,
  type CleanupReport,
  type ProgressMemo,
  type RunAccount,
  type StepHint,
} from '../../common/run-account.js';
import type {
  ApprovalAnswer,
  ApprovalInput,
  ApprovalRecord,
  ApprovalVote,
  PendingApproval,
  RefusedApproval,
  RunProgress,
  StepProgress,
  Verification,
} from '../../common/types.js';

type Decision = 'approved' | 'rejected';

/**
 * How the worker's codec reports a payload encrypted with a key it does not hold, or with
 * another key under the same id (lib/codec/aes-gcm.ts): fixable by giving the worker the key.
 */
const { checkInput: checkInputLocally, verifyApproval: verifyApprovalLocally } = proxyLocalActivities<Activities>(localQuick);
const { checkInput, verifyApproval } = proxyActivities<Activities>(quick);

/** Registers a family's query with the answer it has before the run begins (see RunContext.input). */
export type EarlyAnswer = () => void;

/** The change that moved input checking from the sandbox to a local activity in the worker. */
const INPUT_CHECKED_BY_WORKER = 'input-checked-by-worker';
/** The change that made it a regular activity. */
const INPUT_CHECKED_BY_ACTIVITY = 'input-checked-by-activity';

/**
 * The change that made the worker verify each answer (signature, key, run, age) in a local
 * activity before it counts. Answers in histories without the marker were counted as they came.
 */
const APPROVALS_VERIFIED = 'approvals-verified';
/** The change that made the verification a regular activity (see RunContext.checked for why). */
const APPROVALS_VERIFIED_BY_ACTIVITY = 'approvals-verified-by-activity';

const MISSING_KEY = /no key is configured here|not among the configured keys|failed authentication/;

export interface ApprovalRequest {
  step: string;
  summary: string;
  /** Destructive steps apply the two-person rule: the requester cannot approve. */
  destructive: boolean;
  /** When set, `approve` must carry exactly this in `confirm`. */
  confirmPhrase?: string;
  /** Who may answer, and how many must approve: the plan's policy, resolved for this step. */
  policy: ApprovalPolicy;
  timeoutSeconds: number;
}

// Made where they are used: the worker evaluates this module once for all runs (preloadModules),
// before any run exists, and the SDK's meter only works inside a run. The instruments hold no state.
const runsTotal = () => metricMeter.createCounter('runbook_runs_total', 'runs', 'Runbook runs by procedure and outcome');
const runDuration = () => metricMeter.createHistogram('runbook_run_duration', 'int', 'ms', 'Runbook run duration');
const approvalsTotal = () => metricMeter.createCounter('runbook_approvals_total', 'answers', 'Approval answers by decision');

/**
 * Per-run state every runbook shares: the step list (query `progress` and the UI's
 * current details), and the approval gate (signals for the UI, updates for the CLI).
 */
export class RunContext {
  readonly progress: RunProgress;
  readonly approvals: ApprovalRecord[] = [];
  /** The first MAX_KEPT_REFUSALS refused answers; the rest are only counted in `refusalsDropped`. */
  readonly refusals: RefusedApproval[] = [];
  refusalsDropped = 0;
  private pending: PendingApproval | null = null;
  /** Set once the pending step is settled: rejected by one approver, or approved by its quorum. */
  private answer: { decision: Decision; by: string; comment?: string; at: string; verified?: Verification } | null = null;
  /** Nonces of the signed answers this run accepted (signing time in ms): a second answer with one is a replay. */
  private readonly nonces = new Map<string, number>();

  /**
   * Runs started before answers had to name their step accepted answers without one; they
   * keep doing so when replayed (or resumed) by this code, so their histories stay valid.
   */
  private readonly stepRequired: boolean;

  /**
   * Runs started before runs gave an account of themselves (memo of their progress, cleanup
   * and a RunCancelled failure on cancellation) keep ending as they did when replayed.
   */
  private readonly accounts: boolean;
  private readonly hints = new Map<string, StepHint>();
  private readonly cleanups: Array<() => Promise<CleanupReport | void>> = [];

  /** A plan run (`runbook plan`, workflows/shared/plan-mode.ts): read-only steps run, approvals are only recorded. */
  private readonly planned = planning();
  private readonly planApprovals = new Map<string, PlanApproval>();
  private planPolicy: ReturnType<typeof policyIn>;

  constructor(
    readonly procedure: ProcedureId,
    readonly requestedBy: string,
    steps: ReadonlyArray<readonly [id: string, title: string]>,
  ) {
    this.stepRequired = patched('approvals-name-their-step');
    this.accounts = patched('runs-account-for-interruption');
    this.progress = { procedure, steps: steps.map(([id, title]) => ({ id, title, status: 'pending' })) };
    setHandler(progressQuery, () => this.progress);
    setHandler(pendingApprovalQuery, () => this.pending);
    setHandler(approvalsQuery, () => ({ approvals: this.approvals, refusals: this.refusals, refusalsDropped: this.refusalsDropped }));
    this.handleAnswers('approved', approveSignal, approveUpdate);
    this.handleAnswers('rejected', rejectSignal, rejectUpdate);
    upsertSearchAttributes([
      { key: RunbookProcedure, value: procedure },
      { key: AwaitingApproval, value: false },
    ]);
    this.publish();
  }

  /**
   * The run's input checked against its procedure's schema, by the worker in the run's first activity
   * (the schema library stays out of the workflow bundle): a bad input fails the run at once
   * with every problem named, never its workflow task.
   */
  static async input<P extends ProcedureId>(procedure: P, raw: unknown, early: EarlyAnswer[] = []): Promise<ProcedureInput<P>> {
    // Queries asked while the check runs (a status right after the start) get the empty answers of
    // a run that has not begun, not "query not registered"; the run's own handlers replace them.
    setHandler(progressQuery, () => ({ procedure, currentStep: 'checking the input', steps: [] }));
    setHandler(pendingApprovalQuery, () => null);
    setHandler(approvalsQuery, () => ({ approvals: [], refusals: [], refusalsDropped: 0 }));
    for (const answer of early) answer();
    const undecodable = undecodableReason(raw);
    if (undecodable !== undefined) {
      // A key this worker lacks is a deployment mistake: fail the workflow task (retried) so the
      // run goes on once the worker has the key. Anything else (forged or malformed) never will.
      if (MISSING_KEY.test(undecodable)) throw new Error(`the run's input cannot be decrypted by this worker: ${undecodable}`);
      throw ApplicationFailure.nonRetryable(`invalid input for ${procedure}: the input could not be decoded (${clip(undecodable, 300)})`, ErrorTypes.InvalidInput);
    }
    try {
      return await RunContext.checked(procedure, raw);
    } catch (err) {
      const cause = err instanceof ActivityFailure ? err.cause : undefined;
      if (cause instanceof ApplicationFailure && cause.type === ErrorTypes.InvalidInput) throw ApplicationFailure.nonRetryable(cause.message, ErrorTypes.InvalidInput);
      throw err;
    }
  }

  /**
   * The check is a regular activity: a local one could end the first workflow task early (a
   * query arriving while it ran does that) and the patch markers after it then replayed in
   * another task than the one they were recorded in. Runs started while it was a local
   * activity replay that way; runs recorded before either were checked in the sandbox when
   * they ran and hold no marker, so replaying them adds none.
   */
  private static async checked<P extends ProcedureId>(procedure: P, raw: unknown): Promise<ProcedureInput<P>> {
    if (patched(INPUT_CHECKED_BY_ACTIVITY)) return checkInput(procedure, raw);
    if (patched(INPUT_CHECKED_BY_WORKER)) return checkInputLocally(procedure, raw);
    return raw as ProcedureInput<P>;
  }

  /**
   * Runs the whole procedure, recording its outcome and duration as metrics. A cancelled run
   * runs its cleanups (`onCancel`) in a non-cancellable scope, then fails with RunCancelled,
   * its message the account of what it did and left; a failed run keeps its failure and adds
   * the account to the failure's details.
   */
  async run<T>(body: () => Promise<T>): Promise<T> {
    // A plan run returns its plan in place of the procedure's result.
    if (this.planned) return (await this.planRun(body)) as unknown as T;
    const started = Date.now();
    let outcome = 'failed';
    try {
      const result = await body();
      outcome = 'succeeded';
      return result;
    } catch (err) {
      if (err instanceof ContinueAsNew) outcome = 'continued-as-new';
      // A plain Error fails the workflow task (a bug to fix and retry), and continue-as-new is no failure.
      if (!this.accounts || err instanceof ContinueAsNew || !(err instanceof TemporalFailure)) throw err;
      const cancelled = isCancellation(err) || CancellationScope.current().consideredCancelled;
      if (cancelled) outcome = 'cancelled';
      throw await this.account(err, cancelled);
    } finally {
      runsTotal().add(1, { procedure: this.procedure, outcome });
      runDuration().record(Date.now() - started, { procedure: this.procedure });
      this.publish();
    }
  }

  /** Adds a step at the end, or right after the step `after` (known only once the plan is loaded). */
  addStep(id: string, title: string, after?: string): void {
    // Once a plan has stopped, only error handling runs (a rollback, say): its steps are not the run's.
    if (this.planned && halted()) return;
    const at = after === undefined ? -1 : this.progress.steps.findIndex((s) => s.id === after);
    if (at < 0) this.progress.steps.push({ id, title, status: 'pending' });
    else this.progress.steps.splice(at + 1, 0, { id, title, status: 'pending' });
  }

  /** What the system is in, and how to finish or undo, if the run stops during (or after) `step`. */
  hint(step: string, hint: StepHint): void {
    this.hints.set(step, hint);
  }

  /**
   * Cleanup for a cancelled run, run in a non-cancellable scope after the interrupted step
   * has ended, in the order registered; what it reports goes into the run's account.
   */
  onCancel(cleanup: () => Promise<CleanupReport | void>): void {
    this.cleanups.push(cleanup);
  }

  /** Ends the run's account: steps still running are interrupted, cleanups run, and the failure to end with. */
  private async account(err: TemporalFailure, cancelled: boolean): Promise<TemporalFailure> {
    const now = new Date().toISOString();
    const interrupted = this.progress.steps.find((s) => s.status === 'running' || s.status === 'waiting-approval' || s.status === 'interrupted');
    for (const s of this.progress.steps) {
      if (s.status !== 'running' && s.status !== 'waiting-approval') continue;
      const waiting = s.status === 'waiting-approval';
      s.status = cancelled ? 'interrupted' : 'failed';
      s.endedAt = now;
      s.detail = `${cancelled ? 'cancelled' : 'stopped'} ${waiting ? 'while waiting for an answer' : 'while running'}${s.detail ? `; last: ${s.detail}` : ''}`;
    }
    if (this.pending) {
      this.pending = null;
      this.answer = null;
      upsertSearchAttributes([{ key: AwaitingApproval, value: false }]);
    }
    const hint = hintFor(this.progress.steps, this.hints);
    let state = hint?.state;
    let next = hint?.next;
    const cleanup: string[] = [];
    if (cancelled) {
      this.publish();
      await CancellationScope.nonCancellable(async () => {
        for (const c of this.cleanups) {
          try {
            const r = await c();
            if (r?.did) cleanup.push(r.did);
            if (r?.state) state = r.state;
            if (r?.next) next = r.next;
          } catch (e) {
            cleanup.push(`cleanup failed: ${e instanceof Error ? rootMessage(e) : String(e)}`);
          }
        }
      });
    }
    const base = {
      outcome: cancelled ? ('cancelled' as const) : ('failed' as const),
      interrupted: interrupted?.title,
      cleanup,
      ...(state ? { state } : {}),
      ...(next ? { next } : {}),
      approvals: [...this.approvals],
      progress: compactProgress(this.progress),
    };
    const account: RunAccount = { ...base, text: accountText({ ...base, ...(cancelled ? {} : { reason: rootMessage(err) }) }) };
    this.progress.currentStep = undefined;
    this.record();
    log.warn(cancelled ? 'run cancelled' : 'run failed', { interrupted: account.interrupted, state, next });
    if (cancelled) return ApplicationFailure.create({ type: RUN_CANCELLED, nonRetryable: true, message: account.text, details: [account] });
    if (err instanceof ApplicationFailure) {
      return ApplicationFailure.create({
        type: err.type ?? undefined,
        message: err.message,
        nonRetryable: err.nonRetryable === true,
        details: [...(err.details ?? []), account],
        cause: err.cause,
      });
    }
    return err;
  }

  /** The steps and approvals so far in the run's memo: all that can be read of a run that is terminated. */
  private record(): void {
    if (!this.accounts) return;
    const memo: ProgressMemo = { progress: compactProgress(this.progress), approvals: this.approvals };
    upsertMemo({ [PROGRESS_MEMO]: memo });
  }

  stepOf(id: string): StepProgress {
    const s = this.progress.steps.find((x) => x.id === id);
    if (!s) throw new Error(`unknown step ${id}`);
    return s;
  }

  async step<T>(id: string, body: () => Promise<T>, describe?: (result: T) => string): Promise<T> {
    const s = this.stepOf(id);
    if (this.planned) enterStep(id);
    s.status = 'running';
    s.startedAt = new Date().toISOString();
    s.detail = undefined;
    this.progress.currentStep = id;
    this.record();
    this.publish();
    log.info('step started', { step: id });
    try {
      const result = await body();
      s.status = 'succeeded';
      if (describe) s.detail = describe(result);
      if (this.planned) this.planPolicy ??= policyIn(result);
      return result;
    } catch (err) {
      if (this.planned && halted()) {
        s.status = 'pending';
        s.detail = undefined;
        throw err;
      }
      if (isCancellation(err)) {
        s.status = 'interrupted';
        s.detail = `cancelled while running${s.detail ? `; last: ${s.detail}` : ''}`;
        log.warn('step interrupted', { step: id });
        throw err;
      }
      s.status = 'failed';
      s.detail = err instanceof Error ? rootMessage(err) : String(err);
      log.warn('step failed', { step: id, error: s.detail });
      throw err;
    } finally {
      s.endedAt = new Date().toISOString();
      this.publish();
    }
  }

  /** Updates a running step's detail, and the UI's current details, without ending the step. */
  detail(id: string, text: string): void {
    this.stepOf(id).detail = text;
    this.publish();
  }

  skip(id: string, reason: string): void {
    const s = this.stepOf(id);
    s.status = 'skipped';
    s.detail = reason;
    this.publish();
  }

  /**
   * Waits for named humans' answers: the step's quorum of distinct approvers, or one reject,
   * or the timeout. Resolves with the record whether approved, rejected or timed out.
   */
  async requestApproval(req: ApprovalRequest): Promise<ApprovalRecord> {
    const rule = ruleForStep(req.policy, req.step);
    const eligible = rule.approvers.filter((a) => !(req.destructive && a === this.requestedBy));
    if (rule.approvers.length > 0 && new Set(eligible).size < rule.quorum) {
      throw ApplicationFailure.create({
        type: ErrorTypes.InvalidConfig,
        nonRetryable: true,
        message:
          `step ${req.step} needs ${rule.quorum} approvals but only ${new Set(eligible).size} approver(s) can give them ` +
          `(${eligible.join(', ') || 'none'}${req.destructive ? `; ${this.requestedBy} requested the run and cannot approve it` : ''}): ` +
          `add approvers to approvals.steps.${this.procedure}.${req.step} (or approvals.approvers.${this.procedure}) or lower its quorum`,
      });
    }
    if (this.planned) return this.planApproval(req);
    const now = Date.now();
    this.answer = null;
    this.pending = {
      step: req.step,
      summary: req.summary,
      destructive: req.destructive,
      confirmPhrase: req.confirmPhrase,
      approvers: [...rule.approvers],
      quorum: rule.quorum,
      approvedBy: [],
      requestedBy: this.requestedBy,
      requestedAt: new Date(now).toISOString(),
      deadline: new Date(now + req.timeoutSeconds * 1000).toISOString(),
    };
    const step = this.progress.steps.find((s) => s.id === req.step);
    if (step) {
      step.status = 'waiting-approval';
      step.startedAt = new Date(now).toISOString();
    }
    this.progress.currentStep = req.step;
    upsertSearchAttributes([{ key: AwaitingApproval, value: true }]);
    this.record();
    this.publish();
    log.info('approval requested', { step: req.step, approvers: rule.approvers, quorum: rule.quorum });

    const answered = await condition(() => this.answer !== null, req.timeoutSeconds * 1000);
    const votes = this.pending.approvedBy;
    const record: ApprovalRecord = answered
      ? {
          step: req.step,
          decision: this.answer!.decision,
          by: this.answer!.by,
          comment: this.answer!.comment,
          at: this.answer!.at,
          ...(rule.quorum > 1 ? { votes, quorum: rule.quorum } : {}),
          ...(this.answer!.verified ? { verified: this.answer!.verified } : {}),
        }
      : {
          step: req.step,
          decision: 'timed-out',
          at: new Date().toISOString(),
          comment:
            `no answer within ${req.timeoutSeconds}s` +
            (votes.length ? ` (${votes.length} of ${rule.quorum} approvals: ${votes.map((v) => v.by).join(', ')})` : ''),
          ...(rule.quorum > 1 ? { votes, quorum: rule.quorum } : {}),
        };
    this.approvals.push(record);
    this.pending = null;
    this.answer = null;
    if (step) {
      step.status = record.decision === 'approved' ? 'succeeded' : 'failed';
      step.endedAt = record.at;
      step.detail = describeRecord(record);
    }
    upsertSearchAttributes([{ key: AwaitingApproval, value: false }]);
    approvalsTotal().add(1, { procedure: this.procedure, decision: record.decision });
    this.publish();
    log.info('approval answered', { ...record });
    return record;
  }

  /**
   * A plan body runs until its first step that would change something (PlanHalt), or to its end when
   * it only reads; a failure before that point is what the run would be refused with.
   */
  private async planRun(body: () => Promise<unknown>): Promise<RunPlan> {
    let refused: string | undefined;
    try {
      await body();
    } catch (err) {
      if (!halted()) {
        if (!(err instanceof TemporalFailure)) throw err;
        refused = rootMessage(err);
      }
    }
    runsTotal().add(1, { procedure: this.procedure, outcome: 'planned' });
    this.progress.currentStep = undefined;
    this.publish();
    return planOf({
      procedure: this.procedure,
      requestedBy: this.requestedBy,
      progress: this.progress,
      approvals: this.planApprovals,
      ...(this.planPolicy ? { policy: this.planPolicy.policy, approvalTimeoutSeconds: this.planPolicy.timeoutSeconds } : {}),
      ...(refused !== undefined ? { refused } : {}),
    });
  }

  /** In a plan, an approval is recorded with who can give it, and counts as given so the plan goes on. */
  private planApproval(req: ApprovalRequest): ApprovalRecord {
    enterStep(req.step);
    const rule = ruleForStep(req.policy, req.step);
    this.planApprovals.set(req.step, {
      approvers: [...rule.approvers],
      quorum: rule.quorum,
      timeoutSeconds: req.timeoutSeconds,
      destructive: req.destructive,
      ...(req.confirmPhrase !== undefined ? { confirmPhrase: req.confirmPhrase } : {}),
      summary: req.summary,
    });
    return { step: req.step, decision: 'approved', by: 'plan', at: new Date().toISOString(), comment: 'a plan asks no one' };
  }

  /** Turns a record that is not an approval into the run's failure. */
  static failUnlessApproved(record: ApprovalRecord, consequence: string): void {
    if (record.decision === 'approved') return;
    throw ApplicationFailure.create({
      type: record.decision === 'timed-out' ? ErrorTypes.ApprovalTimedOut : ErrorTypes.ApprovalRejected,
      nonRetryable: true,
      message: `${describeRecord(record)}; ${consequence}`,
      details: [record],
    });
  }

  /** Why this answer is refused, or undefined when it is acceptable. */
  private refusal(decision: Decision, input: ApprovalInput): string | undefined {
    // Sizes and kinds first, so no reason below repeats more than a bounded name of what was sent.
    const shape =
      messageProblem(input, '{"by": "alice", "step": "<pending step>", "comment": "..."}') ??
      textProblem('by', input.by, { name: true }) ??
      textProblem('step', input.step, { name: true }) ??
      textProblem('confirm', input.confirm, { name: true }) ??
      textProblem('comment', input.comment) ??
      signedProblem(input.signed);
    if (shape) return shape;
    if (input.signed && this.nonces.has(input.signed.nonce)) {
      return 'replayed: an answer with this signature\'s nonce was already accepted in this run; every answer is signed anew (runbook approve --key FILE)';
    }
    const by = typeof input.by === 'string' ? input.by.trim() : '';
    if (!by) return '"by" is required: the name of the person answering';
    const p = this.pending;
    if (!p) return 'no approval is pending in this run';
    if ((typeof input.step !== 'string' || input.step === '') && this.stepRequired) {
      return `"step" is required: name the step you answer ("step": "${p.step}"), so an answer meant for another step or run does nothing`;
    }
    if (input.step !== undefined && input.step !== p.step) {
      return `this answer is for step "${input.step}" but the pending step is "${p.step}" (stale or misdirected)`;
    }
    if (p.approvers.length === 0) {
      return `no approvers are configured for ${this.procedure}: add approvals.approvers.${this.procedure} (or .default) to the config`;
    }
    if (!p.approvers.includes(by)) return `${by} is not an approver of ${this.procedure} step ${p.step} (approvers: ${p.approvers.join(', ')})`;
    if (decision === 'approved' && p.destructive && by === p.requestedBy) {
      return `${by} requested this run and cannot approve its destructive step (two-person rule)`;
    }
    if (decision === 'approved' && p.approvedBy.some((v) => v.by === by)) {
      return `${by} has already approved step ${p.step}; it needs ${p.quorum} different approvers (${p.approvedBy.length} so far)`;
    }
    if (decision === 'approved' && p.confirmPhrase !== undefined && input.confirm !== p.confirmPhrase) {
      return `confirmation must be exactly "${p.confirmPhrase}" (got ${input.confirm === undefined ? 'nothing' : JSON.stringify(input.confirm)})`;
    }
    return undefined;
  }

  /**
   * Answers by signal (the UI) and by update (the CLI) under the same rules. No validator: a
   * refused update is recorded in the run (and its history) like a refused signal, so the audit
   * keeps every refused answer, then returned to the caller as the update's failure.
   */
  private handleAnswers(decision: Decision, signal: SignalDefinition<[ApprovalInput]>, update: UpdateDefinition<ApprovalAnswer, [ApprovalInput]>): void {
    setHandler(signal, async (input: ApprovalInput) => {
      await this.answerWith(decision, input);
    });
    setHandler(update, async (input: ApprovalInput): Promise<ApprovalAnswer> => {
      const outcome = await this.answerWith(decision, input);
      if (typeof outcome === 'string') throw ApplicationFailure.create({ type: ErrorTypes.ApprovalRefused, nonRetryable: true, message: outcome });
      return outcome;
    });
  }

  /**
   * One answer: checked against the step's rules, then (in runs with the marker) verified by the
   * worker, checked again (the run may have moved on while it waited), and counted; or refused
   * and recorded. Returns what the update answers with, or the refusal's reason.
   */
  private async answerWith(decision: Decision, input: ApprovalInput): Promise<ApprovalAnswer | string> {
    const reason = this.refusal(decision, input);
    if (reason !== undefined) {
      this.keepRefused(decision, input, reason);
      return reason;
    }
    // Verified by a regular activity since the change below; runs recorded while it was a local
    // activity (which a query could split from the task that recorded it) replay that way.
    const byActivity = patched(APPROVALS_VERIFIED_BY_ACTIVITY);
    if (!byActivity && !patched(APPROVALS_VERIFIED)) return this.accept(decision, input);
    const verdict = await this.verify(decision, input, byActivity);
    if (!verdict.ok) {
      this.keepRefused(decision, input, verdict.reason);
      return verdict.reason;
    }
    const after = this.refusal(decision, input);
    if (after !== undefined) {
      this.keepRefused(decision, input, after);
      return after;
    }
    if (input.signed) this.rememberNonce(input.signed.nonce, input.signed.at);
    return this.accept(decision, input, verdict.verified);
  }

  /** The worker's verdict on an answer; a verification that cannot run refuses the answer (it can be sent again). */
  private async verify(decision: Decision, input: ApprovalInput, byActivity: boolean): Promise<VerifyApprovalResult> {
    const { workflowId, runId } = workflowInfo();
    const answer: ApprovalInput = {
      by: input.by,
      step: input.step,
      ...(input.confirm !== undefined ? { confirm: input.confirm } : {}),
      ...(input.comment !== undefined ? { comment: input.comment } : {}),
      ...(input.signed ? { signed: input.signed } : {}),
    };
    try {
      const request = { workflowId, runId, decision: decision === 'approved' ? ('approve' as const) : ('reject' as const), answer };
      return await (byActivity ? verifyApproval(request) : verifyApprovalLocally(request));
    } catch (err) {
      return { ok: false, reason: `the answer could not be verified (${clip(err instanceof Error ? rootMessage(err) : String(err), 200)}): send it again` };
    }
  }

  /** Keeps a used nonce while an answer carrying it could still be accepted (its age limit plus the clock skew allowed). */
  private rememberNonce(nonce: string, signedAt: string): void {
    const window = (SIGNED_ANSWER_MAX_AGE_SECONDS + 2 * SIGNED_ANSWER_MAX_SKEW_SECONDS) * 1000;
    const now = Date.now();
    for (const [n, at] of this.nonces) if (now - at > window) this.nonces.delete(n);
    this.nonces.set(nonce, Date.parse(signedAt));
  }

  /** Keeps a refused answer with its reason (the first MAX_KEPT_REFUSALS; the rest are counted). */
  private keepRefused(decision: Decision, input: ApprovalInput, reason: string): void {
    const claimed = messageProblem(input, '{}') ? undefined : input;
    const refused: RefusedApproval = {
      step: this.pending?.step ?? (typeof claimed?.step === 'string' ? clip(claimed.step) : ''),
      by: typeof claimed?.by === 'string' ? clip(claimed.by) : '',
      answer: decision === 'approved' ? 'approve' : 'reject',
      reason: clip(reason, 500),
      at: new Date().toISOString(),
      ...(claimed && claimed.signed && typeof claimed.signed === 'object' && typeof claimed.signed.keyId === 'string' ? { keyId: clip(claimed.signed.keyId, 64) } : {}),
    };
    keepRefusal(this, refused);
    log.warn('approval refused', { ...refused, refusedSoFar: this.refusals.length + this.refusalsDropped });
    this.publish();
  }

  /** Records an accepted answer; the step is settled by a reject or the last vote of its quorum. */
  private accept(decision: Decision, input: ApprovalInput, verified?: Verification): ApprovalAnswer {
    const at = new Date().toISOString();
    const p = this.pending!;
    const by = input.by.trim();
    const comment = typeof input.comment === 'string' ? input.comment : undefined;
    const proof = verified ? { verified } : {};
    if (decision === 'rejected') {
      this.answer = { decision, by, comment, at, ...proof };
      return { step: p.step, decision, by, at, comment, approvals: p.approvedBy.length, quorum: p.quorum, settled: true, ...proof };
    }
    const vote: ApprovalVote = { by, at, ...(comment !== undefined ? { comment } : {}), ...proof };
    p.approvedBy.push(vote);
    const settled = p.approvedBy.length >= p.quorum;
    if (settled) {
      this.answer = {
        decision,
        by: p.approvedBy.map((v) => v.by).join(', '),
        comment: p.quorum > 1 ? p.approvedBy.filter((v) => v.comment).map((v) => `${v.by}: ${v.comment}`).join('; ') || undefined : comment,
        at,
        ...(verified ? { verified: quorumVerification(p.approvedBy) } : {}),
      };
    } else {
      log.info('approval recorded, quorum not yet met', { step: p.step, by, approvals: p.approvedBy.length, quorum: p.quorum });
      this.publish();
    }
    return { step: p.step, decision, by, at, comment, approvals: p.approvedBy.length, quorum: p.quorum, settled, ...proof };
  }

  /** The UI's "current details": what the run is doing and, when waiting, how to answer. */
  private publish(): void {
    const icon: Record<StepProgress['status'], string> = {
      pending: '⬜',
      running: '⏳',
      'waiting-approval': '✋',
      succeeded: '✅',
      failed: '❌',
      skipped: '⏭️',
      interrupted: '⛔',
    };
    const lines = [`**${this.procedure}** in ${workflowInfo().workflowId}, requested by ${this.requestedBy}`, ''];
    const p = this.pending;
    if (p) {
      const confirm = p.confirmPhrase ? `, "confirm": "${p.confirmPhrase}"` : '';
      const quorum =
        p.quorum > 1
          ? ` Needs ${p.quorum} approvals from different approvers; ${p.approvedBy.length} so far${p.approvedBy.length ? ` (${p.approvedBy.map((v) => v.by).join(', ')})` : ''}.`
          : '';
      lines.push(
        `### Waiting for approval: ${p.step}`,
        p.summary,
        '',
        `Approvers: ${p.approvers.join(', ') || '(none configured)'}${p.destructive ? ' (not the requester)' : ''}.${quorum} Deadline: ${p.deadline}.`,
        `Approve: send signal \`approve\` with \`{"by": "<your name>", "step": "${p.step}"${confirm}, "comment": "..."}\`; refuse: signal \`reject\` with \`{"by": "<your name>", "step": "${p.step}", "comment": "why"}\`.`,
        `CLI: \`runbook approve ${workflowInfo().workflowId} --as <your name>${p.confirmPhrase ? ` --confirm "${p.confirmPhrase}"` : ''} --key <your key file>\``,
        '',
      );
    }
    lines.push('| step | status | detail |', '| --- | --- | --- |');
    for (const s of this.progress.steps) lines.push(`| ${s.title} | ${icon[s.status]} ${s.status} | ${(s.detail ?? '').replace(/\|/g, '/').replace(/\n/g, ' ')} |`);
    const last = this.refusals[this.refusals.length - 1];
    if (last) {
      const more = this.refusalsDropped > 0 ? ` (${this.refusals.length + this.refusalsDropped} refused in all; the first ${this.refusals.length} are kept)` : '';
      lines.push('', `Last refused answer kept: ${last.by || '(anonymous)'} - ${last.reason}${more}`);
    }
    setCurrentDetails(lines.join('\n'));
  }
}

/** A quorum's verification: `unsigned` if any vote was, else every vote's key. */
function quorumVerification(votes: ApprovalVote[]): Verification {
  const keys: string[] = [];
  for (const v of votes) {
    if (!v.verified || v.verified === 'unsigned') return 'unsigned';
    keys.push(v.verified.keyId);
  }
  return { keyId: keys.join(', ') };
}

function describeRecord(r: ApprovalRecord): string {
  if (r.decision === 'timed-out') return `step ${r.step}: ${r.comment}`;
  if (r.quorum && r.decision === 'approved') return `step ${r.step} approved by ${r.by} (${r.quorum} of ${r.quorum} needed)${r.comment ? `: ${r.comment}` : ''}`;
  return `step ${r.step} ${r.decision} by ${r.by}${r.comment ? `: ${r.comment}` : ''}`;
}

function rootMessage(err: Error): string {
  let e: Error = err;
  while (e.cause instanceof Error) e = e.cause;
  return e.message;
}
