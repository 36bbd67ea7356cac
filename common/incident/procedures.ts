/** The incident runbook family: procedure ids, which are the workflow types (their inputs: inputs.ts). */
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
