import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  ChildWorkflowFailure,
  condition,
  continueAsNew,
  log,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  upsertMemo,
  workflowInfo,
  type ActivityOptions,
  type SignalDefinition,
} from '@temporalio/workflow';
import type { UpdateDefinition } from '@temporalio/common';
import type { Activities } from '../../activities/index.js';
import { clip, listProblem, MAX_MESSAGE_CHARS, MAX_NAME_CHARS, MAX_TEXT_CHARS, messageProblem, textProblem } from '../../common/bounds.js';
import { ErrorTypes, NON_RETRYABLE_ERROR_TYPES } from '../../common/errors.js';
import { HISTORY_DEFAULTS, SEVERITIES, type NotificationKind } from '../../common/incident/constants.js';
import {
  acknowledgeSignal,
  acknowledgeUpdate,
  alertSignal,
  escalateSignal,
  escalateUpdate,
  INCIDENT_MESSAGE_REFUSED,
  incidentQuery,
  mitigatedSignal,
  mitigatedUpdate,
  noteSignal,
  noteUpdate,
  postmortemCompleteSignal,
  postmortemCompleteUpdate,
  postmortemQuery,
  refusalsQuery,
  resolvedSignal,
  resolvedUpdate,
  setSeveritySignal,
  setSeverityUpdate,
  timelineQuery,
} from '../../common/incident/messages.js';
import { formatDuration, renderPostmortem } from '../../common/incident/postmortem.js';
import { appendEvent, MAX_TIMELINE_EVENTS } from '../../common/incident/timeline.js';
import type {
  ActorInput,
  AlertInput,
  EscalateInput,
  EscalationLevel,
  IncidentCarry,
  IncidentInput,
  IncidentPlan,
  IncidentRefusals,
  IncidentResult,
  IncidentState,
  MitigatedInput,
  NoteInput,
  ResolvedInput,
  SeverityInput,
  TicketRequest,
  TimelineEvent,
  TimelineKind,
  TriageResult,
  Verification,
  VerificationCheck,
} from '../../common/incident/types.js';
import { PROCEDURES } from '../../common/procedures.js';
import { quick } from '../shared/profiles.js';
import { handleCommand, keepRefusal } from '../shared/commands.js';
import { checkHealth, selectServices } from '../shared/health.js';
import { RunContext } from '../shared/run-context.js';
import { DEFAULT_ERROR_RATE_QUERY } from './triage.js';

/** Webhooks: a few quick retries, then the failure is recorded in the timeline and the incident goes on. */
const notifyProfile: ActivityOptions = {
  startToCloseTimeout: '15 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 5, nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES },
};

const { incidentPlan } = proxyActivities<Activities>(quick);
const { notify, createTicket } = proxyActivities<Activities>(notifyProfile);
// Regular activities, not local ones: the run answers queries while it verifies (see RunContext.checked).
const { loadPlan: loadServices, runProbe, promQuery } = proxyActivities<Activities>(quick);

/** The seed's escalation matrix: P0 pages the leads at once, a breach escalates, P2/P3 stay with the team and get a ticket. */
const SEED_ESCALATION = 'incident-seed-escalation';
/** A P0/P1 resolution applies only after its verification (or with force and a reason). */
const VERIFIED_RESOLUTION = 'incident-verified-resolution';
/** The watch after a resolution, where the alert firing again re-opens the incident. */
const WATCH_AFTER_RESOLUTION = 'incident-watch-after-resolution';

const LEVELS: EscalationLevel[] = ['L1', 'L2', 'L3', 'L4'];
const LEVEL_NAMES: Record<EscalationLevel, string> = {
  L1: 'on-call engineer',
  L2: 'tech lead',
  L3: 'engineering leadership',
  L4: 'CTO',
};

function levelIndex(l: EscalationLevel): number {
  return LEVELS.indexOf(l);
}

