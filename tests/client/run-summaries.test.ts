import { setTimeout as sleep } from 'node:timers/promises';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { decodeOptionalSinglePayload } from '@temporalio/common/lib/internal-non-workflow/index.js';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applySchedules, scheduleId, triggerSchedule } from '../../client/database/schedules.js';
import { handleAlert } from '../../client/incident/intake.js';
import { activitySummary, MAX_DETAILS_CHARS, MAX_SUMMARY_CHARS, runMetadata } from '../../common/summaries.js';
import type { LoadedConfig } from '../../lib/config.js';
import { runbookCli, testClient, withWorker, writeConfig } from '../fixtures/runbook-worker.js';

/**
 * What the Temporal UI shows of a run: the Summary and Details panels every start path fills
 * (`runbook run`, a schedule, the alert intake, a child run), and a summary on each activity
 * of the Event History, read back from the dev server as the UI reads them.
 */

const EventType = temporal.api.enums.v1.EventType;
const env = `summaries-${Date.now().toString(36)}`;
let loaded: LoadedConfig;
let client: Client;

beforeAll(async () => {
  client = await testClient();
  loaded = await writeConfig({
    environment: env,
    services: [{ name: 'api', group: 'apps', driver: { type: 'command', status: ['true'], restart: ['true'] } }],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    databaseOps: { schedules: [{ id: 'restart-api', procedure: 'service-restart', everySeconds: 86_400, paused: true, input: { service: 'api' } }] },
    incident: {
      severities: { P0: { response: 600 }, P1: { response: 600 }, P2: { response: 600 }, P3: { response: 600 } },
      ackTimeout: 600,
      intake: { alertToTriage: [{ match: { alertname: 'ApiErrors' }, procedure: 'service-error-triage', input: { service: 'api' } }] },
    },
  });
});

afterAll(async () => {
  await client?.schedule.getHandle(scheduleId(env, 'restart-api')).delete().catch(() => undefined);
});

async function summaryAndDetails(workflowId: string): Promise<{ summary?: string; details?: string }> {
  const desc = await client.workflow.getHandle(workflowId).describe();
  return { summary: await desc.staticSummary(), details: await desc.staticDetails() };
}

/** The summaries of a run's ActivityTaskScheduled events, decoded with the client's data converter (they are encrypted like any payload). */
async function activitySummaries(workflowId: string): Promise<string[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const out: string[] = [];
  for (const e of history.events ?? []) {
    if (e.eventType !== EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) continue;
    out.push((await decodeOptionalSinglePayload<string>(client.options.loadedDataConverter, e.userMetadata?.summary)) ?? '(none)');
  }
  return out;
}

async function waitForRun(workflowId: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await client.workflow.getHandle(workflowId).describe();
      return;
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError) || Date.now() > deadline) throw err;
      await sleep(200);
    }
  }
}

