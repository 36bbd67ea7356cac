import type { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { formatValue } from '../../common/delivery/analysis.js';
// The update and query definitions load with the SDK's workflow package: in the actions, not for `--help`.
const messages = () => import('../../common/delivery/messages.js');
import type { CanaryStatus } from '../../common/delivery/types.js';
import { connectCli } from '../connect.js';
import { defaultIdentity, UserError } from '../user-error.js';

const CONTROLS = {
  promote: { update: 'promoteUpdate', help: 'end the current bake now and go to the next step' },
  pause: { update: 'pauseUpdate', help: 'hold at the current weight after this step (analysis still runs)' },
  resume: { update: 'resumeUpdate', help: 'continue a paused canary' },
  abort: { update: 'abortUpdate', help: 'roll the canary back: traffic to 0 %, canary stopped' },
} as const;

export function formatCanaryStatus(s: CanaryStatus): string {
  const lines = [
    `router ${s.router}: ${s.weight} % on canary, ${s.phase}${s.paused ? ' (paused)' : ''}; steps ${s.steps.map((w, i) => (i === s.stepIndex ? `[${w}]` : String(w))).join(' → ')}`,
  ];
  if (s.lastAnalysis) {
    lines.push(`last analysis ${s.lastAnalysis.at}: ${s.lastAnalysis.ok ? 'passed' : 'FAILED'}`);
    for (const r of s.lastAnalysis.results) lines.push(`  ${r.ok ? '✓' : '✗'} ${r.name} = ${r.value === null ? 'no data' : formatValue(r.value)} (${r.detail})`);
  }
  if (s.abortRequested) lines.push(`abort requested by ${s.abortRequested.by}${s.abortRequested.reason ? `: ${s.abortRequested.reason}` : ''}`);
  return lines.join('\n');
}

/** `runbook delivery <status|promote|pause|resume|abort|rollback> <workflowId>`: control a running canary or blue/green switch. */
export function registerDeliveryCommands(program: Command): void {
  const delivery = program.command('delivery').description('watch and steer canary-deploy, release and blue-green-switch runs (updates: a refusal comes back at once)');

  const withClient = async <T>(workflowId: string, fn: (c: Client) => Promise<T>): Promise<T> => {
    const { client, connection } = await connectCli();
    try {
      return await fn(client);
    } catch (err) {
      const { WorkflowUpdateFailedError } = await import('@temporalio/client');
      if (err instanceof WorkflowUpdateFailedError) throw new UserError(`refused: ${err.cause?.message ?? err.message}`);
      if ((err as Error).name === 'WorkflowNotFoundError') throw new UserError(`no running run with id ${workflowId}: it has finished or never existed (see runbook status ${workflowId})`);
      throw err;
    } finally {
      await connection.close();
    }
  };

  delivery
    .command('status')
    .description('current weight, phase and last analysis of a canary (query canaryStatus)')
    .argument('<workflowId>')
    .option('--json', 'machine-readable output')
    .action(async (workflowId: string, opts: { json?: boolean }) => {
      const { canaryStatusQuery } = await messages();
      const s = await withClient(workflowId, (c) => c.workflow.getHandle(workflowId).query(canaryStatusQuery));
      console.log(opts.json ? JSON.stringify(s, null, 2) : formatCanaryStatus(s));
    });

  for (const [name, { update: updateName, help }] of Object.entries(CONTROLS)) {
    delivery
      .command(name)
      .description(help)
      .argument('<workflowId>')
      .option('--as <name>', 'who you are (default $RUNBOOK_USER or $USER)')
      .option('--reason <text>', 'why (recorded in the run)')
      .action(async (workflowId: string, opts: { as?: string; reason?: string }) => {
        const update = (await messages())[updateName];
        const s = await withClient(workflowId, (c) =>
          c.workflow.getHandle(workflowId).executeUpdate(update, { args: [{ by: opts.as ?? defaultIdentity(), ...(opts.reason ? { reason: opts.reason } : {}) }] }),
        );
        console.log(`${name}: accepted\n${formatCanaryStatus(s)}`);
      });
  }

  delivery
    .command('rollback')
    .description('switch a blue-green-switch run back to the old color, within its rollback window')
    .argument('<workflowId>')
    .option('--as <name>', 'who you are (default $RUNBOOK_USER or $USER)')
    .option('--reason <text>', 'why (recorded in the run)')
    .action(async (workflowId: string, opts: { as?: string; reason?: string }) => {
      const { rollbackUpdate } = await messages();
      const r = await withClient(workflowId, (c) =>
        c.workflow.getHandle(workflowId).executeUpdate(rollbackUpdate, { args: [{ by: opts.as ?? defaultIdentity(), ...(opts.reason ? { reason: opts.reason } : {}) }] }),
      );
      console.log(`rollback: ${r.detail}`);
    });
}
