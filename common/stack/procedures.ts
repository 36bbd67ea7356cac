import { COMMON_FIELDS, type FieldSpec } from '../field-spec.js';

/** The stack runbook family: procedure ids (the workflow types) and their input fields. */
export const STACK_PROCEDURES = {
  healthCheck: 'health-check',
  stackStart: 'stack-start',
  stackStop: 'stack-stop',
  serviceRestart: 'service-restart',
} as const;

export type StackProcedureId = (typeof STACK_PROCEDURES)[keyof typeof STACK_PROCEDURES];

const common = COMMON_FIELDS;

export const STACK_INPUTS: Record<StackProcedureId, Record<string, FieldSpec>> = {
  'health-check': {
    ...common,
    services: { kind: 'string-list', ref: 'service', help: 'service names to check (default: all)' },
  },
  'stack-start': {
    ...common,
    skipPreflight: { kind: 'boolean', help: 'skip the preflight checks' },
    skipMigrations: { kind: 'boolean', help: 'skip database migrations' },
    waitTimeoutSeconds: { kind: 'positive-integer', help: "override every group's health wait timeout" },
  },
  'stack-stop': {
    ...common,
    clean: { kind: 'boolean', help: 'also delete all data, after an approval confirmed with DELETE' },
  },
  'service-restart': {
    ...common,
    service: { kind: 'name', required: true, ref: 'service', help: 'the service to restart (services[].name)' },
    mode: { kind: 'enum', values: ['restart', 'rebuild', 'force-recreate'], help: 'restart (default), rebuild or force-recreate' },
    waitTimeoutSeconds: { kind: 'positive-integer', help: 'seconds to wait for the service to be healthy again' },
  },
};
