import type { FieldSpec } from '../common/field-spec.js';
import { INPUT_FIELDS, parseInput } from '../common/inputs.js';
import { DATABASE_PROCEDURES } from '../common/database/procedures.js';
import { DELIVERY_PROCEDURES } from '../common/delivery/procedures.js';
import { INCIDENT_PROCEDURES } from '../common/incident/procedures.js';
import { isProcedureId, type ProcedureId } from '../common/procedures.js';
import { STACK_PROCEDURES } from '../common/stack/procedures.js';

/**
 * What a procedure takes, from its schema: `runbook describe <procedure>` prints the fields
 * and an example, `--json` the JSON Schema, and the docs' input tables are generated here
 * (tests/docs-inputs.test.ts fails when a page and a schema differ). The command itself is defined
 * in describe-command.ts, which loads this module (and the schemas) only when it runs.
 */

/** The docs page of each family, under docs/runbooks/. */
export const FAMILY_PAGES: Record<string, readonly ProcedureId[]> = {
  'stack.md': Object.values(STACK_PROCEDURES),
  'database.md': Object.values(DATABASE_PROCEDURES),
  'delivery.md': Object.values(DELIVERY_PROCEDURES),
  'incident.md': Object.values(INCIDENT_PROCEDURES),
};

const SAMPLES: Partial<Record<FieldSpec['kind'], unknown>> = {
  string: 'API down',
  identity: 'alice',
  id: '20261123T020000Z-1a2b3c4d',
  datetime: '2026-11-23T03:00:00Z',
  url: 'http://127.0.0.1:8080/healthz',
  image: 'ghcr.io/org/api:v1.0.0',
  'relative-path': '.env',
  boolean: true,
  number: 1,
  'positive-integer': 1,
  'non-negative-integer': 0,
};

function sample(name: string, spec: FieldSpec): unknown {
  if (spec.kind === 'enum') return spec.values![0];
  if (spec.kind === 'name') return spec.ref === 'database' || name === 'database' ? 'main' : 'api';
  return SAMPLES[spec.kind] ?? {};
}

/** The smallest valid input: the required fields with example values. */
export function exampleInput(procedure: ProcedureId): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(INPUT_FIELDS[procedure])) if (spec.required) out[name] = sample(name, spec);
  return parseInput(procedure, out);
}

function kindText(spec: FieldSpec): string {
  return spec.kind === 'enum' ? spec.values!.map((v) => `\`${v}\``).join(' \\| ') : spec.kind;
}

function refText(spec: FieldSpec): string {
  return spec.ref ? ` Must name a ${spec.ref} of the config.` : '';
}

/** The input table of a procedure's docs section (Markdown). */
export function inputTableMarkdown(procedure: ProcedureId): string {
  const rows = Object.entries(INPUT_FIELDS[procedure]).map(
    ([name, spec]) => `| \`${name}\` | ${kindText(spec)} | ${spec.required ? 'yes' : ''} | ${spec.help.replace(/\|/g, '\\|')}.${refText(spec)} |`,
  );
  return ['| field | kind | required | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

const MARK = /<!-- inputs:([a-z-]+) -->\n[\s\S]*?<!-- \/inputs -->/g;

/** The page with every generated input table brought up to date; the procedures it holds tables for. */
export function refreshInputTables(page: string): { text: string; procedures: string[] } {
  const procedures: string[] = [];
  const text = page.replace(MARK, (_all, procedure: string) => {
    if (!isProcedureId(procedure)) throw new Error(`a generated input table names an unknown procedure: ${procedure}`);
    procedures.push(procedure);
    return `<!-- inputs:${procedure} -->\n${inputTableMarkdown(procedure)}\n<!-- /inputs -->`;
  });
  return { text, procedures };
}

/** What `runbook describe <procedure>` prints. */
export function describeText(procedure: ProcedureId): string {
  const fields = Object.entries(INPUT_FIELDS[procedure]);
  const width = Math.max(...fields.map(([n]) => n.length));
  const lines = [`${procedure}: input fields (JSON object; unknown fields are refused)`, ''];
  for (const [name, spec] of fields) {
    const flags = [kindText(spec).replace(/`/g, '').replace(/ \\\| /g, '|'), spec.required ? 'required' : 'optional'].join(', ');
    lines.push(`  ${name.padEnd(width)}  ${flags}`);
    lines.push(`  ${' '.repeat(width)}  ${spec.help}.${refText(spec)}`);
  }
  const example = JSON.stringify(exampleInput(procedure));
  lines.push('', `example: runbook run ${procedure} --input '${example}'`);
  return lines.join('\n');
}
