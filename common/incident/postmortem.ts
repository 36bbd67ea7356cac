import type { IncidentState, ResolvedInput, TimelineEvent } from './types.js';

/** Sections of AlphaPulse Appendix B, in order; tests check the draft has every one. */
export const POSTMORTEM_SECTIONS = [
  'Summary',
  'Timeline (UTC)',
  'Root Cause',
  'Impact',
  'What Went Well',
  'What Went Wrong',
  'Action Items',
  'Lessons Learned',
] as const;

const TODO = '_To be completed by the incident commander._';

function hhmmss(iso: string): string {
  return iso.slice(11, 19);
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${sec} s`;
  return `${sec} s`;
}

/**
 * The postmortem draft (AlphaPulse Appendix B), filled from the run's own state and
 * timeline; what only people know is taken from the `resolved` message or left as a
 * marked placeholder.
 */
export function renderPostmortem(state: IncidentState, timeline: readonly TimelineEvent[], resolution: ResolvedInput | undefined): string {
  const end = state.resolvedAt ?? timeline[timeline.length - 1]?.at ?? state.declaredAt;
  const durationMs = Date.parse(end) - Date.parse(state.declaredAt);
  const list = (items: string[] | undefined) => (items && items.length > 0 ? items.map((i) => `- ${i}`).join('\n') : TODO);
  const acked = state.acknowledgedAt ? formatDuration(Date.parse(state.acknowledgedAt) - Date.parse(state.declaredAt)) : 'never';
  const wentWell = resolution?.wentWell ?? [];
  const wentWrong = resolution?.wentWrong ?? [];
  const escalations = timeline.filter((e) => e.kind === 'escalated');
  const pagedSecondary = timeline.some((e) => e.kind === 'paged' && e.data?.role === 'secondary');
  const derivedWrong = [
    ...(pagedSecondary ? ['Primary on-call did not acknowledge within the ack timeout; the secondary was paged'] : []),
    ...escalations.map((e) => `Escalated: ${e.text}`),
  ];
  const actionItems = resolution?.actionItems ?? [];
  const lines = [
    `# Postmortem: ${state.title}`,
    '',
    `**Date**: ${state.declaredAt.slice(0, 10)}`,
    `**Severity**: ${state.severity}`,
    `**Duration**: ${formatDuration(durationMs)}`,
    `**Incident Commander**: ${state.commander ?? state.acknowledgedBy ?? TODO}`,
    `**Incident**: ${state.incidentId}`,
    '',
    '---',
    '',
    '## Summary',
    '',
    resolution?.summary ?? TODO,
    '',
    '## Timeline (UTC)',
    '',
    '| Time | Event |',
    '|------|-------|',
    ...timeline.map((e) => `| ${hhmmss(e.at)} | ${cell(`${e.text}${e.by && e.by !== 'runbook' ? ` (${e.by})` : ''}`)} |`),
    '',
    '## Root Cause',
    '',
    resolution?.rootCause ?? TODO,
    '',
    '## Impact',
    '',
    `- **Duration**: ${formatDuration(durationMs)} (declared ${state.declaredAt}, resolved ${state.resolvedAt ?? 'not yet'})`,
    `- **Time to acknowledge**: ${acked}`,
    `- **Highest escalation level**: ${state.level}`,
    `- **Users Affected / Failed Requests / Revenue Impact**: ${resolution?.impact ?? TODO}`,
    '',
    '## What Went Well',
    '',
    list(wentWell.length > 0 ? wentWell : state.acknowledgedAt ? [`Acknowledged after ${acked}`] : undefined),
    '',
    '## What Went Wrong',
    '',
    list([...wentWrong, ...derivedWrong]),
    '',
    '## Action Items',
    '',
    '| Item | Owner | Due Date | Status |',
    '|------|-------|----------|--------|',
    ...(actionItems.length > 0
      ? actionItems.map((a) => `| ${cell(a.item)} | ${cell(a.owner ?? 'TBD')} | ${cell(a.due ?? 'TBD')} | ⏳ Pending |`)
      : ['| _Add follow-ups_ | TBD | TBD | ⏳ Pending |']),
    '',
    '## Lessons Learned',
    '',
    TODO,
    '',
  ];
  return lines.join('\n');
}
