import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import { canaryStatusQuery } from '../../common/delivery/messages.js';
import type { CanaryStatus } from '../../common/delivery/types.js';
import { pendingApprovalQuery } from '../../common/messages.js';
import type { PendingApproval } from '../../common/types.js';
import type { DeliveryBed } from '../fixtures/delivery-traffic.js';
import { get } from '../fixtures/delivery-traffic.js';

/** A webhook receiver on loopback: what a chat integration would get. */
export async function startWebhook(): Promise<{ url: string; messages: Array<Record<string, unknown>>; stop(): Promise<void> }> {
  const messages: Array<Record<string, unknown>> = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      messages.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    messages,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The delivery section and a canary service for the test bed. */
export function deliveryConfig(bed: DeliveryBed, extra: { analysis?: Record<string, unknown>; services?: unknown[]; databases?: unknown[] } = {}) {
  return {
    environment: 'test',
    services: [
      { name: 'api-canary', driver: { type: 'command', stop: bed.canaryStopArgv(), timeoutSeconds: 10 } },
      ...(extra.services ?? []),
    ],
    databases: extra.databases ?? [],
    approvals: { approvers: { default: ['alice', 'bob'] }, timeoutSeconds: 600 },
    delivery: {
      prometheus: { url: bed.prometheus.url },
      routers: {
        api: {
          type: 'nginx',
          configPath: bed.nginx.configPath,
          prefix: bed.nginx.prefix,
          upstreamFile: bed.nginx.upstreamFile,
          pidFile: bed.nginx.pidFile,
          upstreamName: 'api',
          stable: new URL(bed.stable.httpUrl).host,
          canary: new URL(bed.canary.httpUrl).host,
          stableSelector: 'job="api"',
          canarySelector: 'job="api-canary"',
          canaryService: 'api-canary',
          healthUrl: { stable: `${bed.stable.httpUrl}/healthz`, canary: `${bed.canary.httpUrl}/healthz` },
        },
      },
      analysis: { intervalSeconds: 1, count: 2, window: '5s', ...extra.analysis },
      canary: { bakeSeconds: 2 },
      blueGreen: { scaleDownDelaySeconds: 2 },
      notify: { webhookUrl: '${DELIVERY_WEBHOOK}' },
    },
  };
}

/** Requests straight to the canary so its metric series exist before it gets routed traffic. */
export async function warmCanary(bed: DeliveryBed, n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await get(`${bed.canary.httpUrl}/api/warm`);
}

export async function waitForStatus(handle: WorkflowHandle, pred: (s: CanaryStatus) => boolean, timeoutMs = 60_000): Promise<CanaryStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await handle.query(canaryStatusQuery);
    if (pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`canary status never matched; last: ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

export async function waitForApproval(handle: WorkflowHandle, step?: string, timeoutMs = 60_000): Promise<PendingApproval> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await handle.query(pendingApprovalQuery);
    if (p && (!step || p.step === step)) return p;
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING') throw new Error(`run ended (${d.status.name}) while waiting for approval ${step ?? ''}`);
    if (Date.now() > deadline) throw new Error(`no approval ${step ?? ''} became pending`);
    await sleep(100);
  }
}

/** The innermost failure message: what `runbook status` and the UI show as the reason. */
export function rootCause(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}
