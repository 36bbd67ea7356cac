import { z } from 'zod';
import { HISTORY_DEFAULTS, NOTIFICATION_KINDS, SEVERITIES } from './constants.js';

export { HISTORY_DEFAULTS, NOTIFICATION_KINDS, SEVERITIES, type IncidentSeverity, type NotificationKind } from './constants.js';

/**
 * The `incident:` section of runbooks.yaml. Defaults are AlphaPulse's incident
 * procedure (sections 1, 6, 7 and Appendix B): response times 15 min / 1 h / 4 h /
 * 24 h, secondary paged after 10 min without an ack, a P0's CTO, tech lead and
 * security lead paged at once, L2 past the response time for P0/P1 (P2/P3 stay with
 * the team and get a ticket), L3 and L4 for P0 past 1 h and 2 h and for a data breach
 * at once, P1 stakeholder updates every 30 min, verification (smoke checks, error rate
 * under 0.1 %) before P0/P1 resolve, a one-hour watch after a P1 resolves, P0
 * postmortem within 24 h and its meeting within 48 h.
 */

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `90`, `"90s"`, `"15m"`, `"1h"`, `"2d"` -> seconds. */
export function parseDuration(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$/.exec(value);
  if (!m) return undefined;
  const seconds = Number(m[1]) * UNIT_SECONDS[m[2]!]!;
  return seconds > 0 ? seconds : undefined;
}

