import type { Command } from 'commander';
import type { ScheduleChange } from './schedules.js';
import { connectCli } from '../connect.js';
import { defaultIdentity } from '../user-error.js';
import { registerWalCommands } from './wal.js';

// Loaded by the actions: defining the commands (and `--help`) needs neither the config parser nor the SDK.
const loadConfig = async (file?: string) => {
  const config = await import('../../lib/config.js');
  return config.loadConfig(file ?? config.resolveConfigPath());
};
const schedulesModule = () => import('./schedules.js');

/** The database family's CLI: `runbook schedules apply|list|trigger|pause|unpause`. */
export function registerDatabaseCommands(program: Command): void {
  const connect = () => connectCli();
  registerWalCommands(program);

  const schedules = program.command('schedules').description('Temporal Schedules declared in databaseOps.schedules');

  schedules
    .command('apply')
    .description('create, update and delete schedules so they match the config exactly (idempotent; overlap policy skip)')
    .option('--config <file>', 'config file (default $RUNBOOK_CONFIG, runbooks.yaml, else runbooks.example.yaml)')
    .option('--dry-run', 'show what would change, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (opts: { config?: string; dryRun?: boolean; json?: boolean }) => {
      const { config } = await loadConfig(opts.config);
      const { client, connection, settings } = await connect();
      try {
        const changes = await (await schedulesModule()).applySchedules(client, config, settings.taskQueue, {
          dryRun: opts.dryRun,
          onChange: opts.json ? undefined : (c) => console.log(`${opts.dryRun ? '(dry run) ' : ''}${describeChange(c)}`),
        });
        if (opts.json) console.log(JSON.stringify(changes, null, 2));
        else if (changes.length === 0) console.log('no schedules declared and none to delete');
      } finally {
        await connection.close();
      }
    });

  schedules
    .command('list')
    .description('the schedules this config manages, with their next run times')
    .option('--config <file>', 'config file (default $RUNBOOK_CONFIG, runbooks.yaml, else runbooks.example.yaml)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { config?: string; json?: boolean }) => {
      const { config } = await loadConfig(opts.config);
      const { client, connection } = await connect();
      try {
        const rows = await (await schedulesModule()).listSchedules(client, config.environment);
        if (opts.json) {
          console.log(JSON.stringify(rows, null, 2));
          return;
        }
        if (rows.length === 0) {
          console.log('no schedules: declare them in databaseOps.schedules and run `runbook schedules apply`');
          return;
        }
        for (const r of rows) {
          const state = r.paused ? `  PAUSED (${r.note || 'no reason given'})` : '';
          console.log(`${r.scheduleId}  ${r.procedure}  ${r.spec}${state}  next: ${r.nextRuns.join(', ') || '-'}`);
        }
      } finally {
        await connection.close();
      }
    });

  schedules
    .command('trigger')
    .description("run a schedule's runbook now (skipped while a run it started is still going)")
    .argument('<id>', 'the schedule id from databaseOps.schedules (e.g. daily-backup) or its full id')
    .option('--config <file>', 'config file (default $RUNBOOK_CONFIG, runbooks.yaml, else runbooks.example.yaml)')
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { config?: string; json?: boolean }) => {
      const { config } = await loadConfig(opts.config);
      const { client, connection } = await connect();
      try {
        const run = await (await schedulesModule()).triggerSchedule(client, config, id);
        if (opts.json) console.log(JSON.stringify(run));
        else if (run.started) console.log(`triggered ${run.scheduleId}: ${run.workflowId}   (follow it: runbook status ${run.workflowId})`);
        else console.log(`not started: ${run.scheduleId} is still running ${run.workflowId} (overlap policy skip); see runbook status ${run.workflowId}`);
      } finally {
        await connection.close();
      }
    });

  for (const paused of [true, false]) {
    const cmd = schedules
      .command(paused ? 'pause' : 'unpause')
      .description(paused ? 'stop a schedule from starting runs until unpaused (apply leaves the pause in place)' : 'let a paused schedule start runs again')
      .argument('<id>', 'the schedule id from databaseOps.schedules (e.g. daily-backup) or its full id')
      .option('--config <file>', 'config file (default $RUNBOOK_CONFIG, runbooks.yaml, else runbooks.example.yaml)');
    if (paused) cmd.option('--reason <text>', 'why; shown by `runbook schedules list` and in the UI');
    cmd.action(async (id: string, opts: { config?: string; reason?: string }) => {
      const { config } = await loadConfig(opts.config);
      const { client, connection } = await connect();
      try {
        const r = await (await schedulesModule()).setSchedulePaused(client, config, id, paused, { reason: opts.reason, by: defaultIdentity() });
        const verb = paused ? 'paused' : 'unpaused';
        console.log(r.changed ? `${verb} ${r.scheduleId}` : `${r.scheduleId} was already ${verb}: nothing changed`);
      } finally {
        await connection.close();
      }
    });
  }
}

function describeChange(c: ScheduleChange): string {
  const why = c.change === 'deleted' ? ' (no longer declared in databaseOps.schedules)' : c.change === 'updated' ? ' (its declaration changed: recreated)' : '';
  return `${c.change.padEnd(9)} ${c.scheduleId}${why}`;
}
