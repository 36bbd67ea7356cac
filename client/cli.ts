import { Command, CommanderError, Option } from 'commander';
import type { WorkflowHandle } from '@temporalio/client';
import type { LoadedConfig } from '../lib/config.js';
import { registerDatabaseCommands } from './database/commands.js';
import { registerIncidentCommands } from './incident/commands.js';
import { registerDeliveryCommands } from './delivery/commands.js';
import { registerCodecKeysCommand, registerCodecServerCommand } from './codec-server.js';
import { registerAuditCommand } from './audit.js';
import { registerResumeCommand } from './resume.js';
import { registerAlertsCommand } from './alerts.js';
import { registerKeysCommand } from './keys.js';
import { registerDescribeCommand } from './describe-command.js';
import { registerPlanCommand } from './plan.js';
import type { PendingApproval, StepProgress } from '../common/types.js';
import { connectCli } from './connect.js';
import type { FirstTask } from './run-check.js';
import type { ClusterCommandOptions } from './temporal-cluster.js';
import { defaultIdentity, UserError } from './user-error.js';

// What the actions use loads when one runs: `runbook --help` loads commander and the command
// definitions, not the Temporal SDK, its protobuf definitions, the codec or the config parser.
const sdk = () => import('@temporalio/client');
const codec = () => import('../lib/codec/index.js');
const configModule = () => import('../lib/config.js');
const operations = () => import('./operations.js');
const connectionSettings = async () => (await import('../lib/temporal/connection.js')).temporalSettingsFromEnv();

const program = new Command('runbook')
  .description('Operations runbooks as durable Temporal workflows')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

/** The server the last command talked to, for error messages that must say where. */
let temporalAddress: string | undefined;

async function client() {
  temporalAddress = (await connectionSettings()).address;
  return connectCli();
}

/** The config the CLI sees (resolved as `runbook dev` does), or undefined when there is none. */
async function cliConfig(): Promise<LoadedConfig | undefined> {
  try {
    const { loadConfig, resolveConfigPath } = await configModule();
    return await loadConfig(resolveConfigPath());
  } catch {
    return undefined;
  }
}

const ICON: Record<StepProgress['status'], string> = {
  pending: ' ',
  running: '…',
  'waiting-approval': '?',
  succeeded: '✓',
  failed: '✗',
  skipped: '-',
  interrupted: '!',
};

function approvalHint(workflowId: string, p: PendingApproval): string {
  return [
    `waiting for approval of step "${p.step}": ${p.summary}`,
    `  approvers: ${p.approvers.join(', ') || '(none configured)'}${p.destructive ? ' (two-person rule: not the requester)' : ''}; deadline ${p.deadline}`,
    ...(p.quorum > 1 ? [`  needs ${p.quorum} approvals from different approvers; ${p.approvedBy.length} so far${p.approvedBy.length ? ` (${p.approvedBy.map((v) => v.by).join(', ')})` : ''}`] : []),
    `  approve: runbook approve ${workflowId} --as <name>${p.confirmPhrase ? ` --confirm ${p.confirmPhrase}` : ''}`,
    `  reject:  runbook reject ${workflowId} --as <name> --comment "why"`,
    `  signed:  add --key <your approver key file> (or set RUNBOOK_APPROVER_KEY); needed where approvals.requireSignatures is on`,
  ].join('\n');
}

/** The error for a run this CLI and its worker encrypt with different keys: which key to use instead. */
async function keyMismatch(what: string): Promise<UserError> {
  const keyring = (await codec()).payloadEncryptionFromEnv().keyring;
  const mine = keyring ? `key id "${keyring.currentId}" from ${keyring.source}` : 'no key (payloads in plain text)';
  return new UserError(
    `${what}: the worker and this CLI do not share a payload key; this CLI encrypts with ${mine}. Use the worker's key: for \`runbook dev --state-dir DIR\` set RUNBOOK_STATE_DIR=DIR, otherwise RUNBOOK_CODEC_KEY_FILE`,
  );
}

/**
 * Says what the first workflow task of a run just started tells: a warning when no worker has
 * taken it yet; exit 1 when it failed. A run the worker cannot decrypt (started with another
 * payload key) is terminated, since no retry can succeed, and the message says which key to use.
 */
