import type { Client } from '@temporalio/client';
import type { IncidentConfig } from '../../common/incident/config.js';
import { incidentQuery } from '../../common/incident/messages.js';
import { oncallAt, type OncallAnswer } from '../../common/incident/oncall.js';
import type { IncidentState, Notification } from '../../common/incident/types.js';
import { sendWebhook } from '../../activities/incident/webhooks.js';

/**
 * The on-call handoff (AlphaPulse 7.2 "After Shift"): the open incidents, the postmortems
 * still to complete and who takes over next. Incidents are the running `incident` runs
 * found through Temporal visibility (the RunbookProcedure search attribute), each asked
 * for its state.
 */

export interface HandoffIncident {
  workflowId: string;
  title: string;
  severity: string;
  status: string;
  level: string;
  declaredAt: string;
  acknowledgedBy?: string;
  service?: string;
  /** Set while a resolved incident is watched for recurrence. */
  watchUntil?: string;
}

export interface Handoff {
  at: string;
  oncall: OncallAnswer | null;
  openIncidents: HandoffIncident[];
  pendingPostmortems: HandoffIncident[];
  /** Running incident runs that did not answer their query (no worker, an old build). */
  unanswered: string[];
  /** Where it was posted: webhook names with the HTTP status, or the error. */
  posted: Array<{ webhook: string; status?: number; error?: string }>;
}

/** The most running incident runs read; more are reported as a count in `unanswered`. */
const MAX_INCIDENTS = 200;

const QUERY_DEADLINE_MS = 5000;

const VISIBILITY_QUERY = 'RunbookProcedure = "incident" AND ExecutionStatus = "Running"';

function summary(workflowId: string, s: IncidentState): HandoffIncident {
  return {
    workflowId,
    title: s.title,
    severity: s.severity,
    status: s.status,
    level: s.level,
    declaredAt: s.declaredAt,
    ...(s.acknowledgedBy ? { acknowledgedBy: s.acknowledgedBy } : {}),
    ...(s.service ? { service: s.service } : {}),
    ...(s.watchUntil ? { watchUntil: s.watchUntil } : {}),
  };
}

export async function buildHandoff(client: Client, incident: IncidentConfig, at: Date): Promise<Handoff> {
  const openIncidents: HandoffIncident[] = [];
  const pendingPostmortems: HandoffIncident[] = [];
  const unanswered: string[] = [];
  const ids: string[] = [];
  for await (const w of client.workflow.list({ query: VISIBILITY_QUERY })) {
    if (ids.length >= MAX_INCIDENTS) {
      unanswered.push(`${w.workflowId} (and more: only the first ${MAX_INCIDENTS} were read)`);
      break;
    }
    ids.push(w.workflowId);
  }
  // A run whose worker is gone would hold its query until the server gives up: 5 s each, all at once.
  const ask = (id: string) => client.connection.withDeadline(Date.now() + QUERY_DEADLINE_MS, () => client.workflow.getHandle(id).query(incidentQuery));
  const states = await Promise.all(ids.map((id) => ask(id).then((s) => [id, s] as const, () => [id, undefined] as const)));
  for (const [id, s] of states) {
    if (!s) unanswered.push(id);
    // Resolved but still watched counts as open: it re-opens if the alert fires again.
    else if (s.status !== 'resolved' || s.watchUntil) openIncidents.push(summary(id, s));
    else if (!s.postmortemComplete) pendingPostmortems.push(summary(id, s));
  }
  const bySeverity = (a: HandoffIncident, b: HandoffIncident) => a.severity.localeCompare(b.severity) || a.declaredAt.localeCompare(b.declaredAt);
  openIncidents.sort(bySeverity);
  pendingPostmortems.sort(bySeverity);
  return { at: at.toISOString(), oncall: incident.oncall ? oncallAt(incident.oncall, at) : null, openIncidents, pendingPostmortems, unanswered, posted: [] };
}

function line(i: HandoffIncident): string {
  const who = i.acknowledgedBy ? `, led by ${i.acknowledgedBy}` : ', not acknowledged';
  const watch = i.watchUntil ? `, resolved and watched until ${i.watchUntil}` : '';
  return `[${i.severity}] ${i.title} — ${i.status}, ${i.level}${who}${watch} (since ${i.declaredAt}) ${i.workflowId}`;
}

export function renderHandoff(h: Handoff): string {
  const out: string[] = [`On-call handoff ${h.at}`];
  if (h.oncall) {
    out.push(`Shift now: primary ${h.oncall.now.primary}, secondary ${h.oncall.now.secondary} (until ${h.oncall.now.end})`);
    out.push(`Next shift: primary ${h.oncall.next.primary}, secondary ${h.oncall.next.secondary} (from ${h.oncall.next.start})`);
  } else {
    out.push('No on-call rotation configured (incident.oncall).');
  }
  out.push(`Open incidents: ${h.openIncidents.length}`, ...h.openIncidents.map((i) => `  ${line(i)}`));
  out.push(`Pending postmortems: ${h.pendingPostmortems.length}`, ...h.pendingPostmortems.map((i) => `  ${line(i)} — postmortem not complete`));
  if (h.unanswered.length) out.push(`Not answering (no worker?): ${h.unanswered.join(', ')}`);
  return out.join('\n');
}

/** Posts the handoff to every webhook routed `handoff`; a failure is reported, not thrown. */
export async function postHandoff(h: Handoff, incident: IncidentConfig, env: NodeJS.ProcessEnv): Promise<Handoff['posted']> {
  const hooks = incident.webhooks.filter((w) => w.events.includes('handoff'));
  const n: Omit<Notification, 'webhook'> = {
    kind: 'handoff',
    incidentId: '',
    eventId: `handoff:${h.oncall ? h.oncall.now.index : 'none'}:${h.at}`,
    text: renderHandoff(h),
    fields: {
      openIncidents: h.openIncidents.map(line),
      pendingPostmortems: h.pendingPostmortems.map(line),
      ...(h.oncall ? { nextPrimary: h.oncall.next.primary, nextSecondary: h.oncall.next.secondary, nextShiftStarts: h.oncall.next.start } : {}),
    },
  };
  return Promise.all(
    hooks.map((hook) =>
      sendWebhook(hook, { ...n, webhook: hook.name }, env, 1).then(
        (r) => ({ webhook: hook.name, status: r.status }),
        (err: Error) => ({ webhook: hook.name, error: err.message }),
      ),
    ),
  );
}
