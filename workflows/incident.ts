import {
  ActivityFailure,
  ChildWorkflowFailure,
  condition,
  log,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
  type ActivityOptions,
  type SignalDefinition,
} from '@temporalio/workflow';
import type { UpdateDefinition } from '@temporalio/common';
import type { Activities } from '../activities/index.js';
import { NON_RETRYABLE_ERROR_TYPES } from '../common/errors.js';
import { SEVERITIES, type NotificationKind } from '../common/families/incident-config.js';
import {
  acknowledgeSignal,
  acknowledgeUpdate,
  alertSignal,
  escalateSignal,
  escalateUpdate,
  incidentQuery,
  mitigatedSignal,
  mitigatedUpdate,
  noteSignal,
  noteUpdate,
  postmortemCompleteSignal,
  postmortemCompleteUpdate,
  postmortemQuery,
  resolvedSignal,
  resolvedUpdate,
  setSeveritySignal,
  setSeverityUpdate,
  timelineQuery,
} from '../common/families/incident-messages.js';
import { formatDuration, renderPostmortem } from '../common/families/incident-postmortem.js';
import type {
  ActorInput,
  AlertInput,
  EscalateInput,
  EscalationLevel,
  IncidentInput,
  IncidentPlan,
  IncidentResult,
  IncidentState,
  MitigatedInput,
  NoteInput,
  ResolvedInput,
  SeverityInput,
  TimelineEvent,
  TimelineKind,
  TriageResult,
} from '../common/families/incident-types.js';
import { PROCEDURES } from '../common/procedures.js';
import { quick } from './profiles.js';
import { RunContext } from './run-context.js';

export {
  redisTriage as 'redis-triage',
  natsLagTriage as 'nats-lag-triage',
  serviceErrorTriage as 'service-error-triage',
  latencyTriage as 'latency-triage',
} from './incident-triage.js';

/** Webhooks: a few quick retries, then the failure is recorded in the timeline and the incident goes on. */
const notifyProfile: ActivityOptions = {
  startToCloseTimeout: '15 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 5, nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES },
};

const { incidentPlan } = proxyActivities<Activities>(quick);
const { notify } = proxyActivities<Activities>(notifyProfile);

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

function actor(input: ActorInput | undefined): string | undefined {
  return input && typeof input === 'object' && typeof input.by === 'string' && input.by.trim() ? input.by.trim() : undefined;
}

/**
 * `incident`: one incident as one durable run (AlphaPulse 1, 6, 7, Appendix B).
 * It pages the primary on-call, pages the secondary when nobody acknowledges within
 * the ack timeout, escalates L2 -> L4 on timers, posts status, channel and stakeholder
 * updates through webhooks, keeps a timeline of every event, and after resolution
 * drafts the postmortem from that timeline and reminds until it is marked complete.
 */
