import { DATABASE_INPUTS } from './database/procedures.js';
import { DELIVERY_INPUTS } from './delivery/procedures.js';
import { INCIDENT_INPUTS } from './incident/procedures.js';
import type { ProcedureId } from './procedures.js';
import { STACK_INPUTS } from './stack/procedures.js';
import type { FieldSpec } from './field-spec.js';

/**
 * Input validation for every procedure, without dependencies so it runs both in
 * the CLI (refuse before starting anything) and in the workflow sandbox (fail the
 * run with a clear, non-retryable error instead of a stuck workflow task).
 */

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export const INPUT_FIELDS: Record<ProcedureId, Record<string, FieldSpec>> = {
  ...DATABASE_INPUTS,
  ...DELIVERY_INPUTS,
  ...INCIDENT_INPUTS,
  ...STACK_INPUTS,
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

const IDENTITY = /^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const TABLE = /^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$/;
const IMAGE = /^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/;
const URL_PATTERN = /^https?:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?([/?#]\S*)?$/;
const RELATIVE_PATH = /^[A-Za-z0-9._][A-Za-z0-9._@+=,/-]{0,199}$/;
/** Control characters (tab, newline and carriage return aside) and the bidi overrides that make text display as something else. */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
/** PostgreSQL PIDs and other integers in lists must fit a 32-bit signed integer. */
const MAX_INT32 = 2_147_483_647;
const MAX_LIST = 1000;
const MAX_NUMBER = 31_536_000;
const MAX_UNKNOWN_SHOWN = 5;
/** Nested objects (a triage child's input, analysis overrides) are copied into results and child runs. */
const MAX_OBJECT_CHARS = 16_384;

function listProblem(field: string, value: unknown[]): string | undefined {
  return value.length > MAX_LIST ? `${field}: at most ${MAX_LIST} entries` : undefined;
}

function checkField(field: string, spec: FieldSpec, value: unknown): string | undefined {
  const want = `expected ${spec.kind === 'enum' ? `one of ${spec.values!.join(', ')}` : spec.kind} (${spec.help})`;
  switch (spec.kind) {
    case 'name':
      return typeof value === 'string' && NAME.test(value) ? undefined : `${field}: ${want}, lower-case letters, digits, ".", "_" or "-"`;
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= MAX_NUMBER ? undefined : `${field}: ${want}, 0..${MAX_NUMBER}`;
    case 'non-negative-integer':
      return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_NUMBER ? undefined : `${field}: ${want}, 0..${MAX_NUMBER}`;
    case 'integer-list':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= MAX_INT32)) {
        return `${field}: ${want}, positive integers up to ${MAX_INT32}, e.g. [1234, 5678]`;
      }
      return listProblem(field, value);
    case 'datetime':
      return typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value) && !Number.isNaN(Date.parse(value))
        ? undefined
        : `${field}: ${want}, ISO 8601 with a time zone, e.g. 2026-11-23T03:00:00Z`;
    case 'object':
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return `${field}: ${want}`;
      return JSON.stringify(value).length > MAX_OBJECT_CHARS ? `${field}: at most ${MAX_OBJECT_CHARS} characters of JSON; pass only the fields it needs` : undefined;
    case 'string':
      if (typeof value !== 'string' || value.trim() === '') return `${field}: ${want}`;
      if (value.length > 200) return `${field}: at most 200 characters`;
      if (CONTROL.test(value)) return `${field}: control characters (NUL, escape sequences, bidi overrides) are not allowed; use plain text`;
      return undefined;
    case 'identity':
      return typeof value === 'string' && IDENTITY.test(value)
        ? undefined
        : `${field}: ${want}, one name of letters, digits, ".", "_", "@", ":", "+" or "-" starting with a letter or digit (max 128), e.g. alice`;
    case 'id':
      return typeof value === 'string' && ID.test(value) ? undefined : `${field}: ${want}, letters, digits, "_" or "-" (max 128), e.g. 20261123T020000Z-1a2b3c4d`;
    case 'url':
      return typeof value === 'string' && value.length <= 500 && URL_PATTERN.test(value) && !CONTROL.test(value)
        ? undefined
        : `${field}: ${want}, an http:// or https:// URL without spaces or user:password@, e.g. http://127.0.0.1:8080/healthz`;
    case 'image':
      return typeof value === 'string' && IMAGE.test(value)
        ? undefined
        : `${field}: ${want}, an image reference of letters, digits, ".", "_", "-", "/", ":" or "@" that starts with a letter or digit, e.g. ghcr.io/org/api:v1.0.0`;
    case 'relative-path':
      if (typeof value !== 'string' || !RELATIVE_PATH.test(value) || value.startsWith('/') || value.split('/').includes('..')) {
        return `${field}: ${want}, a path relative to the config file's directory that stays inside it (letters, digits, ".", "_", "-", "/"; not absolute, no ".." segment, no spaces), e.g. .env`;
      }
      return undefined;
    case 'table-list':
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || !TABLE.test(v))) {
        return `${field}: ${want}, table names like "policies" or "public.policies" (letters, digits, "_", "$"; at most one "."), e.g. ["policies"]`;
      }
      return listProblem(field, value);
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `${field}: ${want}, e.g. true`;
    case 'positive-integer':
      return typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= MAX_NUMBER ? undefined : `${field}: ${want}`;
    case 'enum':
      return typeof value === 'string' && spec.values!.includes(value) ? undefined : `${field}: ${want}`;
    case 'string-list':
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || !NAME.test(v))) {
        return `${field}: ${want}, e.g. ["postgres", "redis"]`;
      }
      return listProblem(field, value);
  }
}

/** A key as shown in an error: quoted, escaped and cut short, so a hostile key cannot forge output. */
function showKey(key: string): string {
  const shown = JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key);
  return shown.replace(/[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Returns the input with its type narrowed, or throws InputError naming every bad field and the fix. */
export function validateInput<T extends object>(procedure: ProcedureId, input: unknown): T {
  const fields = Object.hasOwn(INPUT_FIELDS, procedure) ? INPUT_FIELDS[procedure] : undefined;
  if (!fields) throw new InputError(String(procedure), [`unknown procedure: expected one of ${Object.keys(INPUT_FIELDS).join(', ')}`]);
  const value = input === undefined || input === null ? {} : input;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new InputError(procedure, ['expected one JSON object, e.g. {}']);
  }
  const problems: string[] = [];
  // Own keys only: "constructor" or "__proto__" must not pass as known because every object inherits them.
  const unknown = Object.keys(value).filter((key) => !Object.hasOwn(fields, key));
  for (const key of unknown.slice(0, MAX_UNKNOWN_SHOWN)) problems.push(`unknown field ${showKey(key)}: expected one of ${Object.keys(fields).join(', ')}`);
  if (unknown.length > MAX_UNKNOWN_SHOWN) problems.push(`${unknown.length - MAX_UNKNOWN_SHOWN} more unknown fields`);
  for (const [field, spec] of Object.entries(fields)) {
    const v = Object.hasOwn(value, field) ? (value as Record<string, unknown>)[field] : undefined;
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
