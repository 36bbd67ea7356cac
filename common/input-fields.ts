import { z } from 'zod';
import type { FieldKind, FieldSpec } from './field-spec.js';

/**
 * The building blocks of every procedure's input schema (zod): one builder per field
 * kind, each with the error text that names the fix, and each registered with its
 * description (kind, help, config reference) for `runbook describe`, the generated docs
 * and the CLI's config checks.
 *
 * Not for workflow code: zod stays out of the workflow bundle (it is re-evaluated per run).
 * Workflows import only the types; the worker validates in the run's first activity.
 */

export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const IDENTITY = /^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const TABLE = /^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$/;
export const IMAGE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/;
const URL_PATTERN = /^https?:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?([/?#]\S*)?$/;
const RELATIVE_PATH = /^[A-Za-z0-9._][A-Za-z0-9._@+=,/-]{0,199}$/;
const DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;
/** Control characters (tab, newline and carriage return aside) and the bidi overrides that make text display as something else. */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
/** PostgreSQL PIDs and other integers in lists must fit a 32-bit signed integer. */
const MAX_INT32 = 2_147_483_647;
export const MAX_LIST = 1000;
/** Seconds in a year: the largest number any field takes. */
export const MAX_NUMBER = 31_536_000;
const MAX_TEXT = 200;
const MAX_URL = 500;
/** Nested objects (a triage child's input, analysis overrides) are copied into results and child runs. */
export const MAX_OBJECT_CHARS = 16_384;

/** What `runbook describe` and the docs show of a field; the schema itself validates. */
export const FIELD_META = z.registry<Omit<FieldSpec, 'required'>>();

interface FieldOptions {
  ref?: FieldSpec['ref'];
}

/** "expected <kind> (<help>)<hint>", or "required (<help>)" when the field is missing. */
function messages(spec: Omit<FieldSpec, 'required'>, hint = ''): { error: (issue: { input?: unknown }) => string } {
  const want = `expected ${spec.kind === 'enum' ? `one of ${spec.values!.join(', ')}` : spec.kind} (${spec.help})${hint}`;
  return { error: (issue) => (issue.input === undefined ? `required (${spec.help})` : want) };
}

function describe<T extends z.ZodType>(schema: T, spec: Omit<FieldSpec, 'required'>): T {
  FIELD_META.add(schema, spec);
  return schema;
}

function meta(kind: FieldKind, help: string, opts: FieldOptions = {}): Omit<FieldSpec, 'required'> {
  return opts.ref ? { kind, help, ref: opts.ref } : { kind, help };
}

const listSize = { error: `at most ${MAX_LIST} entries` };

export const field = {
  /** A lower-case name of the config: a service, database, router. */
  name(help: string, opts?: FieldOptions) {
    const spec = meta('name', help, opts);
    return describe(z.string(messages(spec, ', lower-case letters, digits, ".", "_" or "-"')).regex(NAME_PATTERN), spec);
  },
  text(help: string) {
    const spec = meta('string', help);
    return describe(
      z
        .string(messages(spec))
        .refine((v) => v.trim() !== '', messages(spec))
        .refine((v) => v.length <= MAX_TEXT, { error: `at most ${MAX_TEXT} characters` })
        .refine((v) => !CONTROL.test(v), { error: 'control characters (NUL, escape sequences, bidi overrides) are not allowed; use plain text' }),
      spec,
    );
  },
  boolean(help: string) {
    const spec = meta('boolean', help);
    return describe(z.boolean(messages(spec, ', e.g. true')), spec);
  },
  number(help: string) {
    const spec = meta('number', help);
    return describe(z.number(messages(spec, `, 0..${MAX_NUMBER}`)).min(0).max(MAX_NUMBER), spec);
  },
  positiveInteger(help: string) {
    const spec = meta('positive-integer', help);
    return describe(z.int(messages(spec)).min(1).max(MAX_NUMBER), spec);
  },
  nonNegativeInteger(help: string) {
    const spec = meta('non-negative-integer', help);
    return describe(z.int(messages(spec, `, 0..${MAX_NUMBER}`)).min(0).max(MAX_NUMBER), spec);
  },
  enum<const V extends readonly [string, ...string[]]>(values: V, help: string) {
    const spec: Omit<FieldSpec, 'required'> = { kind: 'enum', values, help };
    return describe(z.enum(values, messages(spec)), spec);
  },
  datetime(help: string) {
    const spec = meta('datetime', help);
    const m = messages(spec, ', ISO 8601 with a time zone, e.g. 2026-11-23T03:00:00Z');
    return describe(
      z
        .string(m)
        .regex(DATETIME)
        .refine((v) => !Number.isNaN(Date.parse(v)), m),
      spec,
    );
  },
  identity(help: string) {
    const spec = meta('identity', help);
    const hint = ', one name of letters, digits, ".", "_", "@", ":", "+" or "-" starting with a letter or digit (max 128), e.g. alice';
    return describe(z.string(messages(spec, hint)).regex(IDENTITY), spec);
  },
  id(help: string) {
    const spec = meta('id', help);
    return describe(z.string(messages(spec, ', letters, digits, "_" or "-" (max 128), e.g. 20261123T020000Z-1a2b3c4d')).regex(ID), spec);
  },
  url(help: string) {
    const spec = meta('url', help);
    const m = messages(spec, ', an http:// or https:// URL without spaces or user:password@, e.g. http://127.0.0.1:8080/healthz');
    return describe(
      z
        .string(m)
        .max(MAX_URL)
        .regex(URL_PATTERN)
        .refine((v) => !CONTROL.test(v), m),
      spec,
    );
  },
  image(help: string) {
    const spec = meta('image', help);
    const hint = ', an image reference of letters, digits, ".", "_", "-", "/", ":" or "@" that starts with a letter or digit, e.g. ghcr.io/org/api:v1.0.0';
    return describe(z.string(messages(spec, hint)).regex(IMAGE_PATTERN), spec);
  },
  relativePath(help: string) {
    const spec = meta('relative-path', help);
    const m = messages(
      spec,
      `, a path relative to the config file's directory that stays inside it (letters, digits, ".", "_", "-", "/"; not absolute, no ".." segment, no spaces), e.g. .env`,
    );
    return describe(
      z
        .string(m)
        .regex(RELATIVE_PATH)
        .refine((v) => !v.startsWith('/') && !v.split('/').includes('..'), m),
      spec,
    );
  },
  nameList(help: string, opts?: FieldOptions) {
    const spec = meta('string-list', help, opts);
    const m = messages(spec, ', e.g. ["postgres", "redis"]');
    return describe(z.array(z.string(m).regex(NAME_PATTERN), m).max(MAX_LIST, listSize), spec);
  },
  integerList(help: string) {
    const spec = meta('integer-list', help);
    const m = messages(spec, `, positive integers up to ${MAX_INT32}, e.g. [1234, 5678]`);
    return describe(z.array(z.int(m).min(1).max(MAX_INT32), m).max(MAX_LIST, listSize), spec);
  },
  tableList(help: string) {
    const spec = meta('table-list', help);
    const m = messages(spec, ', table names like "policies" or "public.policies" (letters, digits, "_", "$"; at most one "."), e.g. ["policies"]');
    return describe(z.array(z.string(m).regex(TABLE), m).max(MAX_LIST, listSize), spec);
  },
  /** A JSON object passed on as it is (a child run's input, alert labels), bounded in size. */
  object(help: string) {
    const spec = meta('object', help);
    return describe(bounded(z.record(z.string(), z.unknown(), messages(spec))), spec);
  },
  /** A JSON object of a known shape, bounded in size. */
  shaped<T extends z.ZodType<object>>(help: string, schema: T) {
    return describe(bounded(schema), meta('object', help));
  },
};

function bounded<T extends z.ZodType<object>>(schema: T): T {
  return schema.refine((v) => JSON.stringify(v).length <= MAX_OBJECT_CHARS, {
    error: `at most ${MAX_OBJECT_CHARS} characters of JSON; pass only the fields it needs`,
  });
}

/** Fields every procedure accepts. */
export const commonFields = {
  requestedBy: field.identity('who started the run (name as in approvals.approvers)').optional(),
  approvalTimeoutSeconds: field.positiveInteger('seconds to wait for an approval before rejecting').optional(),
};

/** A procedure's input: the common fields and its own, nothing else. */
export function procedureInput<S extends z.ZodRawShape>(shape: S) {
  return z.strictObject({ ...commonFields, ...shape });
}
