import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../common/errors.js';
import type { WebhookConfig } from '../../common/incident/config.js';
import type { Notification, NotificationResult } from '../../common/incident/types.js';
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
