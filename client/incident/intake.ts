import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { RunbookConfig } from '../../common/config-schema.js';
import { defaultIncidentConfig } from '../../common/incident/config.js';
import type { AlertInput, IncidentInput } from '../../common/incident/types.js';
import { runMetadata } from '../../common/summaries.js';
import type { Logger } from '../../lib/logger.js';

/**
 * Alert intake: Prometheus Alertmanager webhooks (payload version 4) in, one incident
 * run per alert group out. The workflow id is derived from the group key, so every
 * notification for a group lands in the same run (signal-with-start); `resolved`
 * marks it mitigated. Requests must carry `Authorization: Bearer <shared secret>`.
 */

export interface AlertmanagerAlert {
  status: 'firing' | 'resolved';
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  startsAt?: string;
  endsAt?: string;
  fingerprint?: string;
}

export interface AlertmanagerPayload {
  version: string;
  groupKey: string;
  status: 'firing' | 'resolved';
  receiver?: string;
  groupLabels?: Record<string, string>;
  commonLabels?: Record<string, string>;
  commonAnnotations?: Record<string, string>;
  externalURL?: string;
  alerts: AlertmanagerAlert[];
}

export interface IntakeOutcome {
  workflowId: string;
  action: 'started-or-signalled' | 'mitigated' | 'ignored' | 'reopened';
  severity?: string;
  triage?: string;
}

export interface IntakeOptions {
  client: Client;
  taskQueue: string;
  config: RunbookConfig;
  /** The shared secret itself (read from incident.intake.secretEnv by the caller). */
  secret: string;
  logger: Logger;
  host?: string;
  port?: number;
}

export interface IntakeServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;

/** Deterministic per alert group: the same group always maps to the same incident run. */
export function incidentWorkflowId(environment: string, groupKey: string): string {
  return `incident--${environment}--${createHash('sha256').update(groupKey).digest('hex').slice(0, 16)}`;
}

function clip(s: string, n = 200): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

export function parsePayload(raw: unknown): AlertmanagerPayload {
  const p = raw as Partial<AlertmanagerPayload> | null;
  const problems: string[] = [];
  if (!p || typeof p !== 'object') throw new Error('expected an Alertmanager webhook JSON object');
  if (typeof p.groupKey !== 'string' || !p.groupKey) problems.push('groupKey: required');
  if (p.status !== 'firing' && p.status !== 'resolved') problems.push('status: expected firing or resolved');
  if (!Array.isArray(p.alerts)) problems.push('alerts: expected an array');
  if (p.version !== undefined && p.version !== '4') problems.push(`version: expected "4" (got ${JSON.stringify(p.version)})`);
  if (problems.length > 0) throw new Error(`not an Alertmanager v4 webhook: ${problems.join('; ')}`);
  return p as AlertmanagerPayload;
}

/** What to start for a payload: pure, so it is unit-testable and shared by the server and tests. */
export function incidentFromAlert(config: RunbookConfig, p: AlertmanagerPayload): { workflowId: string; input: IncidentInput; alert: AlertInput } {
  const intake = (config.incident ?? defaultIncidentConfig()).intake;
  const labels: Record<string, string> = { ...(p.alerts[0]?.labels ?? {}), ...(p.commonLabels ?? {}) };
  const severity = intake.labelToSeverity[labels[intake.severityLabel] ?? ''] ?? intake.defaultSeverity;
  const rule = intake.alertToTriage.find((r) => Object.entries(r.match).every(([k, v]) => labels[k] === v));
  const summary = clip(p.commonAnnotations?.summary ?? p.alerts[0]?.annotations?.summary ?? labels.alertname ?? 'alert');
  const title = clip(labels.alertname ? `${labels.alertname}${labels.service ? ` on ${labels.service}` : ''}` : summary);
  const input: IncidentInput = {
    title,
    severity,
    summary,
    source: 'alertmanager',
    requestedBy: 'alertmanager',
    labels: Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, clip(v)])),
    ...(labels.service && /^[a-z0-9][a-z0-9._-]{0,62}$/.test(labels.service) ? { service: labels.service } : {}),
    ...(rule ? { triage: rule.procedure, triageInput: rule.input } : {}),
    ...breachOf(labels.security),
  };
  const firing = p.alerts.filter((a) => a.status === 'firing').length;
  return {
    workflowId: incidentWorkflowId(config.environment, p.groupKey),
    input,
    alert: { by: 'alertmanager', status: p.status, alerts: p.status === 'firing' ? firing : p.alerts.length, summary },
  };
}

