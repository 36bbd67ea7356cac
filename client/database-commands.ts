import type { Command } from 'commander';
import { loadConfig, resolveConfigPath } from '../lib/config.js';
import { CodecKeyError } from '../lib/codec/index.js';
import { connectClient, temporalSettingsFromEnv } from '../lib/temporal/connection.js';
import { applySchedules, listSchedules } from './database-schedules.js';
import { UserError } from './operations.js';

/** The database family's CLI: `runbook schedules apply|list`. */
export function registerDatabaseCommands(program: Command): void {
  const connect = async () => {
    const settings = temporalSettingsFromEnv();
    const { client, connection } = await connectClient(settings).catch((err: Error) => {
      if (err instanceof CodecKeyError) throw err;
      throw new UserError(`cannot reach Temporal at ${settings.address}: ${err.message} (start it with \`npm start\` or set TEMPORAL_ADDRESS)`);
    });
    return { client, connection, settings };
  };

  const schedules = program.command('schedules').description('Temporal Schedules declared in databaseOps.schedules');

  schedules
    .command('apply')
    .description('create, update and delete schedules so they match the config exactly (idempotent; overlap policy skip)')
    .option('--config <file>', 'config file (default $RUNBOOK_CONFIG, runbooks.yaml, else runbooks.example.yaml)')
    .option('--dry-run', 'show what would change, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (opts: { config?: string; dryRun?: boolean; json?: boolean }) => {
      const { config } = await loadConfig(opts.config ?? resolveConfigPath());
      const { client, connection, settings } = await connect();
      try {
        const changes = await applySchedules(client, config, settings.taskQueue, { dryRun: opts.dryRun });
        if (opts.json) console.log(JSON.stringify(changes, null, 2));
        else if (changes.length === 0) console.log('no schedules declared and none to delete');
        else for (const c of changes) console.log(`${opts.dryRun ? '(dry run) ' : ''}${c.change.padEnd(9)} ${c.scheduleId}`);
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
      const { config } = await loadConfig(opts.config ?? resolveConfigPath());
      const { client, connection } = await connect();
      try {
        const rows = await listSchedules(client, config.environment);
        if (opts.json) {
          console.log(JSON.stringify(rows, null, 2));
          return;
        }
        if (rows.length === 0) {
          console.log('no schedules: declare them in databaseOps.schedules and run `runbook schedules apply`');
          return;
        }
        for (const r of rows) {
          console.log(`${r.scheduleId}  ${r.procedure}  ${r.spec}${r.paused ? '  (paused)' : ''}  next: ${r.nextRuns.join(', ') || '-'}`);
        }
      } finally {
        await connection.close();
      }
    });
}
