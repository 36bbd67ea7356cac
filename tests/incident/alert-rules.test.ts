import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { incidentQuery } from '../../common/incident/messages.js';
import { THRESHOLDS } from '../../common/thresholds.js';
import { startIntake, type IntakeServer } from '../../client/incident/intake.js';
import type { PrometheusRuleFile } from '../../client/alerts.js';
import { startDemoService, type DemoService } from '../../demo/service.js';
import type { LoadedConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { startAlertmanager, type AlertmanagerServer } from '../fixtures/alertmanager.js';
import { startPrometheus, type PrometheusServer } from '../fixtures/prometheus.js';
import { freePort } from '../fixtures/servers.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fixtures/webhook-receiver.js';
import { testClient, uniqueQueue, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { incidentTestConfig, webhookEnv } from './helpers.js';

/**
 * The whole loop: `runbook alerts export` writes the threshold table as rules, a real Prometheus
 * loads them and scrapes the demo API, the API's error rate is pushed over Fulcrum 2.3's 20 %,
 * the rule fires after its `for` (2 s here, from thresholds.forSeconds), a real Alertmanager
 * delivers it to the intake, and the incident opens as P0.
 */

const SECRET = 'alert-rules-secret-7c1d';
let dir: string;
let loaded: LoadedConfig;
let api: DemoService;
let receiver: WebhookReceiver;
let intake: IntakeServer;
let alertmanager: AlertmanagerServer;
let prometheus: PrometheusServer | undefined;
let rulesFile: string;
const taskQueue = uniqueQueue('alert-rules');
let trafficOn = true;

async function traffic(): Promise<void> {
  while (trafficOn) {
    await Promise.all(Array.from({ length: 10 }, () => fetch(`${api.httpUrl}/`).then((r) => r.text(), () => '')));
    await sleep(100);
  }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-alert-rules-'));
  [receiver, api] = await Promise.all([startWebhookReceiver(), startDemoService({ httpPort: await freePort(), grpcPort: await freePort() })]);
  loaded = await writeConfig(
    incidentTestConfig(
      { severities: { P0: { response: 60 }, P1: { response: 60 }, P2: { response: 60 }, P3: { response: 60 } }, ackTimeout: 60 },
      {
        thresholds: { forSeconds: { 'error-rate-critical': 2 } },
        alerts: { rateWindow: '10s', labels: { service: 'api' } },
      },
    ),
    dir,
  );
  intake = await startIntake({ client: await testClient(), taskQueue, config: loaded.config, secret: SECRET, logger: createLogger({}, 'warn') });
  alertmanager = await startAlertmanager({ webhookUrl: `${intake.url}/alertmanager`, bearer: SECRET });
  rulesFile = path.join(dir, 'rules.yml');
}, 60_000);

afterAll(async () => {
  trafficOn = false;
  await prometheus?.stop();
  await alertmanager?.stop();
  await intake?.close();
  await Promise.all([receiver?.close(), api?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

describe('runbook alerts export', () => {
  it('writes every row of the threshold table as a rule with its duration, severity label, seed and procedure; promtool accepts it', async () => {
    const out = await execa(process.execPath, ['bin/runbook.mjs', 'alerts', 'export', '--config', loaded.path, '--out', rulesFile], { reject: false });
    expect(out.exitCode, out.stderr).toBe(0);
    expect(out.stderr).toMatch(/17 rules written to /);
    const file = parse(await readFile(rulesFile, 'utf8')) as PrometheusRuleFile;
    const rules = Object.fromEntries(file.groups[0]!.rules.map((r) => [r.alert, r]));
    expect(Object.keys(rules)).toHaveLength(THRESHOLDS.length);
    expect(rules.ErrorRateCritical).toMatchObject({
      expr: '(100 * sum(rate(http_requests_total{code=~"5.."}[10s])) / sum(rate(http_requests_total[10s]))) > 20',
      for: '2s',
      labels: { severity: 'critical', priority: 'P0', threshold: 'error-rate-critical', service: 'api' },
      annotations: { seed: 'Fulcrum 2.3', runbook: 'runbook run service-error-triage' },
    });
    // The seed's durations where the config does not shorten them; none where the seed gives none.
    expect(rules.ErrorRateHigh).toMatchObject({ for: '5m', labels: { severity: 'high', priority: 'P1' } });
    expect(rules.ApiErrorRateHigh).toMatchObject({ for: '2m', expr: expect.stringMatching(/\) > 0\.5$/), annotations: { seed: 'AlphaPulse 4.2' } });
    expect(rules.MemoryUsageHigh).toMatchObject({ for: '10m', annotations: { seed: 'Fulcrum 2.3' } });
    expect(rules.RedisMemoryHigh).toMatchObject({ labels: { severity: 'warning', priority: 'P2' }, annotations: { seed: 'AlphaPulse 4.2', runbook: 'runbook run redis-triage' } });
    expect(rules.RedisMemoryHigh!.for).toBeUndefined();
    expect(rules.LongRunningQuery).toMatchObject({ expr: expect.stringMatching(/ > 1000$/), annotations: { seed: 'AlphaPulse 2.1' } });

    const promtool = await execa('promtool', ['check', 'rules', rulesFile], { reject: false }).catch(() => undefined);
    if (promtool && promtool.exitCode !== undefined && !/ENOENT/.test(String(promtool.stderr))) {
      expect(promtool.exitCode, promtool.stderr + promtool.stdout).toBe(0);
      expect(promtool.stdout).toMatch(/SUCCESS: 17 rules found/);
    }
  }, 30_000);

  it('a real Prometheus fires the exported rule when the error rate crosses 20 %, Alertmanager delivers it, and the incident opens as P0', async () => {
    prometheus = await startPrometheus({ targets: [new URL(api.httpUrl).host], ruleFiles: [rulesFile], alertmanagerUrl: alertmanager.url });
    void traffic();
    await withWorker(
      loaded,
      async ({ client }) => {
        // Healthy traffic first: the rule is loaded, evaluates without error and stays inactive.
        let rule: { health: string; state: string; lastEvaluation: string } | undefined;
        for (let i = 0; i < 100; i++) {
          const body = (await (await fetch(`${prometheus!.url}/api/v1/rules?type=alert`)).json()) as { data: { groups: Array<{ rules: Array<{ name: string; health: string; state: string; lastEvaluation: string }> }> } };
          const all = body.data.groups.flatMap((g) => g.rules);
          rule = all.find((r) => r.name === 'ErrorRateCritical');
          if (rule && rule.health === 'ok' && !rule.lastEvaluation.startsWith('0001')) break;
          await sleep(200);
        }
        expect(rule).toMatchObject({ health: 'ok', state: 'inactive' });
        await sleep(2000);
        expect(receiver.received.filter((r) => r.body.event === 'page')).toHaveLength(0);

        const flipped = Date.now();
        const res = await fetch(`${api.httpUrl}/admin/state`, { method: 'POST', body: JSON.stringify({ errorRate: 0.3 }) });
        expect(res.status).toBe(200);

        const page = await receiver.waitFor((r) => r.body.event === 'page' && String(r.body.title).startsWith('ErrorRateCritical'), 40_000);
        // Not before the rule's 2 s `for` after the flip.
        expect(page.at - flipped).toBeGreaterThan(2000);
        const handle = client.workflow.getHandle(String(page.body.incidentId));
        const state = await handle.query(incidentQuery);
        expect(state).toMatchObject({ severity: 'P0', title: 'ErrorRateCritical on api' });
        expect(page.body).toMatchObject({ severity: 'P0' });
        // The warning rows (5 min, 2 min) are still pending: they opened nothing.
        expect(receiver.received.filter((r) => r.body.event === 'page' && /^(ErrorRateHigh|ApiErrorRateHigh)/.test(String(r.body.title)))).toHaveLength(0);
        await handle.terminate('test done');
      },
      { env: webhookEnv(receiver), taskQueue },
    );
  }, 60_000);
});
