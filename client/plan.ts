import type { Command } from 'commander';
import type { RunPlan } from '../common/plan.js';
import type { StartOptions } from './operations.js';
import { defaultIdentity, UserError } from './user-error.js';

/** What a run is started with, less its id: a plan run's id and memo are set by `startRun`. */
export type PlanRequest = Omit<StartOptions, 'workflowId' | 'plan'>;

/**
 * The plan of a run: the procedure's own workflow, started as a plan run (memo and id), on the
 * worker like any run. It runs the read-only steps and returns the rest as what it would do.
 */
export async function planRun(req: PlanRequest): Promise<RunPlan> {
  const [{ failureMessage, startRun }, { WorkflowFailedError }] = await Promise.all([import('./operations.js'), import('@temporalio/client')]);
  const handle = await startRun({ ...req, plan: true });
  try {
    return (await handle.result()) as RunPlan;
  } catch (err) {
    if (err instanceof WorkflowFailedError) throw new UserError(`plan of ${req.procedure} failed: ${failureMessage(err)} (run ${handle.workflowId})`);
    throw err;
  }
}

/** `runbook plan <procedure>`: defined on every call, its action loads the SDK and the schemas. */
export function registerPlanCommand(program: Command): void {
  program
    .command('plan')
    .description('what a run would do with this config and input, changing nothing: its steps, what each touches, approvals and who gives them, what is refused')
    .argument('<procedure>', 'procedure id, e.g. stack-start')
    .option('--input <json>', 'the input: one JSON object, @file.json to read it from a file, - to read it from stdin', undefined)
    .option('--json', 'machine-readable output')
    .option('--as <name>', 'who would start the run (default $RUNBOOK_USER or $USER): approvals leave out the requester')
    .action(async (name: string, opts: { input?: string; json?: boolean; as?: string }) => {
      const [{ parseProcedure }, { checkRunRequest, readRunInput }, { loadConfig, resolveConfigPath }, { connectCli }, { planText }] = await Promise.all([
        import('./operations.js'),
        import('./run-input.js'),
        import('../lib/config.js'),
        import('./connect.js'),
        import('../common/plan.js'),
      ]);
      const procedure = parseProcedure(name);
      const loaded = await loadConfig(resolveConfigPath()).catch(() => undefined);
      const input = checkRunRequest(
        procedure,
        await readRunInput(opts.input),
        { name: opts.as ?? defaultIdentity(), from: opts.as === undefined ? '--as (default $RUNBOOK_USER or $USER)' : '--as' },
        loaded,
      );
      const { client, connection, settings } = await connectCli();
      try {
        const plan = await planRun({
          client,
          taskQueue: settings.taskQueue,
          procedure,
          input,
          requestedBy: String(input.requestedBy),
          environment: loaded?.config.environment ?? 'default',
        });
        console.log(opts.json ? JSON.stringify(plan, null, 2) : planText(plan));
        if (plan.refused) {
          if (!opts.json) console.error(`${procedure} would be refused: ${plan.refused.message}`);
          process.exitCode = 1;
        }
      } finally {
        await connection.close();
      }
    });
}

