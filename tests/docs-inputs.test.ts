import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { exampleInput, FAMILY_PAGES, refreshInputTables } from '../client/describe.js';
import { INPUT_FIELDS, inputJsonSchema, parseInput } from '../common/inputs.js';
import { PROCEDURE_IDS } from '../common/procedures.js';

/** The docs' input tables and `runbook describe` come from the procedures' schemas, and say what they accept. */

const root = fileURLToPath(new URL('..', import.meta.url));
const run = promisify(execFile);

describe('input docs generated from the schemas', () => {
  it('every procedure has one input table, and every table matches its schema (fix: runbook describe --update-docs docs/runbooks)', () => {
    const seen: string[] = [];
    for (const page of Object.keys(FAMILY_PAGES)) {
      const file = path.join(root, 'docs/runbooks', page);
      const text = fs.readFileSync(file, 'utf8');
      const refreshed = refreshInputTables(text);
      expect(refreshed.text, `${page} is out of date`).toBe(text);
      expect([...refreshed.procedures].sort()).toEqual([...FAMILY_PAGES[page]!].sort());
      seen.push(...refreshed.procedures);
    }
    expect(seen.sort()).toEqual([...PROCEDURE_IDS].sort());
  });

  it('a table lists every field with its kind and whether it is required', () => {
    const page = fs.readFileSync(path.join(root, 'docs/runbooks/database.md'), 'utf8');
    const table = /<!-- inputs:pitr-restore -->\n([\s\S]*?)<!-- \/inputs -->/.exec(page)![1]!;
    expect(table).toContain('| `targetTime` | datetime | yes |');
    expect(table).toContain('| `services` | string-list |  |');
    expect(table.trim().split('\n')).toHaveLength(2 + Object.keys(INPUT_FIELDS['pitr-restore']).length);
  });

  it("each procedure's example is accepted, and its JSON Schema names the required fields", () => {
    for (const procedure of PROCEDURE_IDS) {
      const example = exampleInput(procedure);
      expect(parseInput(procedure, example)).toEqual(example);
      const schema = inputJsonSchema(procedure) as { required?: string[]; additionalProperties?: boolean; properties: Record<string, unknown> };
      const required = Object.entries(INPUT_FIELDS[procedure]).filter(([, s]) => s.required).map(([n]) => n);
      expect(schema.required ?? []).toEqual(required);
      expect(schema.additionalProperties).toBe(false);
      expect(Object.keys(schema.properties)).toEqual(Object.keys(INPUT_FIELDS[procedure]));
    }
  });

  it('runbook describe prints the fields and an example; --json the JSON Schema; an unknown procedure is refused', async () => {
    const bin = path.join(root, 'bin/runbook.mjs');
    const text = (await run(process.execPath, [bin, 'describe', 'db-restore'])).stdout;
    expect(text).toMatch(/^db-restore: input fields/);
    expect(text).toMatch(/database\s+name, required/);
    expect(text).toMatch(/replace\s+boolean, optional\n\s+replace the database itself, after an approval confirmed with REPLACE/);
    expect(text).toContain(`runbook run db-restore --input '{"database":"main"}'`);
    const json = JSON.parse((await run(process.execPath, [bin, 'describe', 'db-restore', '--json'])).stdout) as { properties: { backupId: { description: string } } };
    expect(json.properties.backupId.description).toMatch(/backup id/);
    const bad = await run(process.execPath, [bin, 'describe', 'db-restor']).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(bad?.code).toBe(1);
    expect(bad?.stderr).toMatch(/unknown procedure "db-restor": expected one of .*db-restore/);
  });
});