export async function incident(rawInput: IncidentInput): Promise<IncidentResult> {
  const input = RunContext.input<IncidentInput>(PROCEDURES.incident, rawInput);
  const requestedBy = input.requestedBy ?? 'unknown';
  const incidentId = workflowInfo().workflowId;
  const ctx = new RunContext(PROCEDURES.incident, requestedBy, [
    ['plan', 'Load configuration and on-call'],
    ['declare', 'Declare: page on-call, status page, channel'],
    ['respond', 'Respond until resolved (ack, escalation, updates)'],
    ['postmortem', 'Draft the postmortem'],
  ]);
  if (input.triage) ctx.addStep('triage', `Triage: ${input.triage}`);

  const timeline: TimelineEvent[] = [];
  const state: IncidentState = {
    incidentId,
    title: input.title,
    severity: input.severity,
    status: 'open',
    level: 'L1',
    declaredAt: new Date().toISOString(),
    triageRuns: [],
    postmortemComplete: false,
  };
  let plan: IncidentPlan | undefined;
  let resolution: ResolvedInput | undefined;
  let postmortem: string | null = null;
  /** Bumped by every message, so the main loop re-plans its timers. */
  let version = 0;
  let eventSeq = 0;
  const inflight: Promise<void>[] = [];

  const record = (kind: TimelineKind, by: string, text: string, data?: Record<string, unknown>): TimelineEvent => {
    const e: TimelineEvent = { at: new Date().toISOString(), kind, by, text, ...(data ? { data } : {}) };
    timeline.push(e);
    version += 1;
    log.info('incident event', { kind, by, text });
    return e;
  };

  /** Sends to every webhook routed for `kind`, without blocking the caller; a failure after retries lands in the timeline. */
  const send = (kind: NotificationKind, text: string, fields: Record<string, string | number | boolean | string[]> = {}): void => {
    const routes = plan?.routes[kind] ?? [];
    eventSeq += 1;
    const eventId = `${incidentId}:${eventSeq}`;
    for (const webhook of routes) {
      inflight.push(
        notify({
          webhook,
          kind,
          incidentId,
          eventId,
          text,
          fields: { title: state.title, severity: state.severity, status: state.status, level: state.level, ...fields },
        }).then(
          () => undefined,
          (err: unknown) => {
            const cause = err instanceof ActivityFailure && err.cause ? err.cause.message : String(err);
            record('notification-failed', 'runbook', `${kind} notification to ${webhook} failed: ${cause}`, { webhook, kind });
          },
        ),
      );
    }
  };

  const header = () => `[${state.severity}] ${state.title} (${incidentId})`;

  const page = (to: string, role: string, why: string) => {
    record('paged', 'runbook', `Paged ${to} (${role}): ${why}`, { to, role });
    send('page', `PAGE ${to} (${role}): ${header()} — ${why}. Acknowledge: runbook incident ack ${incidentId} --as ${to}`, { to, role });
  };

  const escalateTo = (level: EscalationLevel, by: string, why: string) => {
    if (levelIndex(level) <= levelIndex(state.level)) return;
    state.level = level;
    const contacts = plan?.contacts[level as 'L2' | 'L3' | 'L4'] ?? [];
    record('escalated', by, `Escalated to ${level} (${LEVEL_NAMES[level]}${contacts.length ? `: ${contacts.join(', ')}` : ''}): ${why}`, { level, contacts });
    send('escalation', `ESCALATION ${level} (${LEVEL_NAMES[level]}): ${header()} — ${why}`, { to: contacts, escalationLevel: level });
  };

  // ---- messages: the same checks for a signal (refusal recorded) and an update (refusal thrown)
  const refusals: Array<{ message: string; by: string; reason: string; at: string }> = [];
  type Check<T> = (input: T) => string | undefined;
  const open = () => state.status !== 'resolved';

  const checkActor: Check<ActorInput> = (i) => (actor(i) ? undefined : '"by" is required: who is doing this');
  const checks = {
    acknowledge: (i: ActorInput) => checkActor(i) ?? (state.acknowledgedBy ? `already acknowledged by ${state.acknowledgedBy}` : !open() ? 'the incident is resolved' : undefined),
    note: (i: NoteInput) => checkActor(i) ?? (typeof i.text === 'string' && i.text.trim() ? undefined : '"text" is required'),
    'set-severity': (i: SeverityInput) =>
      checkActor(i) ??
      (!SEVERITIES.includes(i.severity) ? `"severity" must be one of ${SEVERITIES.join(', ')}` : i.severity === state.severity ? `severity is already ${i.severity}` : !open() ? 'the incident is resolved' : undefined),
    mitigated: (i: MitigatedInput) => checkActor(i) ?? (state.status === 'mitigated' ? 'already mitigated' : !open() ? 'the incident is resolved' : undefined),
    resolved: (i: ResolvedInput) => checkActor(i) ?? (!open() ? `already resolved at ${state.resolvedAt}` : undefined),
    escalate: (i: EscalateInput) => {
      const a = checkActor(i);
      if (a) return a;
      if (!open()) return 'the incident is resolved';
      if (i.level !== undefined && !['L2', 'L3', 'L4'].includes(i.level)) return '"level" must be L2, L3 or L4';
      const target = i.level ?? LEVELS[levelIndex(state.level) + 1];
      if (!target) return 'already at L4';
      return levelIndex(target as EscalationLevel) <= levelIndex(state.level) ? `already at ${state.level}` : undefined;
    },
    'postmortem-complete': (i: ActorInput) => checkActor(i) ?? (open() ? 'resolve the incident first' : state.postmortemComplete ? 'already complete' : undefined),
  };

  const apply = {
    acknowledge: (i: ActorInput) => {
      const by = actor(i)!;
      state.acknowledgedBy = by;
      state.acknowledgedAt = new Date().toISOString();
      state.commander ??= by;
      if (state.status === 'open') state.status = 'acknowledged';
      const after = formatDuration(Date.parse(state.acknowledgedAt) - Date.parse(state.declaredAt));
      record('acknowledged', by, `Acknowledged by ${by} after ${after}`);
      send('channel', `${header()}: acknowledged by ${by} after ${after}`);
    },
    note: (i: NoteInput) => {
      record('note', actor(i)!, i.text.trim());
    },
    'set-severity': (i: SeverityInput) => {
      const from = state.severity;
      state.severity = i.severity;
      record('severity-changed', actor(i)!, `Severity ${from} -> ${i.severity}${i.reason ? `: ${i.reason}` : ''}`, { from, to: i.severity });
      send('channel', `${header()}: severity changed from ${from} by ${actor(i)}`);
    },
    mitigated: (i: MitigatedInput) => {
      state.status = 'mitigated';
      state.mitigatedAt = new Date().toISOString();
      record('mitigated', actor(i)!, `Mitigated${i.text ? `: ${i.text}` : ''}`);
      send('channel', `${header()}: mitigated by ${actor(i)}; monitoring before resolving`);
    },
    resolved: (i: ResolvedInput) => {
      resolution = i;
      state.status = 'resolved';
      state.resolvedAt = new Date().toISOString();
      state.mitigatedAt ??= state.resolvedAt;
      record('resolved', actor(i)!, `Incident resolved${i.summary ? `: ${i.summary}` : ''}`);
    },
    escalate: (i: EscalateInput) => {
      const target = (i.level ?? LEVELS[levelIndex(state.level) + 1]) as EscalationLevel;
      escalateTo(target, actor(i)!, i.reason ?? `manual escalation by ${actor(i)}`);
    },
    'postmortem-complete': (i: ActorInput) => {
      state.postmortemComplete = true;
      record('postmortem-completed', actor(i)!, `Postmortem marked complete by ${actor(i)}`);
    },
  };

  const wire = <T extends ActorInput>(
    name: string,
    signal: SignalDefinition<[T]>,
    update: UpdateDefinition<IncidentState, [T]>,
    check: (i: T) => string | undefined,
    run: (i: T) => void,
  ) => {
    setHandler(signal, (i: T) => {
      const reason = check(i);
      if (reason) {
        refusals.push({ message: name, by: actor(i) ?? '', reason, at: new Date().toISOString() });
        log.warn('incident message refused', { message: name, reason });
        return;
      }
      run(i);
    });
    setHandler(
      update,
      (i: T) => {
        run(i);
        return { ...state };
      },
      {
        validator: (i: T) => {
          const reason = check(i);
          if (reason) throw new Error(reason);
        },
      },
    );
  };
  wire('acknowledge', acknowledgeSignal, acknowledgeUpdate, checks.acknowledge, apply.acknowledge);
  wire('note', noteSignal, noteUpdate, checks.note, apply.note);
  wire('set-severity', setSeveritySignal, setSeverityUpdate, checks['set-severity'], apply['set-severity']);
  wire('mitigated', mitigatedSignal, mitigatedUpdate, checks.mitigated, apply.mitigated);
  wire('resolved', resolvedSignal, resolvedUpdate, checks.resolved, apply.resolved);
  wire('escalate', escalateSignal, escalateUpdate, checks.escalate, apply.escalate);
  wire('postmortem-complete', postmortemCompleteSignal, postmortemCompleteUpdate, checks['postmortem-complete'], apply['postmortem-complete']);
  setHandler(alertSignal, (a: AlertInput) => {
    const by = actor(a) ?? 'alertmanager';
    if (a.status === 'resolved') {
      if (state.status === 'open' || state.status === 'acknowledged') apply.mitigated({ by, text: `alert resolved: ${a.summary}` });
      else record('alert', by, `Alert resolved: ${a.summary}`);
    } else {
      record('alert', by, `Alert firing (${a.alerts} alert${a.alerts === 1 ? '' : 's'}): ${a.summary}`, { alerts: a.alerts });
    }
  });
  setHandler(timelineQuery, () => timeline);
  setHandler(incidentQuery, () => state);
  setHandler(postmortemQuery, () => postmortem);

  return ctx.run(async () => {
    const p = await ctx.step('plan', () => incidentPlan(), (x) => (x.oncall ? `on call: ${x.oncall.primary}, secondary ${x.oncall.secondary}` : 'no on-call rotation configured'));
    plan = p;
    state.primary = p.oncall?.primary;
    state.secondary = p.oncall?.secondary;
    const declaredMs = Date.parse(state.declaredAt);

    await ctx.step(
      'declare',
      async () => {
        // Declared first in the timeline even when a message arrived before the plan loaded.
        timeline.unshift({
          at: state.declaredAt,
          kind: 'declared',
          by: requestedBy,
          text: `Incident declared: ${state.severity} ${state.title}${input.service ? ` (service ${input.service})` : ''}${input.source ? ` via ${input.source}` : ''}`,
        });
        if (state.severity === 'P0' || state.severity === 'P1') {
          send('status', `Investigating: ${state.title}. We are investigating an issue and will post updates here.`, { statusPage: 'investigating', ...(p.statusPageUrl ? { url: p.statusPageUrl } : {}) });
        }
        send('channel', `${header()} declared by ${requestedBy}${input.summary ? `: ${input.summary}` : ''}. Response time ${formatDuration(p.responseSeconds[state.severity] * 1000)}.`);
        page(p.oncall?.primary ?? 'on-call', 'primary', `new ${state.severity} incident`);
      },
      () => `paged ${p.oncall?.primary ?? 'on-call'}`,
    );

    if (input.triage) {
      const triage = input.triage;
      ctx.stepOf('triage').status = 'running';
      const child = await startChild(triage, {
        workflowId: `${incidentId}--${triage}`,
        args: [{ ...(input.triageInput ?? {}), requestedBy }],
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      });
      state.triageRuns.push(child.workflowId);
      record('triage-started', 'runbook', `Triage started: ${triage} (${child.workflowId})`, { workflowId: child.workflowId });
      void (child.result() as Promise<TriageResult>).then(
          (r) => {
            const bad = r.findings.filter((f) => f.severity === 'P0' || f.severity === 'P1' || f.severity === 'P2');
            const text = `Triage ${triage} finished: ${bad.length ? bad.map((f) => `${f.check}: ${f.detail}`).join('; ') : 'no problems found'}`;
            record('triage-finished', 'runbook', text, { workflowId: child.workflowId, recommendations: r.recommendations });
            ctx.stepOf('triage').status = 'succeeded';
            ctx.stepOf('triage').detail = `${bad.length} findings`;
            send('channel', `${header()}: ${text}`);
          },
          (err: unknown) => {
            const msg = err instanceof ChildWorkflowFailure && err.cause ? err.cause.message : String(err);
            record('triage-finished', 'runbook', `Triage ${triage} failed: ${msg}`, { workflowId: child.workflowId });
            ctx.stepOf('triage').status = 'failed';
            ctx.stepOf('triage').detail = msg;
          },
        );
    }

    await ctx.step(
      'respond',
      async () => {
        let secondaryPaged = false;
        let stakeholderAt: number | undefined;
        while (state.status !== 'resolved') {
          const now = Date.now();
          const elapsed = now - declaredMs;
          const active = state.status === 'open' || state.status === 'acknowledged';
          const deadlines: number[] = [];

          if (!state.acknowledgedBy && !secondaryPaged) {
            const at = declaredMs + p.ackTimeoutSeconds * 1000;
            if (now >= at) {
              secondaryPaged = true;
              page(p.oncall?.secondary ?? 'secondary on-call', 'secondary', `no acknowledgement within ${formatDuration(p.ackTimeoutSeconds * 1000)}`);
            } else deadlines.push(at);
          }
          if (active) {
            const response = p.responseSeconds[state.severity] * 1000;
            if (levelIndex(state.level) < 1) {
              if (elapsed >= response) escalateTo('L2', 'runbook', `not resolved within the ${state.severity} response time (${formatDuration(response)})`);
              else deadlines.push(declaredMs + response);
            }
            if (state.severity === 'P0') {
              for (const [level, after] of [['L3', p.l3AfterSeconds], ['L4', p.l4AfterSeconds]] as const) {
                if (levelIndex(state.level) >= levelIndex(level)) continue;
                if (elapsed >= after * 1000) escalateTo(level, 'runbook', `P0 open longer than ${formatDuration(after * 1000)}`);
                else deadlines.push(declaredMs + after * 1000);
              }
            }
          }
          const every = p.stakeholderUpdateSeconds[state.severity];
          if (every) {
            stakeholderAt ??= declaredMs + every * 1000;
            if (now >= stakeholderAt) {
              const text = `Update on ${header()}: status ${state.status}, open ${formatDuration(elapsed)}, level ${state.level}${state.acknowledgedBy ? `, led by ${state.acknowledgedBy}` : ''}. Latest: ${[...timeline].reverse().find((e) => e.kind === 'note')?.text ?? timeline[timeline.length - 1]?.text ?? '-'}`;
              record('stakeholder-update', 'runbook', `Stakeholder update sent (status ${state.status})`);
              send('stakeholder', text);
              stakeholderAt = now + every * 1000;
            }
            deadlines.push(stakeholderAt);
          } else {
            stakeholderAt = undefined;
          }
          ctx.stepOf('respond').detail = `${state.status}, ${state.level}${state.acknowledgedBy ? `, acknowledged by ${state.acknowledgedBy}` : ', not acknowledged'}`;
          const next = deadlines.length > 0 ? Math.min(...deadlines) : undefined;
          const target = version;
          if (next === undefined) await condition(() => version !== target);
          else await condition(() => version !== target, Math.max(1, next - Date.now()));
        }
        send('status', `Resolved: ${state.title}. The issue has been resolved; we are monitoring for stability.`, { statusPage: 'resolved' });
        send('channel', `${header()}: incident resolved by ${timeline[timeline.length - 1]?.by ?? 'unknown'}, monitoring for stability. Open for ${formatDuration(Date.parse(state.resolvedAt!) - declaredMs)}.`);
        return state;
      },
      (s) => `resolved at ${s.resolvedAt}, highest level ${s.level}`,
    );

    postmortem = await ctx.step(
      'postmortem',
      async () => {
        const required = p.postmortem.requiredFor.includes(state.severity);
        const due = new Date(Date.parse(state.resolvedAt!) + p.postmortem.dueSeconds * 1000).toISOString();
        const meeting = new Date(Date.parse(state.resolvedAt!) + p.postmortem.meetingWithinSeconds * 1000).toISOString();
        record('postmortem-drafted', 'runbook', `Postmortem drafted${required ? `; due ${due}, meeting by ${meeting}` : ' (optional for this severity)'}`);
        const draft = renderPostmortem(state, timeline, resolution);
        send('postmortem', `Postmortem draft for ${header()} is ready (query \`postmortem\`).${required ? ` Complete it by ${due}; schedule the blameless meeting by ${meeting}.` : ''}`, {
          markdown: draft,
          due: required ? due : '',
        });
        return draft;
      },
      () => 'drafted',
    );

    if (p.postmortem.requiredFor.includes(state.severity) && !state.postmortemComplete) {
      ctx.addStep('postmortem-complete', 'Wait for the postmortem to be completed');
      await ctx.step(
        'postmortem-complete',
        async () => {
          let reminders = 0;
          const target = () => state.postmortemComplete;
          while (!(await condition(target, p.postmortem.reminderEverySeconds * 1000))) {
            if (reminders >= p.postmortem.maxReminders) {
              record('postmortem-reminder', 'runbook', `Postmortem still not complete after ${reminders} reminders; stopped reminding`);
              return false;
            }
            reminders += 1;
            const due = Date.parse(state.resolvedAt!) + p.postmortem.dueSeconds * 1000;
            const overdue = Date.now() > due;
            record('postmortem-reminder', 'runbook', `Postmortem reminder #${reminders}${overdue ? ' (overdue)' : ''}`);
            send('postmortem', `Reminder #${reminders}: the postmortem for ${header()} is ${overdue ? 'OVERDUE' : 'not complete yet'}. Mark it done: runbook incident postmortem-done ${incidentId} --as <name>`, {
              reminder: reminders,
              overdue,
            });
          }
          return true;
        },
        (done) => (done ? `completed by ${[...timeline].reverse().find((e) => e.kind === 'postmortem-completed')?.by}` : 'not completed'),
      );
    }

    // Every notification settles (sent or recorded as failed) before the run closes.
    while (inflight.length > 0) await Promise.all(inflight.splice(0));
    if (refusals.length > 0) log.info('refused incident messages', { count: refusals.length });
    return { state: { ...state }, timeline, postmortem: postmortem ?? '', progress: ctx.progress };
  });
}
