import { DATABASE_INPUTS } from './families/database.js';
import { DELIVERY_INPUTS } from './families/delivery.js';
import { INCIDENT_INPUTS } from './families/incident.js';
import type { ProcedureId } from './procedures.js';
import { COMMON_FIELDS, type FieldSpec } from './field-spec.js';

/**
 * Input validation for every procedure, without dependencies so it runs both in
 * the CLI (refuse before starting anything) and in the workflow sandbox (fail the
 * run with a clear, non-retryable error instead of a stuck workflow task).
 */

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const common = COMMON_FIELDS;

export const INPUT_FIELDS: Record<ProcedureId, Record<string, FieldSpec>> = {
  ...DATABASE_INPUTS,
  ...DELIVERY_INPUTS,
  ...INCIDENT_INPUTS,
  'health-check': {
    ...common,
    services: { kind: 'string-list', help: 'service names to check (default: all)' },
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
    service: { kind: 'string', required: true, help: 'the service to restart' },
    mode: { kind: 'enum', values: ['restart', 'rebuild', 'force-recreate'], help: 'restart (default), rebuild or force-recreate' },
    waitTimeoutSeconds: { kind: 'positive-integer', help: 'seconds to wait for the service to be healthy again' },
  },
};

export class InputError extends Error {
  constructor(
    readonly procedure: string,
    readonly problems: string[],
  ) {
    super(`invalid input for ${procedure}: ${problems.join('; ')}`);
    this.name = 'InputError';
  }
}

function checkField(field: string, spec: FieldSpec, value: unknown): string | undefined {
  const want = `expected ${spec.kind === 'enum' ? `one of ${spec.values!.join(', ')}` : spec.kind} (${spec.help})`;
  switch (spec.kind) {
    case 'name':
      return typeof value === 'string' && NAME.test(value) ? undefined : `${field}: ${want}, lower-case letters, digits, ".", "_" or "-"`;
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? undefined : `${field}: ${want}`;
    case 'non-negative-integer':
      return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? undefined : `${field}: ${want}`;
    case 'integer-list':
      return Array.isArray(value) && value.every((v) => typeof v === 'number' && Number.isInteger(v) && v > 0)
        ? undefined
        : `${field}: ${want}, e.g. [1234, 5678]`;
    case 'datetime':
      return typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value) && !Number.isNaN(Date.parse(value))
        ? undefined
        : `${field}: ${want}, ISO 8601 with a time zone, e.g. 2026-11-23T03:00:00Z`;
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value) ? undefined : `${field}: ${want}`;
    case 'string':
      if (typeof value !== 'string' || value.trim() === '') return `${field}: ${want}`;
      if (value.length > 200) return `${field}: at most 200 characters`;
      return undefined;
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `${field}: ${want}, e.g. true`;
    case 'positive-integer':
      return typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= 31_536_000 ? undefined : `${field}: ${want}`;
    case 'enum':
      return typeof value === 'string' && spec.values!.includes(value) ? undefined : `${field}: ${want}`;
    case 'string-list':
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || !NAME.test(v))) {
        return `${field}: ${want}, e.g. ["postgres", "redis"]`;
      }
      return undefined;
  }
}

/** Returns the input with its type narrowed, or throws InputError naming every bad field and the fix. */
export function validateInput<T extends object>(procedure: ProcedureId, input: unknown): T {
  const fields = INPUT_FIELDS[procedure];
  const value = input === undefined || input === null ? {} : input;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new InputError(procedure, ['expected one JSON object, e.g. {}']);
  }
  const problems: string[] = [];
  for (const key of Object.keys(value)) {
    if (!(key in fields)) problems.push(`unknown field "${key}": expected one of ${Object.keys(fields).join(', ')}`);
  }
  for (const [field, spec] of Object.entries(fields)) {
    const v = (value as Record<string, unknown>)[field];
    if (v === undefined) {
      if (spec.required) problems.push(`${field}: required (${spec.help})`);
      continue;
    }
    const p = checkField(field, spec, v);
    if (p) problems.push(p);
  }
  if (problems.length > 0) throw new InputError(procedure, problems);
  return value as T;
}
