import type { FieldSpec } from '../field-spec.js';

/** The incident runbook family: procedure ids (the workflow types) and their input fields. */
export const INCIDENT_PROCEDURES = {} as const;

export type IncidentProcedureId = (typeof INCIDENT_PROCEDURES)[keyof typeof INCIDENT_PROCEDURES];

export const INCIDENT_INPUTS: Record<IncidentProcedureId, Record<string, FieldSpec>> = {};