async function reportFirstTask(first: FirstTask, handle: WorkflowHandle, settings: { address: string; taskQueue: string }): Promise<void> {
  const where = `task queue ${settings.taskQueue} at ${settings.address}`;
  if (first.kind === 'no-worker') {
    console.error(`warning: no worker polls ${where}: the run waits until one does (\`runbook worker\` or \`npm start\`)`);
  } else if (first.kind === 'not-taken') {
    console.error(`warning: no worker has run the first task of ${handle.workflowId} within ${first.seconds}s (${where}); see \`runbook status ${handle.workflowId}\``);
  } else if (first.kind === 'failed' && first.undecryptable) {
    await handle.terminate('the worker cannot decrypt the input: the run was started with another payload encryption key');
    throw await keyMismatch(`run ${handle.workflowId} was terminated: the worker on ${where} cannot decrypt it (${first.message})`);
  } else if (first.kind === 'failed') {
    throw new UserError(
      `run ${handle.workflowId} started, but its first workflow task failed on the worker (${where}): ${first.message}; the worker retries it: see its log, or terminate the run`,
    );
  }
}

program
  .command('run')
  .description('start a runbook; with --wait follow its steps and exit 0 only if it succeeds')
  .argument('<procedure>', 'procedure id, e.g. health-check')
  .option('--input <json>', 'the input: one JSON object, @file.json to read it from a file, - to read it from stdin', undefined)
  .option('--wait', 'follow progress until the run ends')
  .option('--json', 'machine-readable output')
  .option('--as <name>', 'who is starting the run (default $RUNBOOK_USER or $USER)')
  .option('--id <workflowId>', 'workflow id to use (default: generated)')
  .action(async (name: string, opts: { input?: string; wait?: boolean; json?: boolean; as?: string; id?: string }) => {
    const [
      { failureMessage, parseProcedure, startRun },
      { checkRunRequest, readRunInput },
      { firstWorkflowTask },
      { WorkflowFailedError },
      { PayloadDecryptionError },
      { pendingApprovalQuery, progressQuery },
    ] = await Promise.all([operations(), import('./run-input.js'), import('./run-check.js'), sdk(), codec(), import('../common/messages.js')]);
    const procedure = parseProcedure(name);
    const loaded = await cliConfig();
    const input = checkRunRequest(
      procedure,
      await readRunInput(opts.input),
      { name: opts.as ?? defaultIdentity(), from: opts.as === undefined ? '--as (default $RUNBOOK_USER or $USER)' : '--as' },
      loaded,
    );
    const { client: c, connection, settings } = await client();
    try {
      const handle = await startRun({
        client: c,
        taskQueue: settings.taskQueue,
        procedure,
        input,
        requestedBy: String(input.requestedBy),
        environment: loaded?.config.environment ?? 'default',
        workflowId: opts.id,
      });
      const first = await firstWorkflowTask(c, handle, settings.taskQueue);
      await reportFirstTask(first, handle, settings);
      if (!opts.wait && first.kind === 'closed') {
        // Ended in its first task: a refused input fails this command, not the run only.
        await handle.result().catch(async (err: unknown) => {
          if (err instanceof WorkflowFailedError) throw new UserError(`${procedure} failed: ${failureMessage(err)} (run ${handle.workflowId})`);
          if (err instanceof PayloadDecryptionError) throw await keyMismatch(`run ${handle.workflowId} ended, but its outcome cannot be read here (${err.message})`);
          throw err;
        });
      }
      if (!opts.wait) {
        console.log(opts.json ? JSON.stringify({ workflowId: handle.workflowId }) : handle.workflowId);
        return;
      }
      if (!opts.json) console.error(`started ${procedure}: ${handle.workflowId}`);
      const seen = new Map<string, string>();
      let announced = '';
      const printSteps = (steps: StepProgress[]) => {
        if (opts.json) return;
        for (const s of steps) {
          const key = `${s.status}|${s.detail ?? ''}`;
          if (s.status !== 'pending' && seen.get(s.id) !== key) {
            seen.set(s.id, key);
            console.error(`  ${ICON[s.status]} ${s.title}${s.detail ? ` - ${s.detail}` : ''}`);
          }
        }
      };
      let inFlight: Promise<unknown> = Promise.resolve();
      const poll = () => {
        inFlight = Promise.all([handle.query(progressQuery), handle.query(pendingApprovalQuery)])
          .then(([progress, pending]) => {
            if (opts.json) return;
            printSteps(progress.steps);
            if (pending && announced !== pending.step) {
              announced = pending.step;
              console.error(approvalHint(handle.workflowId, pending));
            }
          })
          .catch(() => undefined);
      };
      // At once, then every second: an approval with a short deadline is announced before it expires.
      if (first.kind === 'completed') poll();
      const follow = setInterval(poll, 1000);
      try {
        const result = await handle.result();
        clearInterval(follow);
        await inFlight;
        printSteps((result as { progress?: { steps: StepProgress[] } } | undefined)?.progress?.steps ?? []);
        if (opts.json) console.log(JSON.stringify({ workflowId: handle.workflowId, status: 'COMPLETED', result }, null, 2));
        else {
          const table = (result as { table?: string; health?: { table?: string } } | undefined)?.table ?? (result as { health?: { table?: string } })?.health?.table;
          if (table) console.log(table);
          const ok = (result as { ok?: boolean } | undefined)?.ok;
          console.error(`${procedure} ${ok === false ? 'finished with problems' : 'succeeded'}: ${handle.workflowId}`);
        }
        if ((result as { ok?: boolean } | undefined)?.ok === false) process.exitCode = 1;
      } catch (err) {
        if (err instanceof PayloadDecryptionError) throw await keyMismatch(`run ${handle.workflowId} ended, but its outcome cannot be read here (${err.message})`);
        if (!(err instanceof WorkflowFailedError)) throw err;
        const message = failureMessage(err);
        if (opts.json) console.log(JSON.stringify({ workflowId: handle.workflowId, status: 'FAILED', error: message }, null, 2));
        else console.error(`${procedure} failed: ${message}`);
        process.exitCode = 1;
      } finally {
        clearInterval(follow);
        // A poll still in flight would otherwise hit the closed connection.
        await inFlight;
      }
    } finally {
      await connection.close();
    }
  });

