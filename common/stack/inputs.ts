import type { z } from 'zod';
import { field, procedureInput } from '../input-fields.js';
import type { StackProcedureId } from './procedures.js';

/** The stack family's inputs: one schema per procedure, the types are inferred from them. */

const healthCheck = procedureInput({
  services: field.nameList('service names to check (default: all)', { ref: 'service' }).optional(),
});

const stackStart = procedureInput({
  skipPreflight: field.boolean('skip the preflight checks').optional(),
  skipMigrations: field.boolean('skip database migrations').optional(),
  waitTimeoutSeconds: field.positiveInteger("override every group's health wait timeout").optional(),
});

const stackStop = procedureInput({
  clean: field.boolean('also delete all data, after an approval confirmed with DELETE').optional(),
});

const serviceRestart = procedureInput({
  service: field.name('the service to restart (services[].name)', { ref: 'service' }),
  mode: field.enum(['restart', 'rebuild', 'force-recreate'], 'restart (default), rebuild or force-recreate').optional(),
  waitTimeoutSeconds: field.positiveInteger('seconds to wait for the service to be healthy again').optional(),
});

export const STACK_INPUTS = {
  'health-check': healthCheck,
  'stack-start': stackStart,
  'stack-stop': stackStop,
  'service-restart': serviceRestart,
} satisfies Record<StackProcedureId, z.ZodType>;

export type HealthCheckInput = z.output<typeof healthCheck>;
export type StackStartInput = z.output<typeof stackStart>;
export type StackStopInput = z.output<typeof stackStop>;
export type ServiceRestartInput = z.output<typeof serviceRestart>;
