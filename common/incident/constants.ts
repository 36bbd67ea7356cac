/** Incident constants that workflow code needs; kept apart from the config schema so the schema library stays out of the workflow bundle. */

export const SEVERITIES = ['P0', 'P1', 'P2', 'P3'] as const;
export type IncidentSeverity = (typeof SEVERITIES)[number];

export const NOTIFICATION_KINDS = ['page', 'status', 'channel', 'stakeholder', 'escalation', 'postmortem', 'handoff'] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];

/**
 * An incident run continues as new (same workflow id, a new run carrying its state) past
 * these, well under Temporal's history warnings (10K events / 10 MB) and limits (50K / 50 MB).
 */
export const HISTORY_DEFAULTS = { maxEvents: 5000, maxBytes: 5_000_000 } as const;
