import type { z } from 'zod';
import { field, procedureInput } from '../input-fields.js';
import type { StackProcedureId } from './procedures.js';

/** The stack family's inputs: one schema per procedure, the types are inferred from them. */

const healthCheck = procedureInput({
  services: field.nameList('service names to check (default: all)', { ref: 'service' }).optional(),
});

const healthWatch = procedureInput({
  services: field.nameList('service names to watch (default: all)', { ref: 'service' }).optional(),
  windowSeconds: field.positiveInteger('how long to watch (default: the longest duration of the thresholds, 10 min, Fulcrum 2.3)').optional(),
  sampleEverySeconds: field.positiveInteger('seconds between samples (default: a twentieth of the window, 1..30; at most 240 samples)').optional(),
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
  'health-watch': healthWatch,
  'stack-start': stackStart,
  'stack-stop': stackStop,
  'service-restart': serviceRestart,
} satisfies Record<StackProcedureId, z.ZodType>;

export type HealthCheckInput = z.output<typeof healthCheck>;
export type HealthWatchInput = z.output<typeof healthWatch>;
export type StackStartInput = z.output<typeof stackStart>;
export type StackStopInput = z.output<typeof stackStop>;
export type ServiceRestartInput = z.output<typeof serviceRestart>;
