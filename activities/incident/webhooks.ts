import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../common/errors.js';
import type { TicketConfig, WebhookConfig } from '../../common/incident/config.js';
import type { IncidentSeverity, Notification, NotificationResult, TicketRef, TicketRequest } from '../../common/incident/types.js';
import { MissingEnvError, resolveEnvRefs } from '../../lib/env.js';

/**
 * Slack-compatible webhooks get `{"text": ...}`; generic JSON ones the whole event.
 * The URL is resolved from the environment here, inside the activity, so tokens in
 * it never reach workflow history. A non-2xx answer throws so Temporal retries.
 */
export function webhookBody(hook: WebhookConfig, n: Notification): unknown {
  if (hook.kind === 'slack') return { text: n.text };
  return { event: n.kind, eventId: n.eventId, incidentId: n.incidentId, text: n.text, ...n.fields };
}

export async function sendWebhook(hook: WebhookConfig, n: Notification, env: NodeJS.ProcessEnv, attempt: number, signal?: AbortSignal): Promise<NotificationResult> {
  let url: string;
  try {
    url = resolveEnvRefs(hook.url, env, `incident.webhooks.${hook.name}.url`);
  } catch (err) {
    if (err instanceof MissingEnvError) throw ApplicationFailure.nonRetryable(`${err.message}; set it in the worker's environment`, ErrorTypes.InvalidConfig);
    throw err;
  }
  const timeout = AbortSignal.timeout(hook.timeoutMs);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-runbook-event-id': n.eventId },
    body: JSON.stringify(webhookBody(hook, n)),
    signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
  }).catch((err: Error) => {
    // The URL may carry a token: name the webhook, never the URL.
    throw new Error(`webhook ${hook.name}: ${err.name === 'TimeoutError' ? `no answer within ${hook.timeoutMs} ms` : err.message}`);
  });
  await res.body?.cancel().catch(() => undefined);
  if (res.status < 200 || res.status >= 300) throw new Error(`webhook ${hook.name}: HTTP ${res.status}`);
  return { webhook: hook.name, status: res.status, attempts: attempt };
}

/** Jira's priority names for the severities (Linear's 1-4 are the same order). */
export const TICKET_PRIORITY: Record<IncidentSeverity, string> = { P0: 'Highest', P1: 'High', P2: 'Medium', P3: 'Low' };

/** The ticket as Jira/Linear-style JSON: title, description, priority, labels. */
export function ticketBody(cfg: TicketConfig, req: TicketRequest): Record<string, unknown> {
  return {
    title: req.title,
    description: req.description,
    priority: TICKET_PRIORITY[req.severity],
    labels: [...new Set([...cfg.labels, ...req.labels])],
    severity: req.severity,
    incidentId: req.incidentId,
  };
}

function envOrConfigFailure(value: string, env: NodeJS.ProcessEnv, field: string): string {
  try {
    return resolveEnvRefs(value, env, field);
  } catch (err) {
    if (err instanceof MissingEnvError) throw ApplicationFailure.nonRetryable(`${err.message}; set it in the worker's environment`, ErrorTypes.InvalidConfig);
    throw err;
  }
}

/**
 * POSTs the ticket with `Idempotency-Key: <incident id>` (a retried request is the same
 * ticket to a tracker or bridge that honours it) and reads where it landed: Jira answers
 * `{key, self}`, Linear `{identifier, url}`, a bridge may answer either.
 */
export async function sendTicket(cfg: TicketConfig, req: TicketRequest, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<TicketRef> {
  const url = envOrConfigFailure(cfg.url, env, 'incident.ticket.url');
  const token = cfg.token ? envOrConfigFailure(cfg.token, env, 'incident.ticket.token') : undefined;
  const timeout = AbortSignal.timeout(cfg.timeoutMs);
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'idempotency-key': req.incidentId,
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(ticketBody(cfg, req)),
    signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
  }).catch((err: Error) => {
    throw new Error(`ticket: ${err.name === 'TimeoutError' ? `no answer within ${cfg.timeoutMs} ms` : err.message}`);
  });
  const text = await res.text().catch(() => '');
  if (res.status < 200 || res.status >= 300) throw new Error(`ticket: HTTP ${res.status}`);
  let answer: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) answer = parsed as Record<string, unknown>;
  } catch {
    // A tracker that answers without JSON still took the ticket; there is just no key to show.
  }
  const str = (v: unknown) => (typeof v === 'string' && v.length > 0 && v.length <= 500 ? v : undefined);
  const key = str(answer.key) ?? str(answer.identifier) ?? str(answer.id);
  const where = str(answer.url) ?? str(answer.self) ?? str(answer.html_url);
  return { status: res.status, ...(key ? { key } : {}), ...(where ? { url: where } : {}) };
}
