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
});

const redisTriage = procedureInput({
  service: field.name('a configured service with a redis probe', { ref: 'service' }),
  deletePattern: field.text('remediation: UNLINK keys matching this SCAN pattern, e.g. "policy:stale:*"').optional(),
  flush: field.boolean('remediation: FLUSHDB (approval, confirm FLUSHDB)').optional(),
  restart: field.boolean('remediation: restart Redis through its driver (approval), then verify reconnects').optional(),
  reconnectServices: field.nameList('services whose probes must be healthy again after the restart', { ref: 'service' }).optional(),
  slowlogEntries: field.positiveInteger('SLOWLOG entries to read (10)').optional(),
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
  logLines: field.positiveInteger('log lines to read (100)').optional(),
  flushAndRestart: field.boolean('remediation: FLUSHDB the cache and restart the service (approval)').optional(),
});

const latencyTriage = procedureInput({
  p99Query: field.text('PromQL for p99 seconds').optional(),
  errorRateQuery: field.text('PromQL for the error ratio (0..1)').optional(),
  p99ThresholdMs: field.positiveInteger('p99 above this is slow (500)').optional(),
  errorRateThresholdPercent: field.number('error rate above this is bad (5)').optional(),
  database: field.name('database to check for slow queries (databases[].name)', { ref: 'database' }).optional(),
  slowQueryMs: field.positiveInteger('active queries running longer than this are slow (100)').optional(),
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