describe('run summaries: the builder', () => {
  it('names the procedure, its variant, the target and who asked; the details list the input fields', () => {
    expect(runMetadata({ procedure: 'stack-stop', input: { clean: true, requestedBy: 'alice' }, environment: 'demo' })).toEqual({
      staticSummary: 'stack-stop clean of demo, requested by alice',
      staticDetails: '**stack-stop** requested by `alice` in environment `demo`\n\n- `clean`: `true`',
    });
    expect(runMetadata({ procedure: 'db-backup', input: { database: 'main' }, environment: 'prod', requestedBy: 'schedule:daily' }).staticSummary).toBe(
      'db-backup of database main in prod, requested by schedule:daily',
    );
    expect(runMetadata({ procedure: 'health-check', input: {} }).staticSummary).toBe('health-check, requested by unknown');
    expect(activitySummary('serviceAction', [{ service: 'api', action: 'stop' }])).toBe('serviceAction stop api');
    expect(activitySummary('dumpDatabase', [{ database: 'main', id: '20261130T000000Z-ab12', workflowId: 'x' }])).toBe('dumpDatabase main');
    expect(activitySummary('waitHealthy', [{ services: ['api', 'worker'], timeoutSeconds: 60 }])).toBe('waitHealthy api, worker');
    expect(activitySummary('incidentPlan', [])).toBe('incidentPlan');
  });

  it('stays one bounded line and a bounded list, whatever the input holds', () => {
    const hostile = { title: `API down\n# heading ${'x'.repeat(5000)}`, service: 'a`pi', requestedBy: 'mallory', ...Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`f${i}`, 'y'.repeat(500)])) };
    const { staticSummary, staticDetails } = runMetadata({ procedure: 'incident', input: hostile });
    expect(staticSummary.length).toBeLessThanOrEqual(MAX_SUMMARY_CHARS);
    expect(staticSummary).not.toMatch(/\n/);
    expect(staticDetails.length).toBeLessThanOrEqual(MAX_DETAILS_CHARS);
    // Every value inside one code span: no line of the details starts with what the input wrote.
    for (const line of staticDetails.split('\n').slice(2)) expect(line).toMatch(/^- /);
    expect(staticDetails).not.toMatch(/a`pi/);
  });
});

describe('run summaries on the dev server', () => {
  it('runbook run: the summary names procedure, target and requester; the activity names its step', async () => {
    await withWorker(loaded, async ({ taskQueue }) => {
      const workflowId = `summaries-cli-${Date.now()}`;
      const cli = runbookCli({ RUNBOOK_TASK_QUEUE: taskQueue, RUNBOOK_CONFIG: loaded.path });
      const r = await cli('run', 'service-restart', '--input', '{"service": "api", "mode": "restart"}', '--as', 'alice', '--id', workflowId);
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
      await client.workflow.getHandle(workflowId).result();
      const { summary, details } = await summaryAndDetails(workflowId);
      expect(summary).toBe(`service-restart restart of service api in ${env}, requested by alice`);
      expect(details).toBe(`**service-restart** requested by \`alice\` in environment \`${env}\`\n\n- \`service\`: \`api\`\n- \`mode\`: \`restart\``);
      expect(await activitySummaries(workflowId)).toContain('serviceAction restart api');
    });
  }, 60_000);

  it('a schedule: its action carries the summary, and so does the run it starts', async () => {
    await withWorker(loaded, async ({ taskQueue }) => {
      await applySchedules(client, loaded.config, taskQueue);
      const action = (await client.schedule.getHandle(scheduleId(env, 'restart-api')).describe()).action;
      expect(action).toMatchObject({ staticSummary: `service-restart of service api in ${env}, requested by schedule:restart-api` });
      const { workflowId } = await triggerSchedule(client, loaded.config, 'restart-api');
      await waitForRun(workflowId);
      await client.workflow.getHandle(workflowId).result();
      const { summary, details } = await summaryAndDetails(workflowId);
      expect(summary).toBe(`service-restart of service api in ${env}, requested by schedule:restart-api`);
      expect(details).toContain('- `service`: `api`');
      expect(await activitySummaries(workflowId)).toContain('serviceAction restart api');
    });
  }, 60_000);

  it('the alert intake and a triage child: both runs say what they are and who asked', async () => {
    await withWorker(loaded, async ({ taskQueue }) => {
      const groupKey = `{}:{alertname="ApiErrors"}-${Date.now()}`;
      const outcome = await handleAlert(client, taskQueue, loaded.config, {
        version: '4',
        groupKey,
        status: 'firing',
        commonLabels: { alertname: 'ApiErrors', service: 'api', severity: 'high' },
        alerts: [{ status: 'firing', labels: { alertname: 'ApiErrors', service: 'api' } }],
      });
      expect(outcome).toMatchObject({ action: 'started-or-signalled', triage: 'service-error-triage' });
      const incident = client.workflow.getHandle(outcome.workflowId);
      try {
        const parent = await summaryAndDetails(outcome.workflowId);
        expect(parent.summary).toBe(`incident P1 "ApiErrors on api" of service api in ${env}, requested by alertmanager`);
        expect(parent.details).toContain('- `triage`: `service-error-triage`');

        const childId = `${outcome.workflowId}--service-error-triage`;
        await waitForRun(childId);
        const child = await summaryAndDetails(childId);
        expect(child.summary).toBe('service-error-triage of service api, requested by alertmanager');
        expect(child.details).toBe('**service-error-triage** requested by `alertmanager`\n\n- `service`: `api`');
        expect(await activitySummaries(outcome.workflowId)).toContain('incidentPlan');
      } finally {
        await incident.terminate('test done').catch(() => undefined);
        await client.workflow.getHandle(`${outcome.workflowId}--service-error-triage`).terminate('test done').catch(() => undefined);
      }
    });
  }, 60_000);
});