/** An alert labelled `security` (any value but false/no/0/none) is a data breach; `security: major` a major one (AlphaPulse 6.1). */
export function breachOf(label: string | undefined): Pick<IncidentInput, 'dataBreach'> {
  const v = label?.trim().toLowerCase();
  if (!v || ['false', 'no', '0', 'none'].includes(v)) return {};
  return { dataBreach: v === 'major' || v === 'major-breach' ? 'major' : 'breach' };
}

/** Running incidents looked at when an alert group is new: the watched one of the same service (its memo says so) takes it. */
const MAX_WATCHED_LOOKUP = 50;

/**
 * A resolved incident still in its watch (AlphaPulse 1.3) for `service`, other than `workflowId`:
 * a new alert group for the same service is the same problem coming back.
 */
async function watchedIncidentOf(client: Client, service: string, workflowId: string): Promise<string | undefined> {
  let seen = 0;
  for await (const w of client.workflow.list({ query: 'RunbookProcedure = "incident" AND ExecutionStatus = "Running"' })) {
    if (++seen > MAX_WATCHED_LOOKUP) break;
    const watch = w.memo?.incidentWatch as { service?: string | null; until?: string } | null | undefined;
    if (w.workflowId !== workflowId && watch?.service === service && watch.until && Date.parse(watch.until) > Date.now()) return w.workflowId;
  }
  return undefined;
}

export async function handleAlert(client: Client, taskQueue: string, config: RunbookConfig, p: AlertmanagerPayload): Promise<IntakeOutcome> {
  const { workflowId, input, alert } = incidentFromAlert(config, p);
  if (p.status === 'resolved') {
    // A resolved group never opens an incident: it only mitigates an open one.
    try {
      await client.workflow.getHandle(workflowId).signal('alert', alert);
      return { workflowId, action: 'mitigated' };
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return { workflowId, action: 'ignored' };
      throw err;
    }
  }
  if (input.service) {
    const running = await client.workflow
      .getHandle(workflowId)
      .describe()
      .then((d) => d.status.name === 'RUNNING', () => false);
    const watched = running ? undefined : await watchedIncidentOf(client, input.service, workflowId).catch(() => undefined);
    if (watched) {
      await client.workflow.getHandle(watched).signal('alert', alert);
      return { workflowId: watched, action: 'reopened', severity: input.severity };
    }
  }
  await client.workflow.signalWithStart('incident', {
    taskQueue,
    workflowId,
    args: [input],
    signal: 'alert',
    signalArgs: [alert],
    // Taken only when this starts the run; a signal to a running one leaves its summary as it was.
    ...runMetadata({ procedure: 'incident', input, environment: config.environment }),
  });
  return { workflowId, action: 'started-or-signalled', severity: input.severity, ...(input.triage ? { triage: input.triage } : {}) };
}

function authorized(header: string | undefined, secret: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  if (!m) return false;
  const a = createHash('sha256').update(m[1]!).digest();
  const b = createHash('sha256').update(secret).digest();
  return timingSafeEqual(a, b);
}

export async function startIntake(opts: IntakeOptions): Promise<IntakeServer> {
  if (!opts.secret) throw new Error('the intake needs a shared secret: set the environment variable named by incident.intake.secretEnv');
  const log = opts.logger.child({ component: 'intake' });
  const server = http.createServer((req, res) => {
    const reply = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.method === 'GET' && req.url === '/healthz') return reply(200, { ok: true });
    if (req.method !== 'POST') return reply(405, { error: 'POST an Alertmanager webhook' });
    if (!authorized(req.headers.authorization, opts.secret)) {
      log.warn({ remote: req.socket.remoteAddress }, 'intake: refused request without the shared secret');
      return reply(401, { error: 'missing or wrong Authorization: Bearer <secret>' });
    }
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      let payload: AlertmanagerPayload;
      try {
        payload = parsePayload(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        return reply(400, { error: (err as Error).message });
      }
      handleAlert(opts.client, opts.taskQueue, opts.config, payload).then(
        (outcome) => {
          log.info({ ...outcome, groupKey: payload.groupKey, status: payload.status }, 'intake: alert group handled');
          reply(200, outcome);
        },
        (err: Error) => {
          log.error({ err: err.message, groupKey: payload.groupKey }, 'intake: could not start or signal the incident');
          // 5xx makes Alertmanager retry the notification.
          reply(503, { error: err.message });
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ port }, 'intake listening');
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
