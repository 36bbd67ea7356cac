import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type {
  ActorInput,
  AlertInput,
  EscalateInput,
  IncidentRefusals,
  IncidentState,
  MitigatedInput,
  NoteInput,
  ResolvedInput,
  SeverityInput,
  TimelineEvent,
} from './types.js';

/**
 * The incident run's messages. Each is both a signal (the UI, alert intake) and an
 * update with a validator (the CLI: a refusal comes back at once), checked alike: a
 * refused signal is kept in `refusals`, a refused update never reaches the history.
 * Every one takes one JSON object with `by`.
 */
export const acknowledgeSignal = defineSignal<[ActorInput]>('acknowledge');
export const acknowledgeUpdate = defineUpdate<IncidentState, [ActorInput]>('acknowledge');
export const noteSignal = defineSignal<[NoteInput]>('note');
export const noteUpdate = defineUpdate<IncidentState, [NoteInput]>('note');
export const setSeveritySignal = defineSignal<[SeverityInput]>('set-severity');
export const setSeverityUpdate = defineUpdate<IncidentState, [SeverityInput]>('set-severity');
export const mitigatedSignal = defineSignal<[MitigatedInput]>('mitigated');
export const mitigatedUpdate = defineUpdate<IncidentState, [MitigatedInput]>('mitigated');
export const resolvedSignal = defineSignal<[ResolvedInput]>('resolved');
export const resolvedUpdate = defineUpdate<IncidentState, [ResolvedInput]>('resolved');
export const escalateSignal = defineSignal<[EscalateInput]>('escalate');
export const escalateUpdate = defineUpdate<IncidentState, [EscalateInput]>('escalate');
export const postmortemCompleteSignal = defineSignal<[ActorInput]>('postmortem-complete');
export const postmortemCompleteUpdate = defineUpdate<IncidentState, [ActorInput]>('postmortem-complete');
/** From the alert intake: a repeated firing notification or the group resolving. */
export const alertSignal = defineSignal<[AlertInput]>('alert');

export const timelineQuery = defineQuery<TimelineEvent[]>('timeline');
export const incidentQuery = defineQuery<IncidentState>('incident');
export const postmortemQuery = defineQuery<string | null>('postmortem');
/** Refused signals: the first few kept with their reasons (never their payloads), the rest counted. */
export const refusalsQuery = defineQuery<IncidentRefusals>('refusals');

/** The ApplicationFailure type of a refused incident update (its message says why). */
export const INCIDENT_MESSAGE_REFUSED = 'IncidentMessageRefused';
