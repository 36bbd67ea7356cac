import { z } from 'zod';
import { field, procedureInput } from '../input-fields.js';
import { TRIAGE_PROCEDURES, type IncidentProcedureId } from './procedures.js';

/** The incident family's inputs: one schema per procedure, the types are inferred from them. */

const incident = procedureInput({
  title: field.text('what is wrong, e.g. "API down"'),
  severity: field.enum(['P0', 'P1', 'P2', 'P3'], 'P0 outage, P1 major, P2 degraded, P3 cosmetic'),
  service: field.text('the affected service').optional(),
  summary: field.text('one or two sentences for the channel and the postmortem').optional(),
  source: field.text('where it came from: cli, ui, alertmanager').optional(),
  triage: field.enum(TRIAGE_PROCEDURES, 'a triage runbook to start as a child run').optional(),
  triageInput: field.object('the triage runbook input, e.g. {"service": "redis"}').optional(),
  labels: field.shaped('alert labels (set by the alert intake)', z.record(z.string(), z.string())).optional(),
  dataBreach: field.enum(['breach', 'major'], 'a data breach: breach pages engineering leadership (L3) and the security lead, major also the CTO (AlphaPulse 6.1)').optional(),
});

const redisTriage = procedureInput({
  service: field.name('a configured service with a redis probe', { ref: 'service' }),
  deletePattern: field.text('remediation: UNLINK keys matching this SCAN pattern, e.g. "policy:stale:*"').optional(),
  flush: field.boolean('remediation: FLUSHDB (approval, confirm FLUSHDB)').optional(),
  restart: field.boolean('remediation: restart Redis through its driver (approval), then verify reconnects').optional(),
  reconnectServices: field.nameList('services whose probes must be healthy again after the restart', { ref: 'service' }).optional(),
  slowlogEntries: field.positiveInteger('SLOWLOG entries to read (10)').optional(),
  peers: field.nameList('the other nodes of the same Redis (services with a redis probe): replication and split-brain check across them', { ref: 'service' }).optional(),
  linkDownSeconds: field.positiveInteger('a replica whose master link is down longer than this is P1 (60)').optional(),
});

const natsLagTriage = procedureInput({
  service: field.name('a configured service with a nats probe', { ref: 'service' }),
  stream: field.id('only this stream (default: all)').optional(),
  consumerService: field.name('the service that consumes the stream (restart remediation)', { ref: 'service' }).optional(),
  restartConsumer: field.boolean('remediation: restart consumerService (approval)').optional(),
  purge: field.boolean('remediation: purge the stream (approval, confirm with the stream name; loses unprocessed events)').optional(),
  purgeOlderThanSeconds: field.positiveInteger('remediation: purge messages older than this (approval)').optional(),
});

const serviceErrorTriage = procedureInput({
  service: field.name('the failing service', { ref: 'service' }),
  cacheService: field.name('its cache (a service with a redis probe)', { ref: 'service' }).optional(),
  cachePattern: field.text('cache keys to sample, e.g. "policy:*"').optional(),
  database: field.name('its database (databases[].name)', { ref: 'database' }).optional(),
  metricsUrl: field.url('its Prometheus /metrics URL').optional(),
  metricsMatch: field.text('metric name prefix to show, e.g. fulcrum_policy').optional(),
  logLines: field.positiveInteger('log lines to read (100); with traceId/since/until the most lines shown (at most 1000)').optional(),
  traceId: field.id('only log lines of this trace id (Fulcrum 6.3), e.g. 4bf92f3577b34da6a3ce929d0e0e4736').optional(),
  since: field.datetime('only log lines from this time (Fulcrum 6.3; default: an hour before until)').optional(),
  until: field.datetime('only log lines up to this time (default: now; the window is at most 24 h)').optional(),
  logServices: field.nameList('other services whose logs the same search reads (trace correlation, Fulcrum 6.3; at most 10), e.g. ["processor"]', { ref: 'service' }).optional(),
  tenantId: field.id('list this tenant\'s policies (Fulcrum 3.1; needs database)').optional(),
  flushAndRestart: field.boolean('remediation: FLUSHDB the cache and restart the service (approval)').optional(),
  clearBuildCache: field.boolean('remediation: delete the dashboard\'s build cache and restart it (approval; Fulcrum 3.5)').optional(),
});

const latencyTriage = procedureInput({
  p99Query: field.text('PromQL for p99 seconds').optional(),
  errorRateQuery: field.text('PromQL for the error ratio (0..1)').optional(),
  p99ThresholdMs: field.positiveInteger('p99 above this is slow (thresholds.apiLatencyP99Ms: 500, AlphaPulse 4.2)').optional(),
  errorRateThresholdPercent: field.number('error rate % above this is P1 (thresholds.apiErrorRatePercent: 0.5, AlphaPulse 4.2); over 20 is P0 (Fulcrum 2.3)').optional(),
  database: field.name('database to check for slow queries (databases[].name)', { ref: 'database' }).optional(),
  slowQueryMs: field.positiveInteger('active queries running longer than this are slow (thresholds.slowQueryMs: 1000, AlphaPulse 2.1)').optional(),
  cacheService: field.name('cache to check the hit rate of (a service with a redis probe)', { ref: 'service' }).optional(),
});

export const INCIDENT_INPUTS = {
  incident,
  'redis-triage': redisTriage,
  'nats-lag-triage': natsLagTriage,
  'service-error-triage': serviceErrorTriage,
  'latency-triage': latencyTriage,
} satisfies Record<IncidentProcedureId, z.ZodType>;

export type IncidentInput = z.output<typeof incident>;
export type RedisTriageInput = z.output<typeof redisTriage>;
export type NatsLagTriageInput = z.output<typeof natsLagTriage>;
export type ServiceErrorTriageInput = z.output<typeof serviceErrorTriage>;
export type LatencyTriageInput = z.output<typeof latencyTriage>;
