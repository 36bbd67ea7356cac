import type { ProcedureId } from './procedures.js';

/**
 * Input validation for every procedure, without dependencies so it runs both in
 * the CLI (refuse before starting anything) and in the workflow sandbox (fail the
 * run with a clear, non-retryable error instead of a stuck workflow task).
 */

type FieldKind = 'string' | 'boolean' | 'positive-integer' | 'string-list' | 'enum';

interface FieldSpec {
  kind: FieldKind;
  required?: boolean;
  values?: readonly string[];
  help: string;
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

const common: Record<string, FieldSpec> = {
  requestedBy: { kind: 'string', help: 'who started the run (name as in approvals.approvers)' },
  approvalTimeoutSeconds: { kind: 'positive-integer', help: 'seconds to wait for an approval before rejecting' },
};

export const INPUT_FIELDS: Record<ProcedureId, Record<string, FieldSpec>> = {
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
