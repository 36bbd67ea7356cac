import type { FieldSpec } from '../field-spec.js';
import { COMMON_FIELDS } from '../field-spec.js';

/** The incident runbook family: procedure ids (the workflow types) and their input fields. */
export const INCIDENT_PROCEDURES = {
  incident: 'incident',
  natsLagTriage: 'nats-lag-triage',
  redisTriage: 'redis-triage',
  serviceErrorTriage: 'service-error-triage',
  latencyTriage: 'latency-triage',
} as const;

export type IncidentProcedureId = (typeof INCIDENT_PROCEDURES)[keyof typeof INCIDENT_PROCEDURES];

export const TRIAGE_PROCEDURES = ['redis-triage', 'nats-lag-triage', 'service-error-triage', 'latency-triage'] as const;
export type TriageProcedureId = (typeof TRIAGE_PROCEDURES)[number];

export const INCIDENT_INPUTS: Record<IncidentProcedureId, Record<string, FieldSpec>> = {
  incident: {
    ...COMMON_FIELDS,
    title: { kind: 'string', required: true, help: 'what is wrong, e.g. "API down"' },
    severity: { kind: 'enum', values: ['P0', 'P1', 'P2', 'P3'], required: true, help: 'P0 outage, P1 major, P2 degraded, P3 cosmetic' },
    service: { kind: 'string', help: 'the affected service' },
    summary: { kind: 'string', help: 'one or two sentences for the channel and the postmortem' },
    source: { kind: 'string', help: 'where it came from: cli, ui, alertmanager' },
    triage: {
      kind: 'enum',
      values: ['redis-triage', 'nats-lag-triage', 'service-error-triage', 'latency-triage'],
      help: 'a triage runbook to start as a child run',
    },
    triageInput: { kind: 'object', help: 'the triage runbook input, e.g. {"service": "redis"}' },
    labels: { kind: 'object', help: 'alert labels (set by the alert intake)' },
  },
  'redis-triage': {
    ...COMMON_FIELDS,
    service: { kind: 'name', required: true, ref: 'service', help: 'a configured service with a redis probe' },
    deletePattern: { kind: 'string', help: 'remediation: UNLINK keys matching this SCAN pattern, e.g. "policy:stale:*"' },
    flush: { kind: 'boolean', help: 'remediation: FLUSHDB (approval, confirm FLUSHDB)' },
    restart: { kind: 'boolean', help: 'remediation: restart Redis through its driver (approval), then verify reconnects' },
    reconnectServices: { kind: 'string-list', ref: 'service', help: 'services whose probes must be healthy again after the restart' },
    slowlogEntries: { kind: 'positive-integer', help: 'SLOWLOG entries to read (10)' },
  },
  'nats-lag-triage': {
    ...COMMON_FIELDS,
    service: { kind: 'name', required: true, ref: 'service', help: 'a configured service with a nats probe' },
    stream: { kind: 'id', help: 'only this stream (default: all)' },
    consumerService: { kind: 'name', ref: 'service', help: 'the service that consumes the stream (restart remediation)' },
    restartConsumer: { kind: 'boolean', help: 'remediation: restart consumerService (approval)' },
    purge: { kind: 'boolean', help: 'remediation: purge the stream (approval, confirm with the stream name; loses unprocessed events)' },
    purgeOlderThanSeconds: { kind: 'positive-integer', help: 'remediation: purge messages older than this (approval)' },
  },
  'service-error-triage': {
    ...COMMON_FIELDS,
    service: { kind: 'name', required: true, ref: 'service', help: 'the failing service' },
    cacheService: { kind: 'name', ref: 'service', help: 'its cache (a service with a redis probe)' },
    cachePattern: { kind: 'string', help: 'cache keys to sample, e.g. "policy:*"' },
    database: { kind: 'name', ref: 'database', help: 'its database (databases[].name)' },
    metricsUrl: { kind: 'url', help: 'its Prometheus /metrics URL' },
    metricsMatch: { kind: 'string', help: 'metric name prefix to show, e.g. fulcrum_policy' },
    logLines: { kind: 'positive-integer', help: 'log lines to read (100)' },
    flushAndRestart: { kind: 'boolean', help: 'remediation: FLUSHDB the cache and restart the service (approval)' },
  },
  'latency-triage': {
    ...COMMON_FIELDS,
    p99Query: { kind: 'string', help: 'PromQL for p99 seconds' },
    errorRateQuery: { kind: 'string', help: 'PromQL for the error ratio (0..1)' },
    p99ThresholdMs: { kind: 'positive-integer', help: 'p99 above this is slow (500)' },
    errorRateThresholdPercent: { kind: 'number', help: 'error rate above this is bad (5)' },
    database: { kind: 'name', ref: 'database', help: 'database to check for slow queries (databases[].name)' },
    slowQueryMs: { kind: 'positive-integer', help: 'active queries running longer than this are slow (100)' },
    cacheService: { kind: 'name', ref: 'service', help: 'cache to check the hit rate of (a service with a redis probe)' },
  },
};
