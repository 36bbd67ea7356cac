import type { FieldSpec } from '../field-spec.js';

/** The delivery runbook family: procedure ids (the workflow types) and their input fields. */
export const DELIVERY_PROCEDURES = {} as const;

export type DeliveryProcedureId = (typeof DELIVERY_PROCEDURES)[keyof typeof DELIVERY_PROCEDURES];

export const DELIVERY_INPUTS: Record<DeliveryProcedureId, Record<string, FieldSpec>> = {};
