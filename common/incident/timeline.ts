import type { TimelineEvent, TimelineKind } from './types.js';

/**
 * What an incident's timeline keeps. Events the run makes at most a few times (declared,
 * paged, acknowledged, escalated, mitigated, resolved, triage, postmortem drafted and
 * completed) are always kept. Kinds whose count grows with what people send or with how
 * long the incident lasts keep their first and their last events; the ones between are
 * replaced by one `omitted` event counting them, where the first of them was. A postmortem
 * then still shows how the response started and how it ended, and no stranger's flood of
 * notes or alerts can grow the run's state, its queries or its result without bound.
 */
export const TIMELINE_KEPT: Partial<Record<TimelineKind, { first: number; last: number }>> = {
  note: { first: 20, last: 30 },
  alert: { first: 5, last: 10 },
  'severity-changed': { first: 5, last: 10 },
  'stakeholder-update': { first: 3, last: 5 },
  'notification-failed': { first: 5, last: 10 },
  'postmortem-reminder': { first: 3, last: 5 },
  verification: { first: 5, last: 10 },
  watch: { first: 5, last: 10 },
  reopened: { first: 5, last: 10 },
  // A re-opened incident pages and resolves again.
  paged: { first: 10, last: 10 },
  resolved: { first: 3, last: 5 },
};

/**
 * The most events a timeline holds: the milestones (at most a few each) and, per bounded
 * kind, its first and last events and one `omitted` event.
 */
export const MAX_TIMELINE_EVENTS = 20 + Object.values(TIMELINE_KEPT).reduce((n, k) => n + k.first + k.last + 1, 0);

const PLURAL: Partial<Record<TimelineKind, string>> = {
  note: 'notes',
  alert: 'alert notifications',
  'severity-changed': 'severity changes',
  'stakeholder-update': 'stakeholder updates',
  'notification-failed': 'failed notifications',
  'postmortem-reminder': 'postmortem reminders',
  verification: 'verifications',
  watch: 'watch events',
  reopened: 're-openings',
  paged: 'pages',
  resolved: 'resolutions',
};

function omittedText(kind: TimelineKind, count: number, from: string, to: string): string {
  const kept = TIMELINE_KEPT[kind]!;
  const span = from === to ? `at ${from.slice(11, 19)}` : `from ${from.slice(0, 10)} ${from.slice(11, 19)} to ${to.slice(0, 10)} ${to.slice(11, 19)} UTC`;
  return `${count} ${PLURAL[kind] ?? kind} omitted ${span} (the first ${kept.first} and the last ${kept.last} are kept)`;
}

/** Appends `event`, dropping the oldest of the kept-last events of its kind when there are too many. */
export function appendEvent(timeline: TimelineEvent[], event: TimelineEvent): void {
  timeline.push(event);
  const kept = TIMELINE_KEPT[event.kind];
  if (!kept) return;
  const ofKind: number[] = [];
  timeline.forEach((e, i) => {
    if (e.kind === event.kind) ofKind.push(i);
  });
  if (ofKind.length <= kept.first + kept.last) return;
  const at = ofKind[kept.first]!;
  const dropped = timeline[at]!;
  const marker = timeline.find((e) => e.kind === 'omitted' && e.data?.of === event.kind);
  if (marker) {
    const count = Number(marker.data!.count) + 1;
    const from = String(marker.data!.from);
    marker.data = { of: event.kind, count, from, to: dropped.at };
    marker.text = omittedText(event.kind, count, from, dropped.at);
    timeline.splice(at, 1);
  } else {
    timeline.splice(at, 1, {
      at: dropped.at,
      kind: 'omitted',
      by: 'runbook',
      text: omittedText(event.kind, 1, dropped.at, dropped.at),
      data: { of: event.kind, count: 1, from: dropped.at, to: dropped.at },
    });
  }
}

/** How many events of `kind` happened, kept or omitted. */
export function countEvents(timeline: readonly TimelineEvent[], kind: TimelineKind): number {
  let n = 0;
  for (const e of timeline) {
    if (e.kind === kind) n += 1;
    else if (e.kind === 'omitted' && e.data?.of === kind) n += Number(e.data.count);
  }
  return n;
}