for (const decision of ['approve', 'reject'] as const) {
  program
    .command(decision)
    .description(decision === 'approve' ? 'approve the pending step of a run' : 'refuse the pending step of a run')
    .argument('<workflowId>')
    .requiredOption('--as <name>', 'your name, as listed in approvals.approvers')
    .option('--comment <text>', 'why')
    .option('--confirm <phrase>', 'the confirmation phrase the step asks for, e.g. DELETE')
    .option('--step <step>', 'the step you are answering (default: the one pending now; refused if it is not the pending one)')
    .option('--key <file>', 'sign the answer with your approver key (runbook keys new); default $RUNBOOK_APPROVER_KEY')
    .action(async (workflowId: string, opts: { as: string; comment?: string; confirm?: string; step?: string; key?: string }) => {
      const { answerApproval } = await operations();
      const { client: c, connection } = await client();
      try {
        const record = await answerApproval(c, workflowId, decision, {
          by: opts.as,
          comment: opts.comment,
          confirm: decision === 'approve' ? opts.confirm : undefined,
          step: opts.step,
        }, { keyFile: opts.key ?? (process.env.RUNBOOK_APPROVER_KEY || undefined) });
        const tally = record.quorum > 1 ? ` (${record.approvals} of ${record.quorum} approvals${record.settled ? '' : '; waiting for more'})` : '';
        console.log(`${record.decision}: step ${record.step} of ${workflowId} by ${record.by}${tally}`);
      } finally {
        await connection.close();
      }
    });
}

