import type { Command } from 'commander';
import { UserError } from '../user-error.js';

/**
 * `runbook wal push|fetch`: the WAL archive in databaseOps.objectStorage, for PostgreSQL's own
 * hooks. archive_command = 'runbook wal push %p %f --database main' and, for a recovery done by
 * hand, restore_command = 'runbook wal fetch %f %p --database main'. The credentials come from
 * the server's environment (the config names them as ${VARS}); exit 0 means archived/fetched.
 */
export function registerWalCommands(program: Command): void {
  const wal = program.command('wal').description('WAL archive in object storage (archive_command / restore_command)');

  const storeFor = async (opts: { config?: string; database: string }) => {
    const config = await import('../../lib/config.js');
    const { config: c, dir } = await config.loadConfig(opts.config ?? config.resolveConfigPath());
    if (!c.databases.some((d) => d.name === opts.database)) {
      throw new UserError(`--database: unknown database "${opts.database}": expected one of ${c.databases.map((d) => d.name).join(', ') || '(none configured)'}`);
    }
    const cfg = c.databaseOps?.objectStorage;
    if (!cfg) throw new UserError(`${dir}: databaseOps.objectStorage is not configured: add its endpoint, bucket and credentials`);
    // Run once per WAL segment by the server: its log would get the SDK's Node-version notice every time.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const { storeClient } = await import('../../activities/database/object-store.js');
    return storeClient(cfg, process.env);
  };
  const failed = (err: unknown): never => {
    if (err instanceof UserError) throw err;
    throw new UserError((err as Error).message);
  };

  wal
    .command('push')
    .description('archive one WAL file (archive_command: runbook wal push %p %f --database NAME); the same file again is success, other content under the same name is refused')
    .argument('<path>', 'the file (%p)')
    .argument('<name>', 'its name in the archive (%f)')
    .requiredOption('--database <name>', 'the databases[] entry whose archive this is')
    .option('--config <file>', 'config file (default $RUNBOOK_CONFIG or runbooks.yaml)')
    .action(async (file: string, name: string, opts: { database: string; config?: string }) => {
      const store = await storeFor(opts);
      try {
        const { pushWal } = await import('../../activities/database/wal-store.js');
        const r = await pushWal(store, opts.database, file, name);
        console.error(`${r.already ? 'already archived' : 'archived'}: ${name} (${r.bytes} bytes) as s3://${store.bucket}/${r.key}`);
      } catch (err) {
        failed(err);
      } finally {
        store.client.destroy();
      }
    });

  wal
    .command('fetch')
    .description('restore one archived WAL file (restore_command: runbook wal fetch %f %p --database NAME); exit 1 when the archive has none')
    .argument('<name>', 'the file asked for (%f)')
    .argument('<path>', 'where to write it (%p)')
    .requiredOption('--database <name>', 'the databases[] entry whose archive this is')
    .option('--config <file>', 'config file (default $RUNBOOK_CONFIG or runbooks.yaml)')
    .action(async (name: string, dest: string, opts: { database: string; config?: string }) => {
      const store = await storeFor(opts);
      try {
        const { fetchWal } = await import('../../activities/database/wal-store.js');
        const r = await fetchWal(store, opts.database, name, dest);
        if (!r) throw new UserError(`${name}: not in the archive`);
        console.error(`fetched ${name} (${r.bytes} bytes), SHA-256 checked`);
      } catch (err) {
        failed(err);
      } finally {
        store.client.destroy();
      }
    });
}
