/**
 * Incident benchmarks, printed as tables. Not part of `npm test`.
 *   npx tsx bench/incident.ts
 * Starts its own Temporal dev server (in memory) unless TEMPORAL_ADDRESS is set, and a
 * real Alertmanager. Measures: Alertmanager webhook -> incident open -> first page, and
 * how late escalation timers fire.
 */
import { stringify } from 'yaml';
import { startIntake } from '../client/incident/intake.js';
import { incidentQuery, resolvedUpdate } from '../common/incident/messages.js';
import { parseConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { startAlertmanager } from '../tests/fixtures/alertmanager.js';
import { startWebhookReceiver } from '../tests/fixtures/webhook-receiver.js';
import { bundleRunbookWorkflows, createRunbookWorker, installRuntime } from '../worker/main.js';
import { quietLogger as quiet, stats, table } from './report.js';
import { benchTemporal } from './temporal.js';

const logger = createLogger({ component: 'bench' }, 'warn');

async function main(): Promise<void> {
  installRuntime({ logger });
  const temporal = await benchTemporal(logger);
  const { address, namespace, client, native } = temporal;
  const receiver = await startWebhookReceiver();
  const taskQueue = `bench-incident-${Date.now()}`;
  const responseSeconds = 3;
  const config = parseConfig(
    stringify({
      environment: 'bench',
      services: [{ name: 'api', driver: { type: 'command', status: ['true'] } }],
      incident: {
        severities: { P0: { response: responseSeconds }, P1: { response: 600 }, P2: { response: 600 }, P3: { response: 600 } },
        ackTimeout: 600,
        escalation: { l3After: 600, l4After: 1200 },
        postmortem: { requiredFor: [] },
        webhooks: [{ name: 'pager', kind: 'json', url: '${BENCH_PAGER_URL}', events: ['page', 'escalation'] }],
      },
    }),
    'bench.yaml',
  );
  const { worker } = await createRunbookWorker({
    loaded: { config, path: 'bench.yaml', dir: process.cwd() },
    settings: { address, namespace, taskQueue },
    connection: native,
    logger,
    env: { ...process.env, BENCH_PAGER_URL: `${receiver.url}/pager` },
    workflowBundle: await bundleRunbookWorkflows({ logger: quiet }),
  });
  const secret = 'bench-secret';
  const intake = await startIntake({ client, taskQueue, config, secret, logger });
  const alertmanager = await startAlertmanager({ webhookUrl: `${intake.url}/alertmanager`, bearer: secret, groupWait: '0s', groupInterval: '1s' });

  await worker.runUntil(async () => {
    // 1. Alertmanager -> intake -> incident open -> first page.
    const n = 10;
    const toOpen: number[] = [];
    const toPage: number[] = [];
    const amToPage: number[] = [];
    for (let i = 0; i < n; i++) {
      const alertname = `BenchAlert${i}-${Date.now()}`;
      const t0 = Date.now();
      await alertmanager.pushAlerts([{ labels: { alertname, severity: 'critical' } }]);
      const page = await receiver.waitFor((r) => r.body.event === 'page' && String(r.body.title) === alertname, 30_000);
      const id = String(page.body.incidentId);
      const handle = client.workflow.getHandle(id);
      const d = await handle.describe();
      const startedAt = d.startTime.getTime();
      // Intake's POST is not observable from here; the run's start time is when the intake's signal-with-start landed.
      toOpen.push(startedAt - t0);
      toPage.push(page.at - startedAt);
      amToPage.push(page.at - t0);
      await handle.executeUpdate(resolvedUpdate, { args: [{ by: 'bench' }] });
    }
    table('Alert to page (real Alertmanager, group_wait 0s; local Temporal dev server)', [
      stats('alert pushed -> incident run started', toOpen),
      stats('incident run started -> primary paged (webhook received)', toPage),
      stats('alert pushed -> primary paged', amToPage),
    ]);

    // 2. Escalation timer accuracy: P0 not resolved within the response time -> L2.
    const m = 10;
    const late: number[] = [];
    const runs = await Promise.all(
      Array.from({ length: m }, (_, i) =>
        client.workflow.start('incident', { taskQueue, workflowId: `bench-esc-${Date.now()}-${i}`, args: [{ title: `Bench escalation ${i}`, severity: 'P0', requestedBy: 'bench' }] }),
      ),
    );
    for (const h of runs) {
      const esc = await receiver.waitFor((r) => r.body.event === 'escalation' && r.body.incidentId === h.workflowId, 30_000);
      const declared = Date.parse((await h.query(incidentQuery)).declaredAt);
      late.push(esc.at - (declared + responseSeconds * 1000));
      await h.executeUpdate(resolvedUpdate, { args: [{ by: 'bench' }] });
    }
    table(`Escalation timer lateness (${m} concurrent P0 incidents, L2 due ${responseSeconds}s after declaration; lateness = webhook received - due)`, [stats('L2 escalation webhook lateness', late)]);
  });
  await alertmanager.stop();
  await intake.close();
  await receiver.close();
  await temporal.close();
}

await main();
