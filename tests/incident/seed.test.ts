import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { incidentWorkflowId, startIntake, type IntakeServer } from '../../client/incident/intake.js';
import type { Handoff } from '../../client/incident/handoff.js';
import { incidentQuery, postmortemCompleteUpdate, resolvedUpdate, timelineQuery } from '../../common/incident/messages.js';
import type { IncidentResult, TimelineEvent } from '../../common/incident/types.js';
import { startDemoService, type DemoService } from '../../demo/service.js';
import type { LoadedConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { startPrometheus, type PrometheusServer } from '../fixtures/prometheus.js';
import { freePort } from '../fixtures/servers.js';
import { startWebhookReceiver, type Received, type WebhookReceiver } from '../fixtures/webhook-receiver.js';
import { recordHistory, temporalAddress, temporalNamespace, testClient, uniqueQueue, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { incidentTestConfig, PAGER_TOKEN_PATH, webhookEnv } from './helpers.js';

/**
 * The incident runbook against AlphaPulse 1.1-1.4, 6 and 7.2: who is paged at once, the
 * P2/P3 ticket, the verification before "resolved" (real Prometheus scraping the demo API),
 * the watch after a P1 resolves, and the shift handoff. One worker task queue for the file,
 * so runs of one test still answer in the next.
 */

const TICKET_PATH = '/tickets/create';
const HANDOFF_PATH = '/handoff/hook-77';
const TICKET_TOKEN = 'ticket-token-a1b2c3';
const SECRET = 'seed-intake-secret';
// Short windows so a changed error rate shows within seconds (Prometheus scrapes every second).
const ERROR_RATE = 'sum(rate(http_requests_total{code=~"5.."}[4s])) / sum(rate(http_requests_total[4s]))';

let receiver: WebhookReceiver;
let api: DemoService;
let prometheus: PrometheusServer;
let loaded: LoadedConfig;
let intake: IntakeServer;
let env: NodeJS.ProcessEnv;
let traffic: NodeJS.Timeout | undefined;
const taskQueue = uniqueQueue('seed');

beforeAll(async () => {
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  [receiver, api] = await Promise.all([startWebhookReceiver(), startDemoService({ httpPort, grpcPort, errorRate: 0.3 })]);
  prometheus = await startPrometheus({ targets: [`127.0.0.1:${httpPort}`] });
  // Steady traffic, so the error ratio always has requests to divide by.
  traffic = setInterval(() => {
    for (let i = 0; i < 10; i++) void fetch(`${api.httpUrl}/`).then((r) => r.text(), () => '');
  }, 100);
  receiver.answer(TICKET_PATH, { id: '10042', key: 'OPS-42', self: 'https://tracker.example/rest/api/2/issue/10042', url: 'https://tracker.example/browse/OPS-42' });
  loaded = await writeConfig(
    incidentTestConfig(
      {
        severities: { P0: { response: 30 }, P1: { response: 30, watch: 6 }, P2: { response: 2 }, P3: { response: 2 } },
        ackTimeout: 30,
        escalation: { l3After: 40, l4After: 50, contacts: { L2: ['tess-techlead'], L3: ['lee-leadership'], L4: ['cara-cto'], security: ['sam-security'] } },
        postmortem: { requiredFor: ['P0'], due: 3600, meetingWithin: 7200, reminderEvery: 600 },
        ticket: { url: '${TEST_TICKET_URL}', token: '${TEST_TICKET_TOKEN}' },
        prometheusUrl: prometheus.url,
        verification: { errorRateQuery: ERROR_RATE },
        webhooks: [
          { name: 'incidents-channel', kind: 'slack', url: '${TEST_SLACK_URL}', events: ['channel', 'status', 'stakeholder', 'postmortem'] },
          { name: 'pager', kind: 'json', url: '${TEST_PAGER_URL}', events: ['page', 'escalation'] },
          { name: 'handoff', kind: 'json', url: '${TEST_HANDOFF_URL}', events: ['handoff'] },
        ],
      },
      { services: [{ name: 'api', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'http', url: `${api.httpUrl}/healthz` }] }] },
    ),
  );
  env = {
    ...webhookEnv(receiver),
    TEST_TICKET_URL: `${receiver.url}${TICKET_PATH}`,
    TEST_TICKET_TOKEN: TICKET_TOKEN,
    TEST_HANDOFF_URL: `${receiver.url}${HANDOFF_PATH}`,
  };
  intake = await startIntake({ client: await testClient(), taskQueue, config: loaded.config, secret: SECRET, logger: createLogger({}, 'warn') });
}, 60_000);

