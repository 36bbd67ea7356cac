import { DATABASE_PROCEDURES } from './database/procedures.js';
import { DELIVERY_PROCEDURES } from './delivery/procedures.js';
import { INCIDENT_PROCEDURES } from './incident/procedures.js';
import { STACK_PROCEDURES } from './stack/procedures.js';

/** Procedure ids are the workflow type names: what the UI's Start Workflow form and the CLI take. */
export const PROCEDURES = {
  ...STACK_PROCEDURES,
  ...DATABASE_PROCEDURES,
  ...DELIVERY_PROCEDURES,
  ...INCIDENT_PROCEDURES,
} as const;

export type ProcedureId = (typeof PROCEDURES)[keyof typeof PROCEDURES];

export const PROCEDURE_IDS: readonly ProcedureId[] = Object.values(PROCEDURES);

export const DEFAULT_TASK_QUEUE = 'runbooks';

export function isProcedureId(value: string): value is ProcedureId {
  return (PROCEDURE_IDS as readonly string[]).includes(value);
}

/**
 * Workflow ids: one builder per procedure. Procedures that must never overlap on
 * the same target (a stack start and stop) share a stable prefix so a second start
 * is refused by Temporal's id-uniqueness while the first runs.
 */
export function workflowIdFor(procedure: ProcedureId, opts: { environment: string; subject?: string; unique: string }): string {
  const parts = [procedure, opts.environment];
  if (opts.subject) parts.push(opts.subject);
  parts.push(opts.unique);
  return parts.join('--');
}
