import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { isProcedureId, PROCEDURE_IDS } from '../common/procedures.js';
import { UserError } from './user-error.js';

/**
 * `runbook describe [procedure]`. Every `runbook` call defines it, so the schemas (zod, and every
 * procedure's input) load in the action, not for `--help` or the other commands.
 */
export function registerDescribeCommand(program: Command): void {
  program
    .command('describe')
    .description("a procedure's input fields, defaults and an example (from its schema)")
    .argument('[procedure]', `one of ${PROCEDURE_IDS.join(', ')}`)
    .option('--json', "print the input's JSON Schema")
    .option('--update-docs <dir>', 'rewrite the generated input tables of the family pages in <dir> (docs/runbooks)')
    .action(async (procedure: string | undefined, opts: { json?: boolean; updateDocs?: string }) => {
      const { describeText, FAMILY_PAGES, refreshInputTables } = await import('./describe.js');
      if (opts.updateDocs !== undefined) {
        for (const page of Object.keys(FAMILY_PAGES)) {
          const file = path.join(opts.updateDocs, page);
          const { text, procedures } = refreshInputTables(fs.readFileSync(file, 'utf8'));
          fs.writeFileSync(file, text);
          console.log(`${file}: ${procedures.length} input tables`);
        }
        return;
      }
      if (procedure === undefined) {
        for (const [page, ids] of Object.entries(FAMILY_PAGES)) console.log(`${page.replace('.md', '')}: ${ids.join(', ')}`);
        return;
      }
      if (!isProcedureId(procedure)) throw new UserError(`unknown procedure ${JSON.stringify(procedure)}: expected one of ${PROCEDURE_IDS.join(', ')}`);
      const { inputJsonSchema } = await import('../common/inputs.js');
      console.log(opts.json ? JSON.stringify(inputJsonSchema(procedure), null, 2) : describeText(procedure));
    });
}