afterAll(async () => {
  if (traffic) clearInterval(traffic);
  await intake?.close();
  await Promise.all([prometheus?.stop(), api?.stop(), receiver?.close()]);
});

/** The real `runbook` command, as the on-call types it. */
function runbook(...args: string[]) {
  return execa(process.execPath, ['bin/runbook.mjs', ...args], {
    reject: false,
    env: { ...env, TEMPORAL_ADDRESS: temporalAddress(), TEMPORAL_NAMESPACE: temporalNamespace(), RUNBOOK_TASK_QUEUE: taskQueue, RUNBOOK_CONFIG: loaded.path, RUNBOOK_USER: 'carol' },
  });
}

async function alert(groupKey: string, labels: Record<string, string>, summary: string): Promise<{ workflowId: string; action: string }> {
  const res = await fetch(`${intake.url}/alertmanager`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({ version: '4', groupKey, status: 'firing', commonLabels: labels, commonAnnotations: { summary }, alerts: [{ status: 'firing', labels }] }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { workflowId: string; action: string };
}

const of = (workflowId: string) => (r: Received) => JSON.stringify(r.body).includes(workflowId);
const escalations = (workflowId: string) => receiver.received.filter((r) => r.path === PAGER_TOKEN_PATH && r.body.event === 'escalation' && of(workflowId)(r));

async function waitForTimeline(workflowId: string, pred: (e: TimelineEvent) => boolean): Promise<TimelineEvent> {
  const client = await testClient();
  for (let i = 0; i < 200; i++) {
    const hit = (await client.workflow.getHandle(workflowId).query(timelineQuery)).find(pred);
    if (hit) return hit;
    await sleep(100);
  }
  throw new Error(`no such timeline event in ${workflowId}`);
}

/** The error ratio Prometheus answers now, for the query the verification uses. */
async function errorRatio(): Promise<number | null> {
  const body = (await (await fetch(`${prometheus.url}/api/v1/query?query=${encodeURIComponent(ERROR_RATE)}`)).json()) as { data: { result: Array<{ value: [number, string] }> } };
  const v = body.data.result[0]?.value[1];
  return v === undefined || !Number.isFinite(Number(v)) ? null : Number(v);
}

const p0Id = `seed-p0-${Date.now()}`;
const p2Id = `seed-p2-${Date.now()}`;

describe('incident escalation, tickets, verification, watch and handoff (AlphaPulse 1, 6, 7.2)', () => {
  it('P0: the CTO, the tech lead and the security lead are paged at once; resolve stays open while the error rate is high; --force needs a reason', async () => {
    await withWorker(
      loaded,
      async ({ client }) => {
        // A fresh Prometheus: wait for the scrapes that give the error ratio a value (30 % of requests fail).
        for (let i = 0; i < 100 && !((await errorRatio()) ?? 0); i++) await sleep(200);
        const handle = await client.workflow.start('incident', { taskQueue, workflowId: p0Id, args: [{ title: 'API down', severity: 'P0', service: 'api', requestedBy: 'alertmanager' }] });
        const page = await receiver.waitFor((r) => r.path === PAGER_TOKEN_PATH && r.body.event === 'page' && of(p0Id)(r));
        const now = await receiver.waitFor((r) => r.path === PAGER_TOKEN_PATH && r.body.escalationLevel === 'immediate' && of(p0Id)(r));
        const declaredAt = Date.parse((await handle.query(incidentQuery)).declaredAt);
        expect(now.at - declaredAt).toBeLessThan(3000);
        expect(now.at - page.at).toBeLessThan(2000);
        expect(new Set(now.body.to as string[])).toEqual(new Set(['cara-cto', 'tess-techlead', 'sam-security']));
        expect(String(now.body.text)).toMatch(/CTO cara-cto; Tech Lead tess-techlead; Security Lead sam-security/);
        const tl = await handle.query(timelineQuery);
        expect(tl.map((e) => e.kind).slice(0, 3)).toEqual(['declared', 'paged', 'escalated']);
        expect(tl[2]!.text).toMatch(/^Escalated at once to CTO cara-cto; Tech Lead tess-techlead; Security Lead sam-security: P0 escalates immediately \(AlphaPulse 1\.1\)/);
        // The ladder still runs on its timers: nothing at L2 yet (response time 30 s).
        expect((await handle.query(incidentQuery)).level).toBe('L1');

        // 30 % of requests fail: the verification keeps it open and says why.
        const refused = await runbook('incident', 'resolve', p0Id, '--as', 'bob', '--summary', 'Rolled back');
        expect(refused.exitCode).toBe(1);
        expect(refused.stdout).toMatch(/is open, P0/);
        expect(refused.stderr).toMatch(/not resolved: error rate: \d+(\.\d+)?% not below 0\.1% \(sum\(rate/);
        const state = await handle.query(incidentQuery);
        expect(state.status).toBe('open');
        expect(state.verification).toMatchObject({ ok: false, checks: [{ check: 'smoke checks', ok: true, detail: '1 probes of service api healthy' }, { check: 'error rate', ok: false }] });
        const kept = (await handle.query(timelineQuery)).filter((e) => e.kind === 'verification').at(-1)!;
        expect(kept.text).toMatch(/^Not resolved, the incident stays open: error rate: .* not below 0\.1%/);

        const noReason = await runbook('incident', 'resolve', p0Id, '--as', 'bob', '--force');
        expect(noReason.exitCode).toBe(1);
        expect(noReason.stderr.trim()).toBe('runbook: --force needs --reason "<why the verification is skipped>"');
        expect(await handle.executeUpdate(resolvedUpdate, { args: [{ by: 'bob', force: true }] }).catch((e: Error & { cause?: Error }) => e.cause?.message)).toMatch(
          /"reason" is required with force/,
        );
        const forced = await runbook('incident', 'resolve', p0Id, '--as', 'bob', '--force', '--reason', 'errors are the batch importer retrying, not customers');
        expect(forced.exitCode).toBe(0);
        expect(forced.stdout).toMatch(/is resolved/);
        const f = (await handle.query(timelineQuery)).filter((e) => e.kind === 'verification').at(-1)!;
        expect(f).toMatchObject({ by: 'bob', text: 'Resolved by bob without verification (force): errors are the batch importer retrying, not customers' });
      },
      { env, taskQueue },
    );
  }, 30_000);

  it('a data breach escalates by the matrix whatever the severity: an alert labelled security=major, and the input flag', async () => {
    await withWorker(
      loaded,
      async ({ client }) => {
        const major = await alert('{}:{alertname="UnusualExport"}', { alertname: 'UnusualExport', severity: 'info', security: 'major', service: 'exports' }, 'tenant data exported');
        const flagged = `seed-breach-${Date.now()}`;
        await client.workflow.start('incident', { taskQueue, workflowId: flagged, args: [{ title: 'Leaked API key', severity: 'P2', dataBreach: 'breach', requestedBy: 'dana' }] });
        for (const [id, level, who] of [[major.workflowId, 'L3', 'lee-leadership'], [major.workflowId, 'L4', 'cara-cto'], [flagged, 'L3', 'lee-leadership']] as const) {
          const esc = await receiver.waitFor((r) => r.body.escalationLevel === level && of(id)(r));
          expect(esc.body.to).toEqual([who]);
          expect(String(esc.body.text)).toMatch(/data breach \(AlphaPulse 6\.1\)/);
        }
        for (const id of [major.workflowId, flagged]) {
          const sec = await receiver.waitFor((r) => r.body.escalationLevel === 'immediate' && of(id)(r));
          expect(sec.body.to).toEqual(['sam-security']);
        }
        const majorState = await client.workflow.getHandle(major.workflowId).query(incidentQuery);
        expect(majorState).toMatchObject({ severity: 'P3', level: 'L4', dataBreach: 'major' });
        expect(await client.workflow.getHandle(flagged).query(incidentQuery)).toMatchObject({ severity: 'P2', level: 'L3', dataBreach: 'breach' });
        // A breach below major does not reach the CTO.
        expect(escalations(flagged).some((r) => r.body.escalationLevel === 'L4')).toBe(false);
        for (const id of [major.workflowId, flagged]) await client.workflow.getHandle(id).executeUpdate(resolvedUpdate, { args: [{ by: 'dana', summary: 'key rotated' }] });
      },
      { env, taskQueue },
    );
  }, 30_000);

  it('P2: a ticket with the summary as Jira/Linear-style JSON, where it landed in the timeline; no tech lead past the response time', async () => {
    await withWorker(
      loaded,
      async ({ client }) => {
        const handle = await client.workflow.start('incident', {
          taskQueue,
          workflowId: p2Id,
          args: [{ title: 'Cache miss rate high', severity: 'P2', service: 'api', summary: 'Hit rate 60 % since 09:00', requestedBy: 'carol' }],
        });
        const ticket = await receiver.waitFor((r) => r.path === TICKET_PATH && r.body.incidentId === p2Id);
        expect(ticket.headers.authorization).toBe(`Bearer ${TICKET_TOKEN}`);
        expect(ticket.headers['idempotency-key']).toBe(p2Id);
        expect(ticket.body).toMatchObject({ title: '[P2] Cache miss rate high', priority: 'Medium', severity: 'P2', labels: ['incident', 'P2', 'service:api', 'env:test'] });
        expect(String(ticket.body.description)).toMatch(/^Hit rate 60 % since 09:00\n\nSeverity: P2 \(respond within 2 s\)\nService: api\n/);
        const created = await waitForTimeline(p2Id, (e) => e.kind === 'ticket');
        expect(created.text).toBe('Ticket created: OPS-42 https://tracker.example/browse/OPS-42');
        expect((await handle.query(incidentQuery)).ticket).toEqual({ key: 'OPS-42', url: 'https://tracker.example/browse/OPS-42', status: 200 });
        // Past its 2 s response time a P2 stays with the team (AlphaPulse 1.1): no L2.
        await sleep(3000);
        expect(escalations(p2Id)).toEqual([]);
        expect((await handle.query(incidentQuery)).level).toBe('L1');
        // The token is the worker's: it is not in the run's history.
        expect(JSON.stringify(await handle.fetchHistory())).not.toContain(TICKET_TOKEN);
      },
      { env, taskQueue },
    );
  }, 30_000);

  it('P1: verified when the error rate is back under 0.1 %; the alert firing again within the watch re-opens it; a quiet watch closes it', async () => {
    await fetch(`${api.httpUrl}/admin/state`, { method: 'POST', body: JSON.stringify({ errorRate: 0 }) });
    for (let i = 0; i < 100 && (await errorRatio()) !== 0; i++) await sleep(200);
    expect(await errorRatio()).toBe(0);
    await withWorker(
      loaded,
      async ({ client }) => {
        const first = await alert('{}:{alertname="HighErrorRate"}', { alertname: 'HighErrorRate', severity: 'high', service: 'api' }, 'error rate above 0.5 %');
        expect(first.workflowId).toBe(incidentWorkflowId('test', '{}:{alertname="HighErrorRate"}'));
        const handle = client.workflow.getHandle(first.workflowId);
        await receiver.waitFor((r) => r.body.event === 'page' && of(first.workflowId)(r));
        const resolved = await handle.executeUpdate(resolvedUpdate, { args: [{ by: 'alice', summary: 'Scaled the pool' }] });
        expect(resolved.status).toBe('resolved');
        expect(resolved.verification).toMatchObject({ ok: true, checks: [{ check: 'smoke checks', ok: true }, { check: 'error rate', ok: true, detail: expect.stringMatching(/^0% below 0\.1%/) }] });
        const watching = await waitForTimeline(first.workflowId, (e) => e.kind === 'watch');
        expect(watching.text).toMatch(/^Watching for 6 s after resolution/);
        const resolvedAt = Date.parse(resolved.resolvedAt!);

        // The intake finds the watched incident through visibility, which a loaded server updates a moment after the run.
        const visible = async () => {
          for await (const w of client.workflow.list({ query: `WorkflowId = "${first.workflowId}"` })) return !!(w.memo?.incidentWatch as { service?: string } | null)?.service;
          return false;
        };
        for (let i = 0; i < 40 && !(await visible()); i++) await sleep(100);
        // Another alert group for the same service, within the watch: the same incident opens again.
        const again = await alert('{}:{alertname="HighLatency"}', { alertname: 'HighLatency', severity: 'high', service: 'api' }, 'p99 above 500 ms');
        expect(again).toMatchObject({ workflowId: first.workflowId, action: 'reopened' });
        const reopened = await waitForTimeline(first.workflowId, (e) => e.kind === 'reopened');
        expect(Date.parse(reopened.at) - resolvedAt).toBeLessThan(6000);
        expect(reopened.text).toBe('Re-opened (#1): the alert fired again within the watch: p99 above 500 ms');
        expect((await handle.query(incidentQuery)).status).toBe('open');
        await receiver.waitFor((r) => r.body.event === 'page' && String(r.body.text).includes('re-opened') && of(first.workflowId)(r));
        const l2 = await receiver.waitFor((r) => r.body.escalationLevel === 'L2' && of(first.workflowId)(r));
        expect(l2.body.to).toEqual(['tess-techlead']);

        // Resolved again; six quiet seconds close it.
        await handle.executeUpdate(resolvedUpdate, { args: [{ by: 'alice', summary: 'Scaled the pool and the cache' }] });
        const result = (await handle.result()) as IncidentResult;
        const closed = result.timeline.filter((e) => e.kind === 'watch').at(-1)!;
        expect(closed.text).toBe('No recurrence within 6 s of the resolution; the incident is closed');
        expect(Date.parse(closed.at) - Date.parse(result.state.resolvedAt!)).toBeGreaterThanOrEqual(5900);
        expect(result.state).toMatchObject({ status: 'resolved', reopened: 1 });
        expect(result.progress.steps.map((s) => s.id)).toEqual(['plan', 'declare', 'respond', 'watch', 'postmortem']);
        await recordHistory(client, first.workflowId, 'incident-watch-reopened');
      },
      { env, taskQueue },
    );
  }, 40_000);

  it('oncall handoff: open incidents and pending postmortems from Temporal visibility, the next shift, posted to the handoff webhook', async () => {
    await withWorker(
      loaded,
      async ({ client }) => {
        const out = await runbook('oncall', 'handoff', '--json');
        expect(out.stderr).toBe('');
        expect(out.exitCode).toBe(0);
        const h = JSON.parse(out.stdout) as Handoff;
        expect(h.openIncidents.find((i) => i.workflowId === p2Id)).toMatchObject({ title: 'Cache miss rate high', severity: 'P2', status: 'open' });
        expect(h.pendingPostmortems.find((i) => i.workflowId === p0Id)).toMatchObject({ title: 'API down', severity: 'P0', status: 'resolved' });
        expect(h.openIncidents.some((i) => i.workflowId === p0Id)).toBe(false);
        expect(h.oncall?.next).toMatchObject({ primary: expect.any(String), secondary: expect.any(String) });
        expect(h.posted).toEqual([{ webhook: 'handoff', status: 200 }]);
        const posted = await receiver.waitFor((r) => r.path === HANDOFF_PATH && r.body.event === 'handoff');
        expect(String(posted.body.text)).toMatch(/^On-call handoff /);
        expect(posted.body.openIncidents as string[]).toEqual(expect.arrayContaining([expect.stringContaining(`[P2] Cache miss rate high — open, L1, not acknowledged`)]));
        expect(posted.body.pendingPostmortems as string[]).toEqual(expect.arrayContaining([expect.stringContaining(p0Id)]));
        expect(posted.body.nextPrimary).toBe(h.oncall!.next.primary);

        const text = await runbook('oncall', 'handoff', '--no-post');
        expect(text.stdout).toMatch(/Next shift: primary \w+, secondary \w+/);
        expect(text.stdout).toMatch(/Pending postmortems: \d+\n( .*\n)*.*API down.*postmortem not complete/);

        await client.workflow.getHandle(p2Id).executeUpdate(resolvedUpdate, { args: [{ by: 'carol' }] });
        await client.workflow.getHandle(p0Id).executeUpdate(postmortemCompleteUpdate, { args: [{ by: 'bob' }] });
        await Promise.all([client.workflow.getHandle(p2Id).result(), client.workflow.getHandle(p0Id).result()]);
        await recordHistory(client, p0Id, 'incident-p0-verification-forced');
        await recordHistory(client, p2Id, 'incident-p2-ticket');
      },
      { env, taskQueue },
    );
  }, 30_000);
});
