import type { Client } from '@temporalio/client';
import type { Command } from 'commander';
import type { IncidentSeverity } from '../../common/incident/config.js';
import type { IncidentState } from '../../common/incident/types.js';
import { connectCli } from '../connect.js';
import { defaultIdentity, UserError } from '../user-error.js';

// Loaded by the actions: defining the commands (and `--help`) needs neither the config parser nor the
// SDK (the update and query definitions come with its workflow package).
const messages = () => import('../../common/incident/messages.js');
const incidentConfig = () => import('../../common/incident/config.js');
const loadConfig = async (file?: string) => {
  const config = await import('../../lib/config.js');
  return config.loadConfig(file ?? config.configPathFromEnv());
};

/** `runbook oncall [handoff]`, `runbook intake` and `runbook incident <action>`: the incident family's CLI. */
export function registerIncidentCommands(program: Command): void {
  program
    .command('oncall')
    .description('who is on call now and next (incident.oncall in the config)')
    .option('--at <iso>', 'at this instant instead of now, e.g. 2026-03-09T08:00:00Z')
    .option('--config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (opts: { at?: string; config?: string; json?: boolean }) => {
      const { config } = await loadConfig(opts.config);
      const oncall = config.incident?.oncall;
      if (!oncall) throw new UserError('no on-call rotation configured: add incident.oncall (timezone, handoff, startDate, people or rotation) to the config');
      const at = opts.at ? new Date(opts.at) : new Date();
      if (Number.isNaN(at.getTime())) throw new UserError(`--at: not a date: "${opts.at}" (expected ISO 8601, e.g. 2026-03-09T08:00:00Z)`);
      const { oncallAt } = await import('../../common/incident/oncall.js');
      const answer = oncallAt(oncall, at);
      if (opts.json) {
        console.log(JSON.stringify(answer, null, 2));
        return;
      }
      const fmt = new Intl.DateTimeFormat('en-GB', { timeZone: answer.timezone, weekday: 'short', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
      const local = (iso: string) => fmt.format(new Date(iso));
      console.log(`on call now:  primary ${answer.now.primary}, secondary ${answer.now.secondary} (until ${local(answer.now.end)} ${answer.timezone})`);
      console.log(`next:         primary ${answer.next.primary}, secondary ${answer.next.secondary} (from ${local(answer.next.start)} ${answer.timezone})`);
    });

  program
    .commands.find((c) => c.name() === 'oncall')!
    .command('handoff')
    .description('the shift handoff: open incidents, pending postmortems, the next shift; posted to the webhooks routed "handoff"')
    .option('--at <iso>', 'at this instant instead of now')
    .option('--config <file>', 'configuration file')
    .option('--no-post', 'print only, post nowhere')
    .option('--json', 'machine-readable output')
    .action(async (_opts: unknown, cmd: Command) => {
      // --at, --config and --json are also `oncall`'s options: commander hands them to whichever command comes first.
      const opts = cmd.optsWithGlobals<{ at?: string; config?: string; post: boolean; json?: boolean }>();
      const { config } = await loadConfig(opts.config);
      const incident = config.incident ?? (await incidentConfig()).defaultIncidentConfig();
      const at = opts.at ? new Date(opts.at) : new Date();
      if (Number.isNaN(at.getTime())) throw new UserError(`--at: not a date: "${opts.at}" (expected ISO 8601, e.g. 2026-03-09T08:00:00Z)`);
      const { buildHandoff, postHandoff, renderHandoff } = await import('./handoff.js');
      const handoff = await withClient((c) => buildHandoff(c, incident, at));
      if (opts.post) handoff.posted = await postHandoff(handoff, incident, process.env);
      if (opts.json) console.log(JSON.stringify(handoff, null, 2));
      else {
        console.log(renderHandoff(handoff));
        for (const p of handoff.posted) console.log(p.error ? `not posted to ${p.webhook}: ${p.error}` : `posted to ${p.webhook} (HTTP ${p.status})`);
      }
      if (handoff.posted.some((p) => p.error)) process.exitCode = 1;
    });

  program
    .command('intake')
    .description('serve the Alertmanager webhook intake (Authorization: Bearer $<incident.intake.secretEnv>)')
    .option('--port <port>', 'listen port', '9095')
    .option('--host <host>', 'listen address', '127.0.0.1')
    .option('--config <file>', 'configuration file')
    .action(async (opts: { port: string; host: string; config?: string }) => {
      const { config } = await loadConfig(opts.config);
      const secretEnv = (config.incident ?? (await incidentConfig()).defaultIncidentConfig()).intake.secretEnv;
      const secret = process.env[secretEnv];
      if (!secret) throw new UserError(`set ${secretEnv}: the shared secret Alertmanager sends as Authorization: Bearer`);
      const { client, connection, settings } = await connectCli('');
      const [{ startIntake }, { createLogger }] = await Promise.all([import('./intake.js'), import('../../lib/logger.js')]);
      const server = await startIntake({ client, taskQueue: settings.taskQueue, config, secret, logger: createLogger({ component: 'intake' }), host: opts.host, port: Number(opts.port) });
      console.error(`intake listening on ${server.url}/alertmanager`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.close();
      await connection.close();
    });

  const incident = program.command('incident').description('act on an incident run (each is a Temporal update: a refusal comes back at once)');
  type Messages = Awaited<ReturnType<typeof messages>>;
  const act = (
    name: string,
    description: string,
    build: (opts: Record<string, string | undefined>, m: Messages, severities: readonly string[]) => { update: UpdateDef; args: Record<string, unknown> },
  ) =>
    incident
      .command(name)
      .description(description)
      .argument('<workflowId>')
      .option('--as <name>', 'who you are (default $RUNBOOK_USER or $USER)')
      .option('--text <text>', 'note text / what was done')
      .option('--severity <P>', 'new severity P0-P3')
      .option('--level <L>', 'escalation level L2-L4')
      .option('--reason <text>', 'why')
      .option('--summary <text>', 'resolution summary (postmortem)')
      .option('--root-cause <text>', 'root cause (postmortem)')
      .option('--impact <text>', 'impact (postmortem)')
      .option('--force', 'resolve: skip the verification (smoke checks, error rate); needs --reason, which the timeline keeps')
      .action(async (workflowId: string, opts: Record<string, string | undefined>) => {
        const [m, { SEVERITIES }] = await Promise.all([messages(), incidentConfig()]);
        const { update, args } = build(opts, m, SEVERITIES);
        const state = await withClient((c) => sendUpdate(c, workflowId, update, { by: opts.as ?? defaultIdentity(), ...args }));
        console.log(`${name}: ${state.incidentId} is ${state.status}, ${state.severity}, level ${state.level}${state.acknowledgedBy ? `, acknowledged by ${state.acknowledgedBy}` : ''}`);
        if (name === 'resolve' && state.status !== 'resolved' && state.verification && !state.verification.ok) {
          throw new UserError(`not resolved: ${state.verification.reason}. Fix it and resolve again, or: runbook incident resolve ${workflowId} --force --reason "<why>"`);
        }
      });
  act('ack', 'acknowledge the page', (_o, m) => ({ update: m.acknowledgeUpdate, args: {} }));
  act('note', 'add a note to the timeline', (o, m) => ({ update: m.noteUpdate, args: { text: required(o.text, '--text') } }));
  act('severity', 'change the severity', (o, m, severities) => {
    const severity = required(o.severity, '--severity') as IncidentSeverity;
    if (!severities.includes(severity)) throw new UserError(`--severity: expected one of ${severities.join(', ')}`);
    return { update: m.setSeverityUpdate, args: { severity, reason: o.reason } };
  });
  act('mitigated', 'impact has stopped (escalation stops)', (o, m) => ({ update: m.mitigatedUpdate, args: { text: o.text } }));
  act('resolve', 'resolve after the verification (P0/P1: smoke checks, error rate); status page and channel say resolved; the postmortem is drafted', (o, m) => {
    const force = (o.force as unknown) === true;
    if (force && !o.reason) throw new UserError('--force needs --reason "<why the verification is skipped>"');
    return { update: m.resolvedUpdate, args: { summary: o.summary, rootCause: o.rootCause, impact: o.impact, ...(force ? { force: true, reason: o.reason } : {}) } };
  });
  act('escalate', 'escalate now (to the next level, or --level)', (o, m) => ({ update: m.escalateUpdate, args: { level: o.level, reason: o.reason } }));
  act('postmortem-done', 'mark the postmortem complete (stops the reminders)', (_o, m) => ({ update: m.postmortemCompleteUpdate, args: {} }));

  incident
    .command('timeline')
    .description('the incident timeline')
    .argument('<workflowId>')
    .option('--json', 'machine-readable output')
    .action(async (workflowId: string, opts: { json?: boolean }) => {
      const { timelineQuery } = await messages();
      const events = await withClient((c) => c.workflow.getHandle(workflowId).query(timelineQuery));
      if (opts.json) console.log(JSON.stringify(events, null, 2));
      else for (const e of events) console.log(`${e.at}  ${e.kind.padEnd(20)} ${e.by.padEnd(14)} ${e.text}`);
    });
  incident
    .command('postmortem')
    .description('print the postmortem draft (Markdown)')
    .argument('<workflowId>')
    .action(async (workflowId: string) => {
      const { postmortemQuery } = await messages();
      const md = await withClient((c) => c.workflow.getHandle(workflowId).query(postmortemQuery));
      if (!md) throw new UserError('no postmortem yet: it is drafted when the incident is resolved');
      console.log(md);
    });
}

type UpdateDef = Awaited<ReturnType<typeof messages>>['acknowledgeUpdate'];

function required(v: string | undefined, flag: string): string {
  if (!v) throw new UserError(`${flag} is required`);
  return v;
}

async function withClient<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const { client, connection } = await connectCli('');
  try {
    return await fn(client);
  } catch (err) {
    if ((err as Error).name === 'WorkflowNotFoundError') throw new UserError('no such incident run');
    throw err;
  } finally {
    await connection.close();
  }
}

async function sendUpdate(c: Client, workflowId: string, update: UpdateDef, args: Record<string, unknown>): Promise<IncidentState> {
  try {
    return await c.workflow.getHandle(workflowId).executeUpdate(update, { args: [args as { by: string }] });
  } catch (err) {
    const { WorkflowUpdateFailedError } = await import('@temporalio/client');
    if (err instanceof WorkflowUpdateFailedError) throw new UserError(`refused: ${err.cause?.message ?? err.message}`);
    throw err;
  }
}
