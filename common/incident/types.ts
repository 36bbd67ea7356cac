import type { RunProgress, StepProgress } from '../types.js';
import type { IncidentSeverity, NotificationKind } from './constants.js';
import type { TriageProcedureId } from './procedures.js';
import type { LogSearchResult } from './service-checks.js';
export type { IncidentInput } from './inputs.js';

/** Workflow-safe shapes of the incident family. Plain JSON only. */

export type { IncidentSeverity, NotificationKind };

export type EscalationLevel = 'L1' | 'L2' | 'L3' | 'L4';

export type TimelineKind =
  | 'declared'
  | 'paged'
  | 'acknowledged'
  | 'escalated'
  | 'note'
  | 'severity-changed'
  | 'mitigated'
  | 'resolved'
  | 'notified'
  | 'notification-failed'
  | 'stakeholder-update'
  | 'alert'
  | 'triage-started'
  | 'triage-finished'
  | 'postmortem-drafted'
  | 'postmortem-reminder'
  | 'postmortem-completed'
  /** A P2/P3 ticket was created (`data`: key, url) or could not be. */
  | 'ticket'
  /** A resolution checked before it applies (`data`: ok, checks). */
  | 'verification'
  /** The watch after resolution started, saw the alert again or ended quietly. */
  | 'watch'
  | 'reopened'
  /** Stands for events of one kind dropped from the middle of a long run (`data`: of, count, from, to). */
  | 'omitted';

export interface TimelineEvent {
  at: string;
  kind: TimelineKind;
  /** Who did it: a person, `alertmanager`, or `runbook` for the run itself. */
  by: string;
  text: string;
  data?: Record<string, unknown>;
}

/** What the run needs from the config, captured once (an activity) so replays see the same plan. */
export interface IncidentPlan {
  environment: string;
  responseSeconds: Record<IncidentSeverity, number>;
  stakeholderUpdateSeconds: Partial<Record<IncidentSeverity, number>>;
  ackTimeoutSeconds: number;
  l3AfterSeconds: number;
  l4AfterSeconds: number;
  contacts: Record<'L2' | 'L3' | 'L4', string[]>;
  postmortem: { requiredFor: IncidentSeverity[]; dueSeconds: number; meetingWithinSeconds: number; reminderEverySeconds: number; maxReminders: number };
  /** Webhook names per notification kind; URLs stay in the worker. */
  routes: Record<NotificationKind, string[]>;
  oncall: { primary: string; secondary: string; shiftEnds: string } | null;
  statusPageUrl?: string;
  /** When a run continues as new; absent in plans recorded before it was configurable. */
  history?: { maxEvents: number; maxBytes: number };
  /**
   * The seed's escalation matrix (AlphaPulse 1.1, 6.1); absent in plans recorded before it, whose
   * runs escalate every severity to L2 on time and page nobody at once.
   */
  matrix?: { l2For: IncidentSeverity[]; p0Immediate: boolean; security: string[] };
  /** Severities that get a ticket, when a ticket endpoint is configured. */
  ticketFor?: IncidentSeverity[];
  /** Checks before a resolution applies; absent in older plans (resolved at once). */
  verification?: { requiredFor: IncidentSeverity[]; errorRateQuery?: string; maxErrorRatePercent: number; prometheus: boolean };
  /** How long to watch after resolution, per severity. */
  watchSeconds?: Partial<Record<IncidentSeverity, number>>;
}

export interface Notification {
  webhook: string;
  kind: NotificationKind;
  incidentId: string;
  /** Stable per event, sent as X-Runbook-Event-Id so a receiver can drop a retried duplicate. */
  eventId: string;
  text: string;
  fields: Record<string, string | number | boolean | string[]>;
}

export interface NotificationResult {
  webhook: string;
  status: number;
  attempts: number;
}