program
  .command('status')
  .description('show a run: Temporal status, current step, pending approval')
  .argument('<workflowId>')
  .option('--json', 'machine-readable output')
  .action(async (workflowId: string, opts: { json?: boolean }) => {
    // Connecting (round trips to the server) overlaps with loading the rest of the code.
    const [{ closedRunReport, runStatus }, { client: c, connection }] = await Promise.all([operations(), client()]);
    try {
      const s = await runStatus(c, workflowId);
      if (opts.json) {
        console.log(JSON.stringify(s, null, 2));
        return;
      }
      console.log(`${s.workflowId}  ${s.procedure}  ${s.status}  started ${s.startTime}${s.closeTime ? `  closed ${s.closeTime}` : ''}`);
      for (const step of s.progress?.steps ?? []) console.log(`  ${ICON[step.status]} ${step.title}${step.detail ? ` - ${step.detail}` : ''}`);
      if (s.pendingApproval) console.log(approvalHint(s.workflowId, s.pendingApproval));
      if (s.closed) for (const line of closedRunReport(s.closed)) console.log(line);
      else if (s.failure) console.log(`failure: ${s.failure}`);
    } finally {
      await connection.close();
    }
  });

program
  .command('list')
  .description('list runbook runs, newest first')
  .option('--awaiting-approval', 'only runs waiting for an approval')
  .option('--procedure <id>', 'only this procedure')
  .option('--limit <n>', 'at most this many', '20')
  .option('--json', 'machine-readable output')
  .action(async (opts: { awaitingApproval?: boolean; procedure?: string; limit: string; json?: boolean }) => {
    const [{ parseProcedure }, { AwaitingApproval, RunbookProcedure }] = await Promise.all([operations(), import('../common/search-attributes.js')]);
    const clauses = [`${RunbookProcedure.name} IS NOT NULL`];
    if (opts.procedure) clauses.push(`${RunbookProcedure.name} = '${parseProcedure(opts.procedure)}'`);
    if (opts.awaitingApproval) clauses.push(`${AwaitingApproval.name} = true`, `ExecutionStatus = 'Running'`);
    const limit = Number(opts.limit);
    if (!Number.isInteger(limit) || limit < 1) throw new UserError('--limit: expected a positive whole number');
    const { client: c, connection } = await client();
    try {
      const rows: Array<{ workflowId: string; procedure: string; status: string; startTime: string }> = [];
      for await (const wf of c.workflow.list({ query: clauses.join(' AND ') })) {
        rows.push({ workflowId: wf.workflowId, procedure: wf.type, status: wf.status.name, startTime: wf.startTime.toISOString() });
        if (rows.length >= limit) break;
      }
      if (opts.json) console.log(JSON.stringify(rows, null, 2));
      else if (rows.length === 0) console.log('no runs');
      else for (const r of rows) console.log(`${r.startTime}  ${r.status.padEnd(10)}  ${r.procedure.padEnd(16)}  ${r.workflowId}`);
    } finally {
      await connection.close();
    }
  });

const configCmd = program.command('config').description('configuration');
configCmd
  .command('check')
  .description('validate the configuration file (RUNBOOK_CONFIG, default runbooks.yaml)')
  .option('--config <file>', 'file to check')
  .action(async (opts: { config?: string }) => {
    const { configPathFromEnv, loadConfig, missingEnv } = await configModule();
    const loaded = await loadConfig(opts.config ?? configPathFromEnv());
    const missing = missingEnv(loaded.config);
    const c = loaded.config;
    console.log(
      `${loaded.path}: valid - environment ${c.environment}, ${c.services.length} services, ${c.stack.groups.length} groups, ${c.databases.length} databases`,
    );
    if (missing.length > 0) {
      for (const m of missing) console.log(`  warning: ${m.path}: ${m.message} (the worker needs it)`);
    }
  });

program
  .command('worker')
  .description('serve every runbook and activity until SIGTERM')
  .option('--config <file>', 'configuration file (default $RUNBOOK_CONFIG or runbooks.yaml)')
  .addOption(new Option('--metrics <host:port>', 'Prometheus metrics endpoint').default(process.env.RUNBOOK_METRICS ?? '0.0.0.0:9464'))
  .action(async (opts: { config?: string; metrics: string }) => {
    const { runWorker } = await import('../worker/main.js');
    await runWorker({ configPath: opts.config, metricsBind: opts.metrics === 'off' ? undefined : opts.metrics });
  });

