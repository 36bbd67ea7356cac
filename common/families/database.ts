import type { FieldSpec } from '../field-spec.js';

/** The database runbook family: procedure ids (the workflow types) and their input fields. */
export const DATABASE_PROCEDURES = {} as const;

export type DatabaseProcedureId = (typeof DATABASE_PROCEDURES)[keyof typeof DATABASE_PROCEDURES];

export const DATABASE_INPUTS: Record<DatabaseProcedureId, Record<string, FieldSpec>> = {};