export interface IncidentState {
  incidentId: string;
  title: string;
  severity: IncidentSeverity;
  status: 'open' | 'acknowledged' | 'mitigated' | 'resolved';
  level: EscalationLevel;
  declaredAt: string;
  acknowledgedBy?: string;
  acknowledgedAt?: string;
  mitigatedAt?: string;
  resolvedAt?: string;
  primary?: string;
  secondary?: string;
  commander?: string;
  triageRuns: string[];
  postmortemComplete: boolean;
  /** How many times the incident continued as a new run (same workflow id) to keep each history small. */
  continuedAsNew?: number;
  service?: string;
  /** Flagged at declaration (input `dataBreach` or an alert's `security` label). */
  dataBreach?: 'breach' | 'major';
  /** The P2/P3 ticket, as its tracker answered. */
  ticket?: TicketRef;
  /** The last verification of a resolution. */
  verification?: Verification;
  /** While resolved and watched: until when a recurring alert re-opens it. */
  watchUntil?: string;
  reopened?: number;
}

export interface TicketRef {
  key?: string;
  url?: string;
  status: number;
}

export interface TicketRequest {
  incidentId: string;
  title: string;
  description: string;
  severity: IncidentSeverity;
  labels: string[];
}

export interface VerificationCheck {
  check: string;
  ok: boolean;
  detail: string;
}

export interface Verification {
  at: string;
  ok: boolean;
  checks: VerificationCheck[];
  /** Why the incident stays open, when not ok. */
  reason?: string;
}

/** A message the run refused, kept without the payload that was refused. */
export interface IncidentRefusal {
  message: string;
  /** Who sent it, when that much was a valid name; '' otherwise. */
  by: string;
  reason: string;
  at: string;
}

export interface IncidentRefusals {
  refusals: IncidentRefusal[];
  /** Refused messages beyond those kept in `refusals`. */
  refusalsDropped: number;
}

export interface IncidentResult extends IncidentRefusals {
  state: IncidentState;
  timeline: TimelineEvent[];
  postmortem: string;
  progress: RunProgress;
}

/**
 * What an incident run hands to the next when it continues as new: everything the
 * timers, the messages and the postmortem depend on. Built by the run itself, bounded
 * because the timeline and refusals it carries are.
 */
export interface IncidentCarry {
  phase: 'respond' | 'watch' | 'postmortem-complete';
  plan: IncidentPlan;
  state: IncidentState;
  timeline: TimelineEvent[];
  refused: IncidentRefusals;
  resolution?: ResolvedInput;
  postmortem: string | null;
  /** Notification event ids go on from here, so receivers never see one twice. */
  eventSeq: number;
  secondaryPaged: boolean;
  /** Epoch ms of the next stakeholder update, when one is scheduled. */
  stakeholderAt?: number;
  reminders: number;
  /** Epoch ms of the next postmortem reminder, when one is scheduled. */
  reminderAt?: number;
  steps: StepProgress[];
}

/** Every incident message carries one JSON object: the UI sends exactly one value. */
export interface ActorInput {
  by: string;
}
export interface NoteInput extends ActorInput {
  text: string;
}
export interface SeverityInput extends ActorInput {
  severity: IncidentSeverity;
  reason?: string;
}
export interface MitigatedInput extends ActorInput {
  text?: string;
}
export interface ResolvedInput extends ActorInput {
  /** Resolve without the verification (smoke checks, error rate); needs `reason`, which the timeline keeps. */
  force?: boolean;
  reason?: string;
  summary?: string;
  rootCause?: string;
  impact?: string;
  wentWell?: string[];
  wentWrong?: string[];
  actionItems?: Array<{ item: string; owner?: string; due?: string }>;
}
export interface EscalateInput extends ActorInput {
  level?: 'L2' | 'L3' | 'L4';
  reason?: string;
}
export interface AlertInput extends ActorInput {
  status: 'firing' | 'resolved';
  alerts: number;
  summary: string;
}

export interface TriageFinding {
  check: string;
  severity: 'OK' | 'P0' | 'P1' | 'P2' | 'INFO';
  detail: string;
}

export interface TriageResult {
  procedure: TriageProcedureId;
  ok: boolean;
  findings: TriageFinding[];
  recommendations: string[];
  remediations: string[];
  table: string;
  progress: RunProgress;
  /** service-error-triage with traceId/since/until: the lines found (Fulcrum 6.3). */
  logSearch?: LogSearchResult;
  /** The same search in `logServices`' logs, one per service. */
  relatedLogs?: Array<LogSearchResult & { service: string }>;
}