program
  .command('dev')
  .description('the embedded default: Temporal dev server + UI, a worker, and the demo environment')
  .option('--state-dir <dir>', 'where the server database and demo data live', '.runbook')
  .option('--port <port>', 'Temporal frontend port', '7233')
  .option('--ui-port <port>', 'Temporal UI port', '8233')
  .option('--metrics <host:port>', 'worker Prometheus endpoint', '127.0.0.1:9464')
  .option('--no-demo', 'do not start the demo environment')
  .option('--codec-port <port>', 'payload codec server for the UI', '8234')
  .option('--config <file>', 'configuration file the worker serves (default $RUNBOOK_CONFIG, runbooks.yaml, else the demo\'s runbooks.example.yaml)')
  .action(async (opts: { stateDir: string; port: string; uiPort: string; metrics: string; demo: boolean; codecPort: string; config?: string }) => {
    const { runDev } = await import('./dev.js');
    await runDev({
      configPath: opts.config,
      stateDir: opts.stateDir,
      port: Number(opts.port),
      uiPort: Number(opts.uiPort),
      metricsBind: opts.metrics,
      demo: opts.demo,
      codecPort: Number(opts.codecPort),
    });
  });

registerDescribeCommand(program);
registerPlanCommand(program);
registerDatabaseCommands(program);
registerIncidentCommands(program);
registerDeliveryCommands(program);
registerCodecServerCommand(program);
registerCodecKeysCommand(program);
registerKeysCommand(program);
registerAuditCommand(program);
registerResumeCommand(program);
registerAlertsCommand(program);

const temporalCmd = program.command('temporal').description('the Temporal server');
temporalCmd
  .command('install')
  .description('find or build the Temporal CLI (dev server); its path is the only line on stdout, progress goes to stderr')
  .action(async () => {
    const { findTemporalCli, temporalCliCacheDir, TEMPORAL_CLI_FIXES, TEMPORAL_CLI_VERSION } = await import('../lib/temporal/install.js');
    const started = Date.now();
    console.error(`looking for the Temporal CLI (TEMPORAL_CLI_PATH, PATH, ${temporalCliCacheDir()}) ...`);
    const cli = await findTemporalCli({ install: true, onProgress: (line: string) => console.error(line) });
    if (!cli) {
      throw new UserError(
        [`no Temporal CLI found and Go is not installed to build ${TEMPORAL_CLI_VERSION}; either`, ...TEMPORAL_CLI_FIXES.map((fix) => `  ${fix}`)].join('\n'),
      );
    }
    const { runCommand } = await import('../lib/exec.js');
    const version = await runCommand([cli, '--version'], { timeoutMs: 10_000 }).then(
      (r) => r.stdout.trim(),
      (err: Error) => `(--version failed: ${err.message})`,
    );
    console.error(`using ${cli}: ${version} [${((Date.now() - started) / 1000).toFixed(1)} s]`);
    console.log(cli);
  });
temporalCmd
  .command('setup')
  .description('register the search attributes on the cluster in TEMPORAL_ADDRESS (idempotent)')
  .action(async () => {
    const { ensureSearchAttributes } = await import('../lib/temporal/search-attributes.js');
    const { connection, settings } = await client();
    try {
      await ensureSearchAttributes(connection, settings.namespace);
      console.log(`search attributes registered in namespace ${settings.namespace}`);
    } finally {
      await connection.close();
    }
  });
temporalCmd
  .command('cluster')
  .description(
    'run temporal-server (built into the cache) on PostgreSQL until Ctrl-C: schema set up or upgraded, namespace and search attributes created; the frontend address is printed on stdout',
  )
  .option('--data-dir <dir>', "config, logs, ports and (without --postgres-url) PostgreSQL's data", '.runbook/temporal-cluster')
  .option('--postgres-url <url>', 'an existing PostgreSQL (postgres://USER:PASSWORD@HOST:PORT); default $RUNBOOK_TEMPORAL_POSTGRES_URL, else our own in the data dir')
  .option('--ip <ip>', 'address the services bind to', '127.0.0.1')
  .option('--port <port>', 'frontend gRPC port (0 = a free one)', '7233')
  .option('--namespace <name>', 'namespace to create', process.env.TEMPORAL_NAMESPACE?.trim() || 'default')
  .option('--log-level <level>', 'server log level: debug, info, warn, error', 'warn')
  .option('--mtls', 'require client certificates: a CA, server and client certificates are made with openssl in <data-dir>/tls (once)')
  .option('--jwt', "with --mtls: the server's JWT authorization; a signing key is made in <data-dir>/jwt (once), clients present tokens from `runbook temporal token`")
  .option('--separate-services', 'run frontend, history, matching and worker as four processes (each with its own metrics port) instead of one')
  .option('--build-only', 'only find or build temporal-server and temporal-sql-tool (progress on stderr, the server path on stdout), then exit')
  .action(
    async (opts: ClusterCommandOptions) => {
      const { runTemporalCluster } = await import('./temporal-cluster.js');
      await runTemporalCluster(opts);
    },
  );