/** A duration written as seconds or as "30s", "15m", "1h", "2d"; parsed to seconds. */
export const duration = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const seconds = parseDuration(value);
  if (seconds === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected a duration like 30s, 15m, 1h, 2d or a number of seconds (got ${JSON.stringify(value)})` });
    return z.NEVER;
  }
  return seconds;
});

const person = z.string().min(1);

const severitySchema = z.strictObject({
  response: duration.describe('respond (and resolve at L1) within this, else escalate to L2'),
  stakeholderUpdates: duration.optional().describe('post a stakeholder update this often while open'),
  watch: duration.optional().describe('after resolution, watch this long: the alert firing again re-opens the incident (AlphaPulse 1.3)'),
});

const HANDOFF = /^(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday) ([01]\d|2[0-3]):([0-5]\d)$/;

export const oncallSchema = z
  .strictObject({
    timezone: z.string().min(1).default('UTC').refine((tz) => {
      try {
        new Intl.DateTimeFormat('en-US', { timeZone: tz });
        return true;
      } catch {
        return false;
      }
    }, 'unknown IANA time zone: expected e.g. Europe/Berlin or UTC'),
    handoff: z.string().regex(HANDOFF, 'expected "<Weekday> HH:MM", e.g. "Monday 09:00"').default('Monday 09:00'),
    startDate: z
      .string()
      .regex(/^\d{4}-\d{2}-\d{2}$/, 'expected YYYY-MM-DD: the local date of the first handoff of the rotation')
      .describe('local date of the first shift; it must fall on the handoff weekday'),
    rotation: z.array(z.strictObject({ primary: person, secondary: person })).min(1).optional(),
    people: z.array(person).min(2, 'a rotation of people needs at least two: the next person is the secondary').optional(),
  })
  .superRefine((o, ctx) => {
    if (!o.rotation === !o.people) {
      ctx.addIssue({ code: 'custom', path: ['rotation'], message: 'set exactly one of rotation: [{primary, secondary}, ...] or people: [name, ...]' });
    }
    const weekday = HANDOFF.exec(o.handoff)?.[1];
    const d = new Date(`${o.startDate}T12:00:00Z`);
    if (Number.isNaN(d.getTime())) {
      ctx.addIssue({ code: 'custom', path: ['startDate'], message: 'not a calendar date' });
    } else if (weekday && d.toLocaleDateString('en-US', { weekday: 'long', timeZone: 'UTC' }) !== weekday) {
      ctx.addIssue({ code: 'custom', path: ['startDate'], message: `${o.startDate} is not a ${weekday} (the handoff day)` });
    }
  });

export const webhookSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'expected a lower-case name'),
  kind: z.enum(['slack', 'json']).describe('slack: {"text": ...}; json: the whole event as JSON'),
  url: z
    .string()
    .regex(/\$\{[A-Za-z_][A-Za-z0-9_]*\}/, 'webhook URLs carry tokens: write ${ENV_NAME} and set it in the worker environment'),
  events: z.array(z.enum(NOTIFICATION_KINDS)).min(1).default([...NOTIFICATION_KINDS]),
  timeoutMs: z.number().int().positive().default(5000),
});

/** A ticket for P2/P3 (AlphaPulse 1.4 step 2), as Jira/Linear-style JSON to a tracker or a bridge in front of one. */
export const ticketSchema = z.strictObject({
  url: z.string().min(1).describe('where tickets are POSTed; may carry ${ENV_NAME} references'),
  token: z
    .string()
    .regex(/^\$\{[A-Za-z_][A-Za-z0-9_]*\}$/, 'the Bearer token is a secret: write ${ENV_NAME} and set it in the worker environment')
    .optional()
    .describe('sent as Authorization: Bearer'),
  for: z.array(z.enum(SEVERITIES)).default(['P2', 'P3']),
  labels: z.array(z.string().min(1).max(50)).max(20).default(['incident']),
  timeoutMs: z.number().int().positive().default(5000),
});

/**
 * A dashboard service-error-triage checks as Fulcrum 3.5 does: its backend reachable, its
 * required settings present (names only, never values) and its build cache, which the
 * triage can clear after an approval.
 */
export const dashboardSchema = z.strictObject({
  service: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'expected the name of a configured service'),
  backendUrl: z.string().min(1).describe('the backend the dashboard calls, e.g. http://fulcrum-server:8080/metrics (Fulcrum 3.5 step 2); may carry ${ENV_NAME}'),
  requiredEnv: z
    .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'))
    .max(100)
    .default(['API_URL', 'GRPC_URL', 'CLERK_SECRET_KEY', 'NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY'])
    .describe('settings that must be set (Fulcrum 3.5 step 3 and its Clerk check)'),
  envFile: z.string().min(1).optional().describe("the service's env file (KEY=value lines), relative to the config; its command driver env is checked too"),
  buildCacheDir: z.string().min(1).optional().describe('the build cache, e.g. the app\'s .next directory (Fulcrum 3.5 step 4), relative to the config'),
});

const triageRuleSchema = z.strictObject({
  match: z.record(z.string(), z.string()).describe('labels that must all be equal, e.g. {alertname: RedisMemoryHigh}'),
  procedure: z.enum(['redis-triage', 'nats-lag-triage', 'service-error-triage', 'latency-triage']),
  input: z.record(z.string(), z.unknown()).default({}),
});

export const incidentConfigSchema = z
  .strictObject({
    severities: z
      .strictObject({ P0: severitySchema, P1: severitySchema, P2: severitySchema, P3: severitySchema })
      .default({
        P0: { response: 900 },
        P1: { response: 3600, stakeholderUpdates: 1800, watch: 3600 },
        P2: { response: 14_400 },
        P3: { response: 86_400 },
      }),
    ackTimeout: duration.default(600).describe('page the secondary when the primary has not acknowledged within this'),
    escalation: z
      .strictObject({
        l3After: duration.default(3600).describe('P0 open longer than this: engineering leadership (L3)'),
        l4After: duration.default(7200).describe('P0 open longer than this: CTO (L4)'),
        l2For: z
          .array(z.enum(SEVERITIES))
          .default(['P0', 'P1'])
          .describe('severities escalated to the tech lead (L2) past their response time; P2/P3 stay with the team (AlphaPulse 1.1, 6.1)'),
        p0Immediate: z.boolean().default(true).describe('a P0 pages the CTO (L4), the tech lead (L2) and the security lead at once (AlphaPulse 1.1)'),
        contacts: z
          .strictObject({
            L2: z.array(person).default([]).describe('tech lead'),
            L3: z.array(person).default([]).describe('engineering leadership'),
            L4: z.array(person).default([]).describe('CTO'),
            security: z.array(person).default([]).describe('security lead: P0 and data breaches'),
          })
          .prefault({}),
      })
      .prefault({}),
    postmortem: z
      .strictObject({
        requiredFor: z.array(z.enum(SEVERITIES)).default(['P0']),
        due: duration.default(86_400).describe('the draft must be completed within this after resolution'),
        meetingWithin: duration.default(172_800),
        reminderEvery: duration.default(14_400),
        maxReminders: z.number().int().positive().default(42),
      })
      .prefault({}),
    history: z
      .strictObject({
        maxEvents: z.number().int().min(100).default(HISTORY_DEFAULTS.maxEvents).describe('continue as new once a run has this many history events'),
        maxBytes: z.number().int().min(100_000).default(HISTORY_DEFAULTS.maxBytes).describe('continue as new once a run has this many bytes of history'),
      })
      .prefault({}),
    oncall: oncallSchema.optional(),
    webhooks: z.array(webhookSchema).default([]),
    ticket: ticketSchema.optional(),
    verification: z
      .strictObject({
        requiredFor: z.array(z.enum(SEVERITIES)).default(['P0', 'P1']).describe('severities verified before they may be resolved (AlphaPulse 1.2 step 8, 1.3)'),
        errorRateQuery: z.string().min(1).max(2000).optional().describe("PromQL for the error ratio 0..1 (default: latency-triage's)"),
        maxErrorRatePercent: z.number().min(0).max(100).default(0.1).describe('resolved only when the error rate is below this (AlphaPulse 1.2 step 8: <0.1%)'),
      })
      .prefault({}),
    statusPageUrl: z.string().url().optional().describe('shown in status notifications'),
    dashboards: z.array(dashboardSchema).default([]),
    prometheusUrl: z.string().min(1).optional().describe('Prometheus HTTP API base for latency-triage, e.g. http://127.0.0.1:9090'),
    intake: z
      .strictObject({
        secretEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).default('RUNBOOK_INTAKE_SECRET').describe('environment variable holding the shared Bearer secret'),
        severityLabel: z.string().default('severity'),
        labelToSeverity: z.record(z.string(), z.enum(SEVERITIES)).default({ critical: 'P0', page: 'P0', high: 'P1', error: 'P1', warning: 'P2', info: 'P3' }),
        defaultSeverity: z.enum(SEVERITIES).default('P2'),
        alertToTriage: z.array(triageRuleSchema).default([]),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    const names = new Set<string>();
    c.webhooks.forEach((w, i) => {
      if (names.has(w.name)) ctx.addIssue({ code: 'custom', path: ['webhooks', i, 'name'], message: `duplicate webhook name "${w.name}"` });
      names.add(w.name);
    });
    if (c.escalation.l4After <= c.escalation.l3After) {
      ctx.addIssue({ code: 'custom', path: ['escalation', 'l4After'], message: 'must be longer than l3After' });
    }
  });

export type IncidentConfig = z.output<typeof incidentConfigSchema>;
export type OncallConfig = z.output<typeof oncallSchema>;
export type WebhookConfig = z.output<typeof webhookSchema>;
export type DashboardConfig = z.output<typeof dashboardSchema>;
export type TicketConfig = z.output<typeof ticketSchema>;

/** The defaults, for code paths where the config has no `incident:` section. */
export function defaultIncidentConfig(): IncidentConfig {
  return incidentConfigSchema.parse({});
}