function failureMessage(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

function actor(input: ActorInput | undefined): string | undefined {
  return input && typeof input === 'object' && typeof input.by === 'string' && input.by.trim() ? input.by.trim() : undefined;
}

/** The input's strings and objects are bounded one by one (validateInput); this bounds them together. */
const MAX_INPUT_CHARS = 4 * MAX_MESSAGE_CHARS;
/**
 * What a run hands to the next: its timeline (MAX_TIMELINE_EVENTS of at most MAX_EVENT_CHARS,
 * JSON escaping can double that) and the draft made of the same texts, with room to spare.
 */
const MAX_CARRY_CHARS = 1_500_000;
/** An event's text: a person's text (MAX_TEXT_CHARS) with the run's own words around it. */
const MAX_EVENT_CHARS = MAX_TEXT_CHARS + 500;
/** Triage recommendations kept in the timeline event of a finished triage, each clipped to MAX_RECOMMENDATION_CHARS. */
const MAX_RECOMMENDATIONS = 10;
const MAX_RECOMMENDATION_CHARS = 500;

type MessageName = 'acknowledge' | 'note' | 'set-severity' | 'mitigated' | 'resolved' | 'escalate' | 'postmortem-complete' | 'alert';
type Shape = (input: never) => string | undefined;

const EXAMPLES: Record<MessageName, string> = {
  acknowledge: '{"by": "alice"}',
  note: '{"by": "alice", "text": "rolled back api v2.3.1"}',
  'set-severity': '{"by": "alice", "severity": "P1", "reason": "..."}',
  mitigated: '{"by": "alice", "text": "..."}',
  resolved: '{"by": "alice", "summary": "...", "rootCause": "...", "impact": "..."}',
  escalate: '{"by": "alice", "level": "L3", "reason": "..."}',
  'postmortem-complete': '{"by": "alice"}',
  alert: '{"by": "alertmanager", "status": "firing", "alerts": 1, "summary": "..."}',
};

const byProblem = (i: { by?: unknown }) => textProblem('by', i.by, { name: true, required: true });
const itemProblem = (v: unknown, name: string) => textProblem(name, v, { required: true });
const actionItemProblem = (v: unknown, name: string): string | undefined => {
  const shape = messageProblem(v, '{"item": "...", "owner": "...", "due": "..."}');
  if (shape) return `"${name}": ${shape}`;
  const a = v as { item?: unknown; owner?: unknown; due?: unknown };
  return textProblem(`${name}.item`, a.item, { required: true }) ?? textProblem(`${name}.owner`, a.owner, { name: true }) ?? textProblem(`${name}.due`, a.due, { name: true });
};

/**
 * What every message must look like before the run reads it: one JSON object of bounded
 * size with bounded, plain-text fields. Oversized or malformed messages are refused with a
 * reason that names the field and never repeats what was sent.
 */
const SHAPES = {
  acknowledge: (i: ActorInput) => byProblem(i),
  note: (i: NoteInput) => byProblem(i) ?? textProblem('text', i.text, { required: true }),
  'set-severity': (i: SeverityInput) => byProblem(i) ?? textProblem('severity', i.severity, { name: true, required: true }) ?? textProblem('reason', i.reason),
  mitigated: (i: MitigatedInput) => byProblem(i) ?? textProblem('text', i.text),
  resolved: (i: ResolvedInput) =>
    byProblem(i) ??
    (i.force !== undefined && typeof i.force !== 'boolean' ? '"force" must be true or false' : undefined) ??
    textProblem('reason', i.reason) ??
    textProblem('summary', i.summary) ??
    textProblem('rootCause', i.rootCause) ??
    textProblem('impact', i.impact) ??
    listProblem('wentWell', i.wentWell, itemProblem) ??
    listProblem('wentWrong', i.wentWrong, itemProblem) ??
    listProblem('actionItems', i.actionItems, actionItemProblem),
  escalate: (i: EscalateInput) => byProblem(i) ?? textProblem('level', i.level, { name: true }) ?? textProblem('reason', i.reason),
  'postmortem-complete': (i: ActorInput) => byProblem(i),
  alert: (i: AlertInput) =>
    textProblem('by', i.by, { name: true }) ??
    (i.status !== 'firing' && i.status !== 'resolved' ? '"status" must be firing or resolved' : undefined) ??
    (typeof i.alerts === 'number' && Number.isInteger(i.alerts) && i.alerts >= 0 && i.alerts <= 1_000_000 ? undefined : '"alerts" must be a whole number of alerts') ??
    textProblem('summary', i.summary, { required: true }),
} satisfies Record<MessageName, Shape>;

function shapeProblem<T>(name: MessageName, input: T): string | undefined {
  return messageProblem(input, EXAMPLES[name]) ?? (SHAPES[name] as (i: T) => string | undefined)(input);
}

/** Only the fields the postmortem reads, so nothing else a sender added is kept. */
function resolutionOf(i: ResolvedInput): ResolvedInput {
  const r: ResolvedInput = { by: i.by };
  if (i.summary !== undefined) r.summary = i.summary;
  if (i.rootCause !== undefined) r.rootCause = i.rootCause;
  if (i.impact !== undefined) r.impact = i.impact;
  if (i.wentWell !== undefined) r.wentWell = [...i.wentWell];
  if (i.wentWrong !== undefined) r.wentWrong = [...i.wentWrong];
  if (i.actionItems !== undefined) {
    r.actionItems = i.actionItems.map((a) => ({ item: a.item, ...(a.owner !== undefined ? { owner: a.owner } : {}), ...(a.due !== undefined ? { due: a.due } : {}) }));
  }
  return r;
}

const CONTINUE = 'continue-as-new';

/** The shape the run reads of a carried state; a stranger starting a run with anything else fails it at once. */
function isCarry(c: IncidentCarry): boolean {
  const isObject = (v: unknown) => !!v && typeof v === 'object' && !Array.isArray(v);
  return (
    isObject(c) &&
    (c.phase === 'respond' || c.phase === 'watch' || c.phase === 'postmortem-complete') &&
    isObject(c.plan) &&
    isObject(c.state) &&
    typeof c.state.declaredAt === 'string' &&
    Array.isArray(c.timeline) &&
    c.timeline.length <= MAX_TIMELINE_EVENTS &&
    c.timeline.every((e) => isObject(e) && typeof e.text === 'string' && e.text.length <= MAX_EVENT_CHARS && typeof e.by === 'string' && e.by.length <= MAX_NAME_CHARS) &&
    (c.postmortem === null || typeof c.postmortem === 'string') &&
    isObject(c.refused) &&
    Array.isArray(c.refused.refusals) &&
    Array.isArray(c.steps) &&
    typeof c.eventSeq === 'number' &&
    typeof c.reminders === 'number'
  );
}

/**
 * `incident`: one incident as one durable run (AlphaPulse 1, 6, 7, Appendix B).
 * It pages the primary on-call, pages the secondary when nobody acknowledges within
 * the ack timeout, escalates L2 -> L4 on timers, posts status, channel and stakeholder
 * updates through webhooks, keeps a timeline of every event, and after resolution
 * drafts the postmortem from that timeline and reminds until it is marked complete.
 *
 * A long incident continues as new (same workflow id, a new run) before its history
 * grows large; `carried` is what the previous run hands over, never set by a caller.
 */
export async function incident(rawInput: IncidentInput, carried?: IncidentCarry): Promise<IncidentResult> {
  const inputTooLarge = rawInput && typeof rawInput === 'object' ? messageProblem(rawInput, '{"title": "API down", "severity": "P0"}', MAX_INPUT_CHARS) : undefined;
  if (inputTooLarge) throw ApplicationFailure.nonRetryable(`invalid input for incident: ${inputTooLarge}`, ErrorTypes.InvalidInput);
  const input = await RunContext.input(PROCEDURES.incident, rawInput, [
    () => setHandler(timelineQuery, () => []),
    () => setHandler(postmortemQuery, () => null),
    () => setHandler(refusalsQuery, () => ({ refusals: [], refusalsDropped: 0 })),
  ]);
  if (carried !== undefined) {
    const bad = messageProblem(carried, 'the state of the previous run', MAX_CARRY_CHARS) ?? (isCarry(carried) ? undefined : 'not the state of a previous incident run');
    if (bad) throw ApplicationFailure.nonRetryable(`invalid carried state for incident: ${bad}`, ErrorTypes.InvalidInput);
  }
  const run = new IncidentRun(input, carried);
  const outcome = await run.ctx.run(() => run.body());
  if ('phase' in outcome) return continueAsNew<typeof incident>(input, outcome);
  return outcome;
}

type Check<T> = (input: T) => string | undefined;
type Commands = Exclude<MessageName, 'alert'>;

/** One incident run: its state, its messages and the phases of its body, in the order they run. */
class IncidentRun {
  readonly ctx: RunContext;
  readonly requestedBy: string;
  readonly incidentId: string;
  /** History already there when this run started (the carried state is in its first event). */
  readonly startBytes: number;
  readonly timeline: TimelineEvent[];
  readonly state: IncidentState;
  plan: IncidentPlan | undefined;
  resolution: ResolvedInput | undefined;
  postmortem: string | null;
  /** Bumped by every message, so the main loop re-plans its timers. */
  version = 0;
  eventSeq: number;
  // Timers that already fired, and the next ones due, so a continued run neither repeats nor skips them.
  secondaryPaged: boolean;
  stakeholderAt: number | undefined;
  reminders: number;
  reminderAt: number | undefined;
  triageRunning = false;
  /** A resolution being verified: a second one waits for its answer. */
  verifying = false;
  readonly inflight = new Set<Promise<void>>();
  readonly refused: IncidentRefusals;

  constructor(
    readonly input: IncidentInput,
    readonly carried: IncidentCarry | undefined,
  ) {
    this.requestedBy = input.requestedBy ?? 'unknown';
    this.incidentId = workflowInfo().workflowId;
    this.startBytes = workflowInfo().historySize;
    this.ctx = new RunContext(PROCEDURES.incident, this.requestedBy, [
      ['plan', 'Load configuration and on-call'],
      ['declare', 'Declare: page on-call, status page, channel'],
      ['respond', 'Respond until resolved (ack, escalation, updates)'],
      ['postmortem', 'Draft the postmortem'],
    ]);
    if (carried) this.ctx.progress.steps.splice(0, this.ctx.progress.steps.length, ...carried.steps);
    else if (input.triage) this.ctx.addStep('triage', `Triage: ${input.triage}`);

    this.timeline = carried?.timeline ?? [];
    this.state = carried?.state ?? {
      incidentId: this.incidentId,
      title: input.title,
      severity: input.severity,
      status: 'open',
      level: 'L1',
      declaredAt: new Date().toISOString(),
      triageRuns: [],
      postmortemComplete: false,
      ...(input.service ? { service: input.service } : {}),
      ...(input.dataBreach ? { dataBreach: input.dataBreach } : {}),
    };
    this.plan = carried?.plan;
    this.resolution = carried?.resolution;
    this.postmortem = carried?.postmortem ?? null;
    this.eventSeq = carried?.eventSeq ?? 0;
    this.secondaryPaged = carried?.secondaryPaged ?? false;
    this.stakeholderAt = carried?.stakeholderAt;
    this.reminders = carried?.reminders ?? 0;
    this.reminderAt = carried?.reminderAt;
    this.refused = carried?.refused ?? { refusals: [], refusalsDropped: 0 };
    this.listen();
  }

  record(kind: TimelineKind, by: string, text: string, data?: Record<string, unknown>): void {
    const e: TimelineEvent = { at: new Date().toISOString(), kind, by, text: clip(text, MAX_EVENT_CHARS), ...(data ? { data } : {}) };
    appendEvent(this.timeline, e);
    this.version += 1;
    log.info('incident event', { kind, by, text: e.text });
  }

  /** Sends to every webhook routed for `kind`, without blocking the caller; a failure after retries lands in the timeline. */
  send(kind: NotificationKind, text: string, fields: Record<string, string | number | boolean | string[]> = {}): void {
    const routes = this.plan?.routes[kind] ?? [];
    this.eventSeq += 1;
    const eventId = `${this.incidentId}:${this.eventSeq}`;
    const { title, severity, status, level } = this.state;
    for (const webhook of routes) {
      const delivery: Promise<void> = notify({ webhook, kind, incidentId: this.incidentId, eventId, text, fields: { title, severity, status, level, ...fields } })
        .then(
          () => undefined,
          (err: unknown) => {
            const cause = err instanceof ActivityFailure && err.cause ? err.cause.message : String(err);
            this.record('notification-failed', 'runbook', `${kind} notification to ${webhook} failed: ${cause}`, { webhook, kind });
          },
        )
        .finally(() => this.inflight.delete(delivery));
      this.inflight.add(delivery);
    }
  }

  /** Every notification settles (sent or recorded as failed) and every handler returns. */
  async settle(): Promise<void> {
    do {
      await condition(allHandlersFinished);
      while (this.inflight.size > 0) await Promise.all([...this.inflight]);
    } while (this.inflight.size > 0 || !allHandlersFinished());
  }

  /**
   * Whether to continue as new now: the server suggests it or the history passed the plan's
   * limits. Not while a triage child runs: its parent close policy would cancel it. Runs
   * started by older code continue as new only from where this code first decides to.
   */
  historyFull(): boolean {
    const info = workflowInfo();
    const limits = this.plan?.history ?? HISTORY_DEFAULTS;
    const full =
      info.continueAsNewSuggested ||
      info.historyLength >= limits.maxEvents ||
      // Bytes this run added: a carried state near the limit must not continue as new at once, for ever.
      (info.historySize >= limits.maxBytes && info.historySize - this.startBytes >= limits.maxBytes / 2);
    return full && !this.triageRunning && patched('incident-continue-as-new');
  }

  header(): string {
    return `[${this.state.severity}] ${this.state.title} (${this.incidentId})`;
  }

  page(to: string, role: string, why: string): void {
    this.record('paged', 'runbook', `Paged ${to} (${role}): ${why}`, { to, role });
    this.send('page', `PAGE ${to} (${role}): ${this.header()} — ${why}. Acknowledge: runbook incident ack ${this.incidentId} --as ${to}`, { to, role });
  }

  /** Whether this run follows the seed's escalation matrix (plans and code from before it do not). */
  seedMatrix(p: IncidentPlan): p is IncidentPlan & { matrix: NonNullable<IncidentPlan['matrix']> } {
    return p.matrix !== undefined && patched(SEED_ESCALATION);
  }

  /** Pages named people outside the ladder at once (a P0's leads, a breach's security lead). */
  escalateNow(to: Array<[role: string, people: string[]]>, why: string): void {
    const named = to.filter(([, people]) => people.length > 0);
    const everyone = [...new Set(named.flatMap(([, people]) => people))];
    const list = to.map(([role, people]) => `${role}${people.length ? ` ${people.join(', ')}` : ' (no contact configured)'}`).join('; ');
    this.record('escalated', 'runbook', `Escalated at once to ${list}: ${why}`, { immediate: true, to: everyone, roles: Object.fromEntries(to) });
    if (everyone.length > 0) this.send('escalation', `ESCALATION (immediate): ${this.header()} — ${why}. ${list}`, { to: everyone, escalationLevel: 'immediate', roles: to.map(([r]) => r) });
  }

  /** AlphaPulse 1.1 (P0: CTO, tech lead, security lead at once) and 6.1 (a data breach: L3, a major one L4), on top of the on-call ladder. */
  escalateAtDeclaration(p: IncidentPlan & { matrix: NonNullable<IncidentPlan['matrix']> }): void {
    const { state } = this;
    const contacts = p.contacts;
    if (state.severity === 'P0' && p.matrix.p0Immediate) {
      this.escalateNow([['CTO', contacts.L4], ['Tech Lead', contacts.L2], ['Security Lead', p.matrix.security]], 'P0 escalates immediately (AlphaPulse 1.1)');
    }
    if (state.dataBreach) {
      const why = `${state.dataBreach === 'major' ? 'major data breach' : 'data breach'} (AlphaPulse 6.1)`;
      this.escalateTo('L3', 'runbook', why);
      if (state.dataBreach === 'major') this.escalateTo('L4', 'runbook', why);
      if (!(state.severity === 'P0' && p.matrix.p0Immediate)) this.escalateNow([['Security Lead', p.matrix.security]], why);
    }
  }

  /** AlphaPulse 1.4 step 2: a P2/P3 gets a ticket; where it landed goes into the timeline and the state. */
  openTicket(p: IncidentPlan): void {
    const { state, input } = this;
    const req: TicketRequest = {
      incidentId: this.incidentId,
      title: clip(`[${state.severity}] ${state.title}`, 250),
      description: [
        input.summary ?? state.title,
        '',
        `Severity: ${state.severity} (respond within ${formatDuration(p.responseSeconds[state.severity] * 1000)})`,
        ...(input.service ? [`Service: ${input.service}`] : []),
        `Environment: ${p.environment}`,
        `Declared: ${state.declaredAt} by ${this.requestedBy}${input.source ? ` via ${input.source}` : ''}`,
        `Incident run: ${this.incidentId} (runbook incident timeline ${this.incidentId})`,
      ].join('\n'),
      severity: state.severity,
      labels: [state.severity, ...(input.service ? [`service:${input.service}`] : []), `env:${p.environment}`],
    };
    const created: Promise<void> = createTicket(req)
      .then(
        (ref) => {
          state.ticket = ref;
          const where = [ref.key, ref.url].filter(Boolean).join(' ');
          this.record('ticket', 'runbook', `Ticket created${where ? `: ${where}` : ` (HTTP ${ref.status}, no key in the answer)`}`, { ...ref });
          this.send('channel', `${this.header()}: ticket ${where || 'created'}`);
        },
        (err: unknown) => {
          const cause = err instanceof ActivityFailure && err.cause ? err.cause.message : String(err);
          this.record('ticket', 'runbook', `Ticket could not be created: ${cause}`, { failed: true });
        },
      )
      .finally(() => this.inflight.delete(created));
    this.inflight.add(created);
  }

  escalateTo(level: EscalationLevel, by: string, why: string): void {
    if (levelIndex(level) <= levelIndex(this.state.level)) return;
    this.state.level = level;
    const contacts = this.plan?.contacts[level as 'L2' | 'L3' | 'L4'] ?? [];
    this.record('escalated', by, `Escalated to ${level} (${LEVEL_NAMES[level]}${contacts.length ? `: ${contacts.join(', ')}` : ''}): ${why}`, { level, contacts });
    this.send('escalation', `ESCALATION ${level} (${LEVEL_NAMES[level]}): ${this.header()} — ${why}`, { to: contacts, escalationLevel: level });
  }

  // ---- messages: the same checks for a signal (refusal recorded) and an update (refused by its validator)

  refuse(message: MessageName, input: unknown, reason: string): void {
    const sender = input && typeof input === 'object' ? (input as { by?: unknown }).by : undefined;
    const by = typeof sender === 'string' && !textProblem('by', sender, { name: true, required: true }) ? sender.trim() : '';
    // Logged as kept: a flood of refusals is counted, not written out one by one.
    if (keepRefusal(this.refused, { message, by, reason, at: new Date().toISOString() })) log.warn('incident message refused', { message, reason });
  }

  /**
   * Messages refused for their size or shape. Runs started by older code accepted them; when
   * such a run is replayed its history must replay as recorded, so the new refusals apply
   * from the first message this code refuses live.
   */
  bounded(): boolean {
    return patched('incident-bounded-messages');
  }

  /** Why a message cannot apply to the incident as it is now, or undefined. */
  checks(): { [K in Commands]: Check<Parameters<(typeof SHAPES)[K]>[0]> } {
    const state = this.state;
    const open = () => state.status !== 'resolved';
    const checkActor: Check<ActorInput> = (i) => (actor(i) ? undefined : '"by" is required: who is doing this');
    return {
      acknowledge: (i) => checkActor(i) ?? (state.acknowledgedBy ? `already acknowledged by ${state.acknowledgedBy}` : !open() ? 'the incident is resolved' : undefined),
      note: (i) => checkActor(i) ?? (typeof i.text === 'string' && i.text.trim() ? undefined : '"text" is required'),
      'set-severity': (i) =>
        checkActor(i) ??
        (!SEVERITIES.includes(i.severity) ? `"severity" must be one of ${SEVERITIES.join(', ')}` : i.severity === state.severity ? `severity is already ${i.severity}` : !open() ? 'the incident is resolved' : undefined),
      mitigated: (i) => checkActor(i) ?? (state.status === 'mitigated' ? 'already mitigated' : !open() ? 'the incident is resolved' : undefined),
      resolved: (i) => checkActor(i) ?? (!open() ? `already resolved at ${state.resolvedAt}` : undefined),
      escalate: (i) => {
        const a = checkActor(i);
        if (a) return a;
        if (!open()) return 'the incident is resolved';
        if (i.level !== undefined && !['L2', 'L3', 'L4'].includes(i.level)) return '"level" must be L2, L3 or L4';
        const target = i.level ?? LEVELS[levelIndex(state.level) + 1];
        if (!target) return 'already at L4';
        return levelIndex(target as EscalationLevel) <= levelIndex(state.level) ? `already at ${state.level}` : undefined;
      },
      'postmortem-complete': (i) => checkActor(i) ?? (open() ? 'resolve the incident first' : state.postmortemComplete ? 'already complete' : undefined),
    };
  }

  /** What an accepted message does. */
  appliers(): { [K in Commands]: (input: Parameters<(typeof SHAPES)[K]>[0]) => void } {
    const state = this.state;
    return {
      acknowledge: (i) => {
        const by = actor(i)!;
        state.acknowledgedBy = by;
        state.acknowledgedAt = new Date().toISOString();
        state.commander ??= by;
        if (state.status === 'open') state.status = 'acknowledged';
        const after = formatDuration(Date.parse(state.acknowledgedAt) - Date.parse(state.declaredAt));
        this.record('acknowledged', by, `Acknowledged by ${by} after ${after}`);
        this.send('channel', `${this.header()}: acknowledged by ${by} after ${after}`);
      },
      note: (i) => {
        this.record('note', actor(i)!, i.text.trim());
      },
      'set-severity': (i) => {
        const from = state.severity;
        state.severity = i.severity;
        this.record('severity-changed', actor(i)!, `Severity ${from} -> ${i.severity}${i.reason ? `: ${i.reason}` : ''}`, { from, to: i.severity });
        this.send('channel', `${this.header()}: severity changed from ${from} by ${actor(i)}`);
      },
      mitigated: (i) => {
        state.status = 'mitigated';
        state.mitigatedAt = new Date().toISOString();
        this.record('mitigated', actor(i)!, `Mitigated${i.text ? `: ${i.text}` : ''}`);
        this.send('channel', `${this.header()}: mitigated by ${actor(i)}; monitoring before resolving`);
      },
      resolved: (i) => {
        this.resolution = resolutionOf(i);
        state.status = 'resolved';
        state.resolvedAt = new Date().toISOString();
        state.mitigatedAt ??= state.resolvedAt;
        this.record('resolved', actor(i)!, `Incident resolved${i.summary ? `: ${i.summary}` : ''}`);
      },
      escalate: (i) => {
        const target = (i.level ?? LEVELS[levelIndex(state.level) + 1]) as EscalationLevel;
        this.escalateTo(target, actor(i)!, i.reason ?? `manual escalation by ${actor(i)}`);
      },
      'postmortem-complete': (i) => {
        state.postmortemComplete = true;
        this.record('postmortem-completed', actor(i)!, `Postmortem marked complete by ${actor(i)}`);
      },
    };
  }

  /** One message as a signal and an update: the shape first, then whether it applies now. */
  wire<T extends ActorInput>(name: Commands, signal: SignalDefinition<[T]>, update: UpdateDefinition<IncidentState, [T]>, check: Check<T>, apply: (i: T) => void): void {
    handleCommand(signal, update, {
      validate: (i, via) => {
        const shape = shapeProblem(name, i);
        // Validators run only live, where the patch is always in effect: the bounds apply to every update at once.
        return shape !== undefined && (via === 'update' || this.bounded()) ? shape : check(i);
      },
      apply: (i) => {
        apply(i);
        return { ...this.state };
      },
      refuse: (i, reason) => this.refuse(name, i, reason),
      failure: (reason) => ApplicationFailure.create({ type: INCIDENT_MESSAGE_REFUSED, message: reason, nonRetryable: true }),
    });
  }

  /**
   * `resolved` answers after its verification, so unlike the other messages its update
   * handler is async; the checks are the same for the signal and the update.
   */
  wireResolved(check: Check<ResolvedInput>, apply: (i: ResolvedInput) => void): void {
    const validate = (i: ResolvedInput, via: 'signal' | 'update'): string | undefined => {
      const shape = shapeProblem('resolved', i);
      if (shape !== undefined && (via === 'update' || this.bounded())) return shape;
      const refused = check(i);
      if (refused !== undefined || shape !== undefined) return refused;
      if (i.force === true && !(typeof i.reason === 'string' && i.reason.trim())) return '"reason" is required with force: say why the verification is skipped';
      if (this.verifying && i.force !== true) return 'a verification of this resolution is running: wait for its answer, or resolve with force and a reason';
      return undefined;
    };
    setHandler(resolvedSignal, (i: ResolvedInput) => {
      const reason = validate(i, 'signal');
      if (reason !== undefined) this.refuse('resolved', i, reason);
      else void this.resolve(i, apply);
    });
    setHandler(resolvedUpdate, (i: ResolvedInput) => this.resolve(i, apply), {
      validator: (i: ResolvedInput) => {
        const reason = validate(i, 'update');
        if (reason !== undefined) throw ApplicationFailure.create({ type: INCIDENT_MESSAGE_REFUSED, message: reason, nonRetryable: true });
      },
    });
  }

  /**
   * AlphaPulse 1.2 step 8 (and 1.3, "same as P0"): a P0/P1 is resolved only when the smoke
   * checks pass and the error rate is under the limit; otherwise it stays open and the
   * timeline says why. `force` with a reason skips the checks and is recorded as such.
   */
  async resolve(i: ResolvedInput, apply: (i: ResolvedInput) => void): Promise<IncidentState> {
    const state = this.state;
    if (!patched(VERIFIED_RESOLUTION)) {
      apply(i);
      return { ...state };
    }
    const by = actor(i)!;
    if (i.force === true) {
      this.record('verification', by, `Resolved by ${by} without verification (force): ${i.reason!.trim()}`, { ok: false, forced: true });
      apply(i);
      return { ...state };
    }
    await condition(() => this.plan !== undefined);
    const v = this.plan!.verification;
    if (!v || !v.requiredFor.includes(state.severity)) {
      apply(i);
      return { ...state };
    }
    this.verifying = true;
    this.record('verification', by, `Resolution requested by ${by}: verifying first (smoke checks, error rate below ${v.maxErrorRatePercent}%)`);
    let verdict: Verification;
    try {
      verdict = await this.verify(v);
    } finally {
      this.verifying = false;
    }
    state.verification = verdict;
    // Resolved with force while the checks ran: that answer stands.
    if (state.status === 'resolved') return { ...state };
    const lines = verdict.checks.map((c) => `${c.check}: ${c.detail}`).join('; ');
    if (verdict.ok) {
      this.record('verification', 'runbook', `Verified: ${lines}`, { ok: true, checks: verdict.checks });
      apply(i);
    } else {
      this.record('verification', 'runbook', `Not resolved, the incident stays ${state.status}: ${verdict.reason}. Fix it and resolve again, or resolve --force --reason "..."`, {
        ok: false,
        checks: verdict.checks,
      });
      this.send('channel', `${this.header()}: resolution by ${by} refused by its verification: ${verdict.reason}`);
    }
    return { ...state };
  }

  /** The smoke checks (the service's health probes, as health-check runs them) and the error rate from Prometheus. */
  async verify(v: NonNullable<IncidentPlan['verification']>): Promise<Verification> {
    const checks: VerificationCheck[] = [];
    const smoke = async (): Promise<VerificationCheck> => {
      try {
        const plan = await loadServices({ procedure: PROCEDURES.incident });
        const service = this.state.service;
        const known = service !== undefined && plan.services.some((x) => x.name === service);
        const services = known ? selectServices(plan, [service]) : plan.services;
        const scope = known ? `service ${service}` : 'all services';
        if (services.every((x) => x.probes.length === 0)) return { check: 'smoke checks', ok: true, detail: `no health probes configured for ${scope}` };
        const h = await checkHealth(plan, services, runProbe);
        const bad = h.results.filter((r) => r.severity === 'P0' || r.severity === 'P1');
        return {
          check: 'smoke checks',
          ok: bad.length === 0,
          detail: bad.length === 0 ? `${h.results.length} probes of ${scope} healthy` : `unhealthy: ${bad.map((r) => `${r.service} ${r.severity} ${r.reason}`).join(', ')}`,
        };
      } catch (err) {
        return { check: 'smoke checks', ok: false, detail: `could not run: ${clip(failureMessage(err), 300)}` };
      }
    };
    const errorRate = async (): Promise<VerificationCheck> => {
      if (!v.prometheus) return { check: 'error rate', ok: true, detail: 'not checked: incident.prometheusUrl is not set' };
      const query = v.errorRateQuery ?? DEFAULT_ERROR_RATE_QUERY;
      try {
        const ratio = await promQuery({ query });
        if (ratio === null) return { check: 'error rate', ok: false, detail: `no data from Prometheus for ${query}` };
        const percent = Math.round(ratio * 100 * 1000) / 1000;
        return {
          check: 'error rate',
          ok: percent < v.maxErrorRatePercent,
          detail: `${percent}% ${percent < v.maxErrorRatePercent ? 'below' : 'not below'} ${v.maxErrorRatePercent}% (${query})`,
        };
      } catch (err) {
        return { check: 'error rate', ok: false, detail: `could not read it from Prometheus: ${clip(failureMessage(err), 300)}` };
      }
    };
    checks.push(...(await Promise.all([smoke(), errorRate()])));
    const failed = checks.filter((c) => !c.ok);
    return { at: new Date().toISOString(), ok: failed.length === 0, checks, ...(failed.length ? { reason: failed.map((c) => `${c.check}: ${c.detail}`).join('; ') } : {}) };
  }

  /** A firing alert during the watch: the incident opens again, pages the primary and, where the matrix says so, the tech lead. */
  reopen(by: string, why: string): void {
    const state = this.state;
    state.status = 'open';
    state.reopened = (state.reopened ?? 0) + 1;
    state.resolvedAt = undefined;
    state.watchUntil = undefined;
    this.record('reopened', by, `Re-opened (#${state.reopened}): ${why}`);
    this.send('status', `Investigating: ${state.title}. The issue has come back; we are investigating.`, { statusPage: 'investigating' });
    this.send('channel', `${this.header()}: RE-OPENED — ${why}`);
    this.page(state.commander ?? this.plan?.oncall?.primary ?? 'on-call', 'primary', `re-opened: ${why}`);
    const p = this.plan;
    if (p && this.seedMatrix(p) && p.matrix.l2For.includes(state.severity)) this.escalateTo('L2', 'runbook', `recurred within the watch after resolution`);
  }

  listen(): void {
    const checks = this.checks();
    const apply = this.appliers();
    this.wire('acknowledge', acknowledgeSignal, acknowledgeUpdate, checks.acknowledge, apply.acknowledge);
    this.wire('note', noteSignal, noteUpdate, checks.note, apply.note);
    this.wire('set-severity', setSeveritySignal, setSeverityUpdate, checks['set-severity'], apply['set-severity']);
    this.wire('mitigated', mitigatedSignal, mitigatedUpdate, checks.mitigated, apply.mitigated);
    this.wireResolved(checks.resolved, apply.resolved);
    this.wire('escalate', escalateSignal, escalateUpdate, checks.escalate, apply.escalate);
    this.wire('postmortem-complete', postmortemCompleteSignal, postmortemCompleteUpdate, checks['postmortem-complete'], apply['postmortem-complete']);
    setHandler(alertSignal, (a: AlertInput) => {
      const shape = shapeProblem('alert', a);
      if (shape !== undefined && this.bounded()) {
        this.refuse('alert', a, shape);
        return;
      }
      const by = actor(a) ?? 'alertmanager';
      if (a.status === 'resolved') {
        if (this.state.status === 'open' || this.state.status === 'acknowledged') apply.mitigated({ by, text: `alert resolved: ${a.summary}` });
        else this.record('alert', by, `Alert resolved: ${a.summary}`);
      } else {
        this.record('alert', by, `Alert firing (${a.alerts} alert${a.alerts === 1 ? '' : 's'}): ${a.summary}`, { alerts: a.alerts });
        if (this.state.status === 'resolved' && this.state.watchUntil !== undefined) this.reopen(by, `the alert fired again within the watch: ${a.summary}`);
      }
    });
    setHandler(timelineQuery, () => this.timeline);
    setHandler(incidentQuery, () => this.state);
    setHandler(postmortemQuery, () => this.postmortem);
    setHandler(refusalsQuery, () => this.refused);
  }

  // ---- the run's body, phase by phase

  async body(): Promise<IncidentResult | IncidentCarry> {
    const carried = this.carried;
    const p = carried ? carried.plan : await this.loadPlan();
    if (!carried) await this.declare(p);
    if (!carried && this.input.triage) await this.startTriage(this.input.triage);

    if (!carried || carried.phase === 'respond' || carried.phase === 'watch') {
      let watching = carried?.phase === 'watch';
      for (;;) {
        if (!watching) {
          const responded = await this.ctx.step('respond', () => this.respond(p), (s) =>
            s === CONTINUE ? 'continued in a new run' : `resolved at ${s.resolvedAt}, highest level ${s.level}`,
          );
          if (responded === CONTINUE) return this.carryOn('respond', 'respond');
        }
        watching = false;
        const watchFor = this.watchSeconds(p);
        if (watchFor === undefined) break;
        const watched = await this.ctx.step('watch', () => this.watch(watchFor), (w) =>
          w === CONTINUE ? 'continued in a new run' : w === 'reopened' ? `re-opened by a recurring alert (#${this.state.reopened})` : `no recurrence within ${formatDuration(watchFor * 1000)}`,
        );
        if (watched === CONTINUE) return this.carryOn('watch', 'watch');
        if (watched === 'quiet') break;
      }
      this.postmortem = await this.ctx.step('postmortem', async () => this.draftPostmortem(p), () => 'drafted');
    }

    const reminding = carried?.phase === 'postmortem-complete';
    if (reminding || (p.postmortem.requiredFor.includes(this.state.severity) && !this.state.postmortemComplete)) {
      if (!reminding) this.ctx.addStep('postmortem-complete', 'Wait for the postmortem to be completed');
      const completed = await this.ctx.step('postmortem-complete', () => this.remind(p), (done) =>
        done === CONTINUE
          ? 'continued in a new run'
          : done
            ? `completed by ${[...this.timeline].reverse().find((e) => e.kind === 'postmortem-completed')?.by}`
            : 'not completed',
      );
      if (completed === CONTINUE) return this.carryOn('postmortem-complete', 'postmortem-complete');
    }

    // Every notification settles (sent or recorded as failed) before the run closes, and a
    // resolution still being verified when another was forced gets its answer.
    await condition(allHandlersFinished);
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
    const refused = this.refused;
    if (refused.refusals.length > 0) log.info('refused incident messages', { count: refused.refusals.length + refused.refusalsDropped });
    return { state: { ...this.state }, timeline: this.timeline, postmortem: this.postmortem ?? '', progress: this.ctx.progress, ...refused };
  }

  async loadPlan(): Promise<IncidentPlan> {
    const p = await this.ctx.step('plan', () => incidentPlan(), (x) => (x.oncall ? `on call: ${x.oncall.primary}, secondary ${x.oncall.secondary}` : 'no on-call rotation configured'));
    this.plan = p;
    this.state.primary = p.oncall?.primary;
    this.state.secondary = p.oncall?.secondary;
    return p;
  }

  async declare(p: IncidentPlan): Promise<void> {
    const { state, input, requestedBy } = this;
    await this.ctx.step(
      'declare',
      async () => {
        // Declared first in the timeline even when a message arrived before the plan loaded.
        this.timeline.unshift({
          at: state.declaredAt,
          kind: 'declared',
          by: requestedBy,
          text: `Incident declared: ${state.severity} ${state.title}${input.service ? ` (service ${input.service})` : ''}${input.source ? ` via ${input.source}` : ''}`,
        });
        if (state.severity === 'P0' || state.severity === 'P1') {
          this.send('status', `Investigating: ${state.title}. We are investigating an issue and will post updates here.`, { statusPage: 'investigating', ...(p.statusPageUrl ? { url: p.statusPageUrl } : {}) });
        }
        this.send('channel', `${this.header()} declared by ${requestedBy}${input.summary ? `: ${input.summary}` : ''}. Response time ${formatDuration(p.responseSeconds[state.severity] * 1000)}.`);
        this.page(p.oncall?.primary ?? 'on-call', 'primary', `new ${state.severity} incident`);
        if (this.seedMatrix(p)) {
          this.escalateAtDeclaration(p);
          if (p.ticketFor?.includes(state.severity)) this.openTicket(p);
        }
      },
      () => `paged ${p.oncall?.primary ?? 'on-call'}`,
    );
  }

  /** Starts the triage child; its outcome lands in the timeline whenever it ends. */
  async startTriage(triage: NonNullable<IncidentInput['triage']>): Promise<void> {
    const ctx = this.ctx;
    ctx.stepOf('triage').status = 'running';
    const child = await startChild(triage, {
      workflowId: `${this.incidentId}--${triage}`,
      args: [{ ...(this.input.triageInput ?? {}), requestedBy: this.requestedBy }],
      parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
    });
    this.triageRunning = true;
    this.state.triageRuns.push(child.workflowId);
    this.record('triage-started', 'runbook', `Triage started: ${triage} (${child.workflowId})`, { workflowId: child.workflowId });
    void (child.result() as Promise<TriageResult>).then(
      (r) => {
        this.triageRunning = false;
        const bad = r.findings.filter((f) => f.severity === 'P0' || f.severity === 'P1' || f.severity === 'P2');
        const text = `Triage ${triage} finished: ${bad.length ? bad.map((f) => `${f.check}: ${f.detail}`).join('; ') : 'no problems found'}`;
        const recommendations = r.recommendations.slice(0, MAX_RECOMMENDATIONS).map((x) => clip(x, MAX_RECOMMENDATION_CHARS));
        this.record('triage-finished', 'runbook', text, { workflowId: child.workflowId, recommendations });
        ctx.stepOf('triage').status = 'succeeded';
        ctx.stepOf('triage').detail = `${bad.length} findings`;
        this.send('channel', `${this.header()}: ${clip(text, MAX_EVENT_CHARS)}`);
      },
      (err: unknown) => {
        this.triageRunning = false;
        const msg = clip(err instanceof ChildWorkflowFailure && err.cause ? err.cause.message : String(err), MAX_TEXT_CHARS);
        this.record('triage-finished', 'runbook', `Triage ${triage} failed: ${msg}`, { workflowId: child.workflowId });
        ctx.stepOf('triage').status = 'failed';
        ctx.stepOf('triage').detail = msg;
      },
    );
  }

  /** Until resolved: page the secondary, escalate and update stakeholders on their timers, woken early by every message. */
  async respond(p: IncidentPlan): Promise<IncidentState | typeof CONTINUE> {
    const state = this.state;
    const declaredMs = Date.parse(state.declaredAt);
    const startedAt = this.startedAtOf('respond');
    if (startedAt) this.ctx.stepOf('respond').startedAt = startedAt;
    while (state.status !== 'resolved') {
      const now = Date.now();
      const deadlines = [...this.pageSecondary(p, now, declaredMs), ...this.escalateOnTime(p, now, declaredMs), ...this.updateStakeholders(p, now, declaredMs)];
      this.ctx.stepOf('respond').detail = `${state.status}, ${state.level}${state.acknowledgedBy ? `, acknowledged by ${state.acknowledgedBy}` : ', not acknowledged'}`;
      if (this.historyFull()) return CONTINUE;
      const next = deadlines.length > 0 ? Math.min(...deadlines) : undefined;
      const target = this.version;
      if (next === undefined) await condition(() => this.version !== target);
      else await condition(() => this.version !== target, Math.max(1, next - Date.now()));
    }
    this.send('status', `Resolved: ${state.title}. The issue has been resolved; we are monitoring for stability.`, { statusPage: 'resolved' });
    this.send(
      'channel',
      `${this.header()}: incident resolved by ${this.timeline[this.timeline.length - 1]?.by ?? 'unknown'}, monitoring for stability. Open for ${formatDuration(Date.parse(state.resolvedAt!) - declaredMs)}.`,
    );
    return state;
  }

  /** How long to watch the resolved incident (AlphaPulse 1.3 step 4: P1, one hour), with the step shown before the postmortem. */
  watchSeconds(p: IncidentPlan): number | undefined {
    const seconds = p.watchSeconds?.[this.state.severity];
    if (seconds === undefined || !patched(WATCH_AFTER_RESOLUTION)) return undefined;
    const steps = this.ctx.progress.steps;
    if (!steps.some((x) => x.id === 'watch')) {
      const at = steps.findIndex((x) => x.id === 'postmortem');
      steps.splice(at < 0 ? steps.length : at, 0, { id: 'watch', title: `Watch after resolution (${formatDuration(seconds * 1000)})`, status: 'pending' });
    }
    return seconds;
  }

  /** A durable timer: quiet until it ends closes the incident; the alert firing again (see `reopen`) opens it. */
  async watch(seconds: number): Promise<'quiet' | 'reopened' | typeof CONTINUE> {
    const state = this.state;
    if (state.watchUntil === undefined) {
      state.watchUntil = new Date(Date.now() + seconds * 1000).toISOString();
      this.record('watch', 'runbook', `Watching for ${formatDuration(seconds * 1000)} after resolution: the alert firing again before ${state.watchUntil} re-opens the incident (AlphaPulse 1.3)`);
      // The intake finds a watched incident of a service in its memo, without asking each run.
      upsertMemo({ incidentWatch: { service: state.service ?? null, until: state.watchUntil } });
    }
    for (;;) {
      if (state.status !== 'resolved') {
        upsertMemo({ incidentWatch: null });
        return 'reopened';
      }
      const left = Date.parse(state.watchUntil!) - Date.now();
      if (left <= 0) break;
      if (this.historyFull()) return CONTINUE;
      const target = this.version;
      await condition(() => this.version !== target || state.status !== 'resolved', left);
    }
    state.watchUntil = undefined;
    upsertMemo({ incidentWatch: null });
    this.record('watch', 'runbook', `No recurrence within ${formatDuration(seconds * 1000)} of the resolution; the incident is closed`);
    this.send('channel', `${this.header()}: no recurrence within ${formatDuration(seconds * 1000)}; closed`);
    return 'quiet';
  }

  /** Pages the secondary when nobody acknowledged in time; returns when that is due, if not yet. */
  pageSecondary(p: IncidentPlan, now: number, declaredMs: number): number[] {
    if (this.state.acknowledgedBy || this.secondaryPaged) return [];
    const at = declaredMs + p.ackTimeoutSeconds * 1000;
    if (now < at) return [at];
    this.secondaryPaged = true;
    this.page(p.oncall?.secondary ?? 'secondary on-call', 'secondary', `no acknowledgement within ${formatDuration(p.ackTimeoutSeconds * 1000)}`);
    return [];
  }

  /** Escalates an open incident to L2 after the response time, a P0 to L3 and L4 later; returns the escalations still due. */
  escalateOnTime(p: IncidentPlan, now: number, declaredMs: number): number[] {
    const state = this.state;
    const deadlines: number[] = [];
    if (state.status !== 'open' && state.status !== 'acknowledged') return deadlines;
    const elapsed = now - declaredMs;
    const response = p.responseSeconds[state.severity] * 1000;
    // AlphaPulse 1.1: P2/P3 stay with the team; the tech lead (L2) is for P0/P1 past their response time.
    const toL2 = this.seedMatrix(p) ? p.matrix.l2For.includes(state.severity) : true;
    if (levelIndex(state.level) < 1 && toL2) {
      if (elapsed >= response) this.escalateTo('L2', 'runbook', `not resolved within the ${state.severity} response time (${formatDuration(response)})`);
      else deadlines.push(declaredMs + response);
    }
    if (state.severity === 'P0') {
      for (const [level, after] of [['L3', p.l3AfterSeconds], ['L4', p.l4AfterSeconds]] as const) {
        if (levelIndex(state.level) >= levelIndex(level)) continue;
        if (elapsed >= after * 1000) this.escalateTo(level, 'runbook', `P0 open longer than ${formatDuration(after * 1000)}`);
        else deadlines.push(declaredMs + after * 1000);
      }
    }
    return deadlines;
  }

  /** Sends the stakeholder update when due (every N seconds for the severity); returns when the next one is. */
  updateStakeholders(p: IncidentPlan, now: number, declaredMs: number): number[] {
    const state = this.state;
    const every = p.stakeholderUpdateSeconds[state.severity];
    if (!every) {
      this.stakeholderAt = undefined;
      return [];
    }
    this.stakeholderAt ??= declaredMs + every * 1000;
    if (now >= this.stakeholderAt) {
      const latest = [...this.timeline].reverse().find((e) => e.kind === 'note')?.text ?? this.timeline[this.timeline.length - 1]?.text ?? '-';
      const text = `Update on ${this.header()}: status ${state.status}, open ${formatDuration(now - declaredMs)}, level ${state.level}${state.acknowledgedBy ? `, led by ${state.acknowledgedBy}` : ''}. Latest: ${latest}`;
      this.record('stakeholder-update', 'runbook', `Stakeholder update sent (status ${state.status})`);
      this.send('stakeholder', text);
      this.stakeholderAt = now + every * 1000;
    }
    return [this.stakeholderAt];
  }

  draftPostmortem(p: IncidentPlan): string {
    const state = this.state;
    const required = p.postmortem.requiredFor.includes(state.severity);
    const due = new Date(Date.parse(state.resolvedAt!) + p.postmortem.dueSeconds * 1000).toISOString();
    const meeting = new Date(Date.parse(state.resolvedAt!) + p.postmortem.meetingWithinSeconds * 1000).toISOString();
    this.record('postmortem-drafted', 'runbook', `Postmortem drafted${required ? `; due ${due}, meeting by ${meeting}` : ' (optional for this severity)'}`);
    const draft = renderPostmortem(state, this.timeline, this.resolution);
    this.send('postmortem', `Postmortem draft for ${this.header()} is ready (query \`postmortem\`).${required ? ` Complete it by ${due}; schedule the blameless meeting by ${meeting}.` : ''}`, {
      markdown: draft,
      due: required ? due : '',
    });
    return draft;
  }

  /** Reminds until the postmortem is marked complete, or the reminders run out. */
  async remind(p: IncidentPlan): Promise<boolean | typeof CONTINUE> {
    const state = this.state;
    const startedAt = this.startedAtOf('postmortem-complete');
    if (startedAt) this.ctx.stepOf('postmortem-complete').startedAt = startedAt;
    const target = () => state.postmortemComplete;
    for (;;) {
      if (!state.postmortemComplete && this.historyFull()) return CONTINUE;
      this.reminderAt ??= Date.now() + p.postmortem.reminderEverySeconds * 1000;
      if (await condition(target, Math.max(1, this.reminderAt - Date.now()))) return true;
      this.reminderAt = undefined;
      if (this.reminders >= p.postmortem.maxReminders) {
        this.record('postmortem-reminder', 'runbook', `Postmortem still not complete after ${this.reminders} reminders; stopped reminding`);
        return false;
      }
      this.reminders += 1;
      const due = Date.parse(state.resolvedAt!) + p.postmortem.dueSeconds * 1000;
      const overdue = Date.now() > due;
      this.record('postmortem-reminder', 'runbook', `Postmortem reminder #${this.reminders}${overdue ? ' (overdue)' : ''}`);
      this.send(
        'postmortem',
        `Reminder #${this.reminders}: the postmortem for ${this.header()} is ${overdue ? 'OVERDUE' : 'not complete yet'}. Mark it done: runbook incident postmortem-done ${this.incidentId} --as <name>`,
        { reminder: this.reminders, overdue },
      );
    }
  }

  startedAtOf(id: string): string | undefined {
    return this.carried?.steps.find((s) => s.id === id)?.startedAt;
  }

  /** A step that returned CONTINUE goes on in the next run: it is still running there. */
  async carryOn(phase: IncidentCarry['phase'], stepId: string): Promise<IncidentCarry> {
    await this.settle();
    const step = this.ctx.stepOf(stepId);
    step.status = 'running';
    step.endedAt = undefined;
    step.detail = `continued in a new run (history ${workflowInfo().historyLength} events)`;
    this.state.continuedAsNew = (this.state.continuedAsNew ?? 0) + 1;
    log.info('incident continues as new', { historyLength: workflowInfo().historyLength, historySize: workflowInfo().historySize, phase });
    return {
      phase,
      plan: this.plan!,
      state: this.state,
      timeline: this.timeline,
      refused: this.refused,
      ...(this.resolution ? { resolution: this.resolution } : {}),
      postmortem: this.postmortem,
      eventSeq: this.eventSeq,
      secondaryPaged: this.secondaryPaged,
      ...(this.stakeholderAt !== undefined ? { stakeholderAt: this.stakeholderAt } : {}),
      reminders: this.reminders,
      ...(this.reminderAt !== undefined ? { reminderAt: this.reminderAt } : {}),
      steps: this.ctx.progress.steps,
    };
  }
}