temporalCmd
  .command('token')
  .description('print a JWT for a `runbook temporal cluster --jwt` cluster, signed with the key in <data-dir>/jwt: give it to a client as TEMPORAL_API_KEY')
  .option('--data-dir <dir>', 'the cluster\'s data dir', '.runbook/temporal-cluster')
  .requiredOption('--subject <name>', 'who the token is for (the server logs it)')
  .option('--permission <ns:role>', 'e.g. default:read, default:write, default:admin, temporal-system:admin (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
  .option('--ttl <seconds>', 'lifetime in seconds', '3600')
  .action(async (opts: { dataDir: string; subject: string; permission?: string[]; ttl: string }) => {
    const { printTemporalToken } = await import('./temporal-cluster.js');
    await printTemporalToken(opts);
  });

/** A gRPC status error (what the server, or whatever answers at the address, said), if `err` is or wraps one. */
function grpcCause(err: unknown): (Error & { code: number; details?: string }) | undefined {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (typeof (e as { code?: unknown }).code === 'number' && 'metadata' in e) return e as unknown as Error & { code: number; details?: string };
  }
  return undefined;
}

/** One line for a failed call to Temporal: what failed, at which address, and why. */
function temporalErrorLine(err: Error, cause: Error & { code: number; details?: string }, address: string): string {
  const what = err === cause ? 'a call to Temporal failed' : err.message;
  // 12 UNIMPLEMENTED with an HTTP status: something answers there, but it is not a Temporal frontend.
  const hint =
    cause.code === 12 || /HTTP status code/.test(cause.details ?? '')
      ? ': is TEMPORAL_ADDRESS the gRPC address of a Temporal frontend (default port 7233)?'
      : cause.code === 14
        ? ': is Temporal running there? (`npm start`, or set TEMPORAL_ADDRESS)'
        : '';
  return `${what}: Temporal at ${address} answered ${cause.message}${hint}`;
}

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    if (err instanceof UserError) {
      console.error(`runbook: ${err.message}`);
      process.exitCode = err.exitCode;
      return;
    }
    const [{ ConfigError }, { CodecKeyError, PayloadDecryptionError }] = await Promise.all([configModule(), codec()]);
    if (err instanceof ConfigError || err instanceof CodecKeyError || err instanceof PayloadDecryptionError) {
      console.error(`runbook: ${err.message}`);
      process.exitCode = 1;
      return;
    }
    const grpc = grpcCause(err);
    const line = grpc ? temporalErrorLine(err as Error, grpc, temporalAddress ?? (await connectionSettings()).address) : err instanceof Error ? err.message : String(err);
    console.error(`runbook: ${line}`);
    if (process.env.RUNBOOK_DEBUG) console.error(err);
    process.exitCode = 2;
  }
}

/**
 * Loads the modules the actions load, without running one: `npm run build` runs this in the CLI
 * bundle to cache their compiled code (bin/cli-loader.mjs).
 */
export async function preloadForCodeCache(): Promise<void> {
  await Promise.all([sdk(), codec(), configModule(), operations(), import('./run-input.js'), import('./run-check.js'), connectionSettings(), import('../common/messages.js'), import('../common/search-attributes.js')]);
}

// Not awaited at the top level: the same module runs as the one-file CommonJS bundle (bin/bundle-cli.mjs).
if (process.env.RUNBOOK_CLI_PRELOAD !== '1') void main();
