import { z } from 'zod';
import { DATABASE_INPUTS } from './database/inputs.js';
import { DELIVERY_INPUTS } from './delivery/inputs.js';
import type { FieldSpec } from './field-spec.js';
import { INCIDENT_INPUTS } from './incident/inputs.js';
import { FIELD_META, MAX_OBJECT_CHARS } from './input-fields.js';
import { isProcedureId, type ProcedureId } from './procedures.js';
import { STACK_INPUTS } from './stack/inputs.js';

/**
 * Every procedure's input schema, and what is derived from them: validation that returns
 * the procedure's own type, the field descriptions (`runbook describe`, the docs tables, the
 * CLI's config checks) and the JSON Schema. The CLI validates before starting a run; the
 * worker validates again in the run's first activity (a start from the UI skips the
 * CLI). zod is not imported by workflow code: workflows use the types only.
 */

export const PROCEDURE_INPUTS = {
  ...STACK_INPUTS,
  ...DATABASE_INPUTS,
  ...DELIVERY_INPUTS,
  ...INCIDENT_INPUTS,
} satisfies Record<ProcedureId, z.ZodType>;

/** A procedure's input as its schema outputs it. */
export type ProcedureInput<P extends ProcedureId> = z.output<(typeof PROCEDURE_INPUTS)[P]>;

/** The same map, typed so that indexing by a procedure id gives that procedure's own output type. */
const BY_PROCEDURE: { [P in ProcedureId]: z.ZodType<ProcedureInput<P>> } = PROCEDURE_INPUTS;

export class InputError extends Error {
  constructor(
    readonly procedure: string,
    readonly problems: string[],
  ) {
    super(`invalid input for ${procedure}: ${problems.join('; ')}`);
    this.name = 'InputError';
  }
}

const MAX_UNKNOWN_SHOWN = 5;

/** The registered description of a field's schema, looking through `.optional()`. */
function fieldSpec(schema: z.ZodType): FieldSpec {
  const required = !(schema instanceof z.ZodOptional);
  const inner = schema instanceof z.ZodOptional ? (schema.unwrap() as z.ZodType) : schema;
  const described = FIELD_META.get(inner);
  if (!described) throw new Error('an input field without a description: build it with field.* of common/input-fields.ts');
  return required ? { ...described, required } : described;
}

/** Each procedure's fields, in schema order: kind, whether required, help, config reference. */
export const INPUT_FIELDS: Record<ProcedureId, Record<string, FieldSpec>> = Object.fromEntries(
  Object.entries(PROCEDURE_INPUTS).map(([procedure, schema]) => [
    procedure,
    Object.fromEntries(Object.entries(schema.shape as Record<string, z.ZodType>).map(([name, s]) => [name, fieldSpec(s)])),
  ]),
) as Record<ProcedureId, Record<string, FieldSpec>>;

/** A key as shown in an error: quoted, escaped and cut short, so a hostile key cannot forge output. */
function showKey(key: string): string {
  const shown = JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key);
  return shown.replace(/[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A nested path as people read it: queries[0].max. */
function showPath(path: ReadonlyArray<PropertyKey>): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}

/** zod's issues as problems that each name the field and the fix: unknown fields first, then one per field. */
function problemsOf(procedure: ProcedureId, issues: z.core.$ZodIssue[]): string[] {
  const fields = Object.keys(INPUT_FIELDS[procedure]);
  const unknown = issues.flatMap((i) => (i.code === 'unrecognized_keys' && i.path.length === 0 ? i.keys : []));
  const problems = unknown.slice(0, MAX_UNKNOWN_SHOWN).map((key) => `unknown field ${showKey(key)}: expected one of ${fields.join(', ')}`);
  if (unknown.length > MAX_UNKNOWN_SHOWN) problems.push(`${unknown.length - MAX_UNKNOWN_SHOWN} more unknown fields`);
  const seen = new Set<string>();
  for (const issue of issues) {
    if (issue.path.length === 0) {
      if (issue.code !== 'unrecognized_keys') problems.push('expected one JSON object, e.g. {}');
      continue;
    }
    const name = String(issue.path[0]);
    if (seen.has(name)) continue;
    seen.add(name);
    // An element of a list names the list; inside an object of a known shape, the path within it.
    const inner = INPUT_FIELDS[procedure][name]?.kind === 'object' && issue.path.length > 1 ? `${showPath(issue.path.slice(1))}: ` : '';
    problems.push(`${name}: ${inner}${issue.message}`);
  }
  return problems;
}

/** The input with the procedure's own type, or an InputError naming every bad field and the fix. */
export function parseInput<P extends ProcedureId>(procedure: P, input: unknown): ProcedureInput<P> {
  if (!isProcedureId(procedure)) {
    throw new InputError(String(procedure), [`unknown procedure: expected one of ${Object.keys(PROCEDURE_INPUTS).join(', ')}`]);
  }
  const value = input === undefined || input === null ? {} : input;
  const result = BY_PROCEDURE[procedure].safeParse(value);
  if (!result.success) throw new InputError(procedure, problemsOf(procedure, result.error.issues));
  return result.data;
}

/** The input's JSON Schema (draft 2020-12), with each field's help as its description. */
export function inputJsonSchema(procedure: ProcedureId): Record<string, unknown> {
  return z.toJSONSchema(PROCEDURE_INPUTS[procedure], {
    io: 'input',
    unrepresentable: 'any',
    override: (ctx) => {
      const spec = FIELD_META.get(ctx.zodSchema);
      if (!spec) return;
      ctx.jsonSchema.description = spec.help;
      if (spec.kind === 'object') {
        ctx.jsonSchema.type = 'object';
        ctx.jsonSchema['x-maxJsonCharacters'] = MAX_OBJECT_CHARS;
      }
      if (spec.ref) ctx.jsonSchema['x-configRef'] = spec.ref;
    },
  });
}
