import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { pendingApprovalQuery } from '../../common/messages.js';
import type { HealthCheckResult, PendingApproval } from '../../common/types.js';
import type { StackStopResult } from '../../common/stack/types.js';
import { isEncrypted } from '../../lib/codec/index.js';
import type { LoadedConfig } from '../../lib/config.js';
import { withWorker, workflowBundle, writeConfig } from '../fixtures/runbook-worker.js';
import { ARTIFACTS_DIR, dumpPage, launchChromium, screenshot } from './browser.js';

/**
 * The Temporal Web UI of the test dev server, driven in headless Chromium the way an operator
 * uses it: start a runbook from the Start Workflow form, find a run waiting for approval with
 * the `AwaitingApproval = true` filter, read its current details, approve it with Send a Signal.
 * Screenshots of each stage go to tests/artifacts/e2e/; a failing test also leaves the page's
 * screenshot and HTML there.
 */

const uiUrl = inject('temporalUiUrl');
const namespace = inject('temporalNamespace');
const nsUrl = () => `${uiUrl}/namespaces/${encodeURIComponent(namespace)}`;

let browser: Browser;
let context: BrowserContext;
let probeTarget: http.Server;
let stateDir: string;
let dataDir: string;
let stopMarker: string;
let loaded: LoadedConfig;

beforeAll(async () => {
  if (!uiUrl) throw new Error('the test dev server was started without its Web UI (tests/global-setup.ts must pass ui: true)');
  browser = await launchChromium();
  // Screenshots and failure dumps of this run only.
  await rm(ARTIFACTS_DIR, { recursive: true, force: true });
  // One context for the file: its cache keeps the UI's scripts across pages.
  context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  // What the health-check probes: a local HTTP server standing in for the service.
  probeTarget = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => probeTarget.listen(0, '127.0.0.1', resolve));
  const { port } = probeTarget.address() as AddressInfo;

  stateDir = await mkdtemp(path.join(tmpdir(), 'runbook-e2e-'));
  dataDir = path.join(stateDir, 'web-data');
  stopMarker = path.join(stateDir, 'web.stopped');
  await mkdir(dataDir);
  await writeFile(path.join(dataDir, 'records.db'), 'precious');
  const node = (code: string, arg: string) => [process.execPath, '-e', code, arg];
  loaded = await writeConfig({
    environment: 'e2e',
    services: [
      {
        name: 'web',
        group: 'apps',
        driver: {
          type: 'command',
          start: ['true'],
          stop: node("require('fs').writeFileSync(process.argv[1], 'stopped')", stopMarker),
          clean: node("require('fs').rmSync(process.argv[1], { recursive: true, force: true })", dataDir),
        },
        probes: [{ type: 'http', url: `http://127.0.0.1:${port}/`, bodyMatch: 'ok' }],
      },
    ],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    // A loaded CI machine must not turn the probe's answer into a "slow" finding: the UI is under test here.
    thresholds: { slowProbeMs: 10_000 },
  });
  // Bundling takes seconds: done here so the tests' time is the UI's.
  await workflowBundle();
});

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await new Promise((resolve) => (probeTarget ? probeTarget.close(resolve) : resolve(undefined)));
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

/** A fresh page for `fn`; when `fn` throws, the page is saved (screenshot + HTML) before the error goes on. */
async function withPage(name: string, fn: (page: Page) => Promise<void>): Promise<void> {
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  try {
    await fn(page);
  } catch (err) {
    const saved = await dumpPage(page, `failure-${name}`);
    if (err instanceof Error) err.message += `\n(page ${page.url()} saved to ${saved.join(', ') || 'nothing: the page could not be captured'})`;
    throw err;
  } finally {
    await page.close();
  }
}

/** The run's status badge in the detail page header ("Running", "Completed", ...). */
function statusBadge(page: Page, status: string): Locator {
  return page.getByRole('main').getByText(status, { exact: true }).first();
}

/** Waits for the detail page to show `status`, reloading in case the page stopped refreshing. */
async function waitForStatus(page: Page, status: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await statusBadge(page, status).waitFor({ timeout: 3_000 });
      return;
    } catch (err) {
      if (Date.now() >= deadline) throw new Error(`the UI did not show the run as ${status} within ${timeoutMs} ms`, { cause: err });
      await page.reload();
    }
  }
}

/**
 * Types JSON into one of the UI's CodeMirror editors (Start Workflow input, signal input), then
 * leaves it: the UI reformats the JSON on blur, and a click landing during that re-layout is lost.
 */
async function typeJson(page: Page, editor: Locator, value: unknown): Promise<void> {
  await editor.click();
  await page.keyboard.insertText(JSON.stringify(value));
  await editor.blur();
}

/** The text of the detail page's read-only Input or Result panel (a heading followed by an editor). */
async function panelText(page: Page, heading: 'Input' | 'Result'): Promise<string> {
  const panel = page.locator('div', { has: page.getByRole('heading', { name: heading, exact: true }) }).last();
  return (await panel.getByRole('textbox').first().innerText()).replace(/\s+/g, ' ');
}

/** Payloads are shown once decoded (through the codec server when there is one): poll, do not read once. */
async function expectPanel(page: Page, heading: 'Input' | 'Result', pattern: RegExp): Promise<void> {
  await expect.poll(() => panelText(page, heading), { timeout: 10_000, interval: 200 }).toMatch(pattern);
}

/** The Start Workflow form reports the queue's pollers when its field is left: have ours polling by then. */
async function waitForPoller(client: Client, taskQueue: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const { pollers } = await client.workflowService.describeTaskQueue({
      namespace,
      taskQueue: { name: taskQueue },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    });
    if (pollers?.length) return;
    await sleep(100);
  }
  throw new Error(`no worker polls ${taskQueue}`);
}

async function waitForPending(handle: WorkflowHandle): Promise<PendingApproval> {
  for (let i = 0; i < 100; i++) {
    const p = await handle.query(pendingApprovalQuery);
    if (p) return p;
    await sleep(100);
  }
  throw new Error(`${handle.workflowId}: no approval became pending`);
}

/** The visibility store indexes search attributes asynchronously: wait until the list query sees the run. */
async function waitForListed(client: Client, query: string, workflowId: string, listed = true): Promise<void> {
  for (let i = 0; i < 100; i++) {
    let found = false;
    for await (const wf of client.workflow.list({ query: `${query} AND WorkflowId = '${workflowId}'` })) found ||= wf.workflowId === workflowId;
    if (found === listed) return;
    await sleep(100);
  }
  throw new Error(`${workflowId} is ${listed ? 'still not' : 'still'} listed by ${query}`);
}

describe('Temporal Web UI (headless Chromium)', () => {
  it('starts health-check from the Start Workflow form and shows it Completed', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `e2e-health-check-${Date.now()}`;
      await waitForPoller(client, taskQueue);
      await withPage('health-check', async (page) => {
        await page.goto(`${nsUrl()}/workflows`);
        await page.getByRole('button', { name: 'Start Workflow' }).click();
        await page.getByRole('heading', { name: 'Start a Workflow' }).waitFor();

        await page.getByRole('textbox', { name: 'Workflow ID' }).fill(workflowId);
        await page.getByRole('textbox', { name: 'Task Queue' }).fill(taskQueue);
        await page.getByRole('textbox', { name: 'Workflow Type' }).fill('health-check');
        // The form looks the queue up once its field is left: our worker polls it.
        await page.getByText('Task Queue is Active').waitFor();
        await typeJson(page, page.getByRole('main').locator('[role="textbox"][contenteditable="true"]'), { requestedBy: 'alice' });
        await screenshot(page, 'a1-start-workflow-form');

        await page.getByRole('button', { name: 'Start Workflow' }).click();
        await page.getByText('Workflow started successfully').waitFor();

        await page.goto(`${nsUrl()}/workflows/${encodeURIComponent(workflowId)}`);
        await page.getByRole('heading', { level: 1, name: workflowId }).waitFor();
        await waitForStatus(page, 'Completed');
        // Decoded for display through the codec server when payloads are encrypted.
        await expectPanel(page, 'Input', /"requestedBy": "alice"/);
        await expectPanel(page, 'Result', /"ok": true/);
        await screenshot(page, 'a2-health-check-completed');
      });

      // The run the form started is the real thing: the right type, input and a healthy result.
      const handle = client.workflow.getHandle(workflowId);
      const description = await handle.describe();
      expect(description.type).toBe('health-check');
      expect(description.taskQueue).toBe(taskQueue);
      const result = (await handle.result()) as HealthCheckResult;
      expect(result).toMatchObject({ ok: true, worst: 'OK' });
      expect(result.results).toEqual([expect.objectContaining({ service: 'web', type: 'http', status: 'healthy' })]);
      if (inject('codecEndpoint')) {
        // The UI sent the input through the codec server: the server stored it encrypted.
        const { history } = await client.workflowService.getWorkflowExecutionHistory({ namespace, execution: { workflowId } });
        const [stored] = history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads ?? [];
        expect(stored && isEncrypted(stored as Payload)).toBe(true);
        expect(Buffer.from(stored?.data ?? []).toString('latin1')).not.toContain('alice');
      }
    });
  });

  it('finds a stack-stop waiting for approval with AwaitingApproval = true and approves it with Send a Signal', async () => {
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const workflowId = `e2e-stack-stop-${Date.now()}`;
      const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId, args: [{ clean: true, requestedBy: 'alice' }] });
      const pending = await waitForPending(handle);
      await waitForListed(client, 'AwaitingApproval = true', workflowId);

      await withPage('stack-stop', async (page) => {
        const runLink = page.getByRole('row').getByRole('link', { name: workflowId, exact: true }).first();

        // The list's raw query box, as an operator would type the filter.
        await page.goto(`${nsUrl()}/workflows`);
        await page.getByRole('button', { name: 'Add Filter' }).waitFor();
        const queryBox = page.getByRole('searchbox', { name: 'Enter a query' });
        // The toggle is an icon button whose only label is its "View raw query" tooltip.
        if (!(await queryBox.isVisible())) await page.getByTestId('toggle-manual-query').click();
        await queryBox.fill('AwaitingApproval = true');
        await queryBox.press('Enter');
        await page.waitForURL((url) => url.searchParams.get('query')?.replace(/\s+/g, '') === 'AwaitingApproval=true');
        await runLink.waitFor();
        await screenshot(page, 'b1-awaiting-approval-query-box');

        // The same filter as a link (what a saved bookmark or a notification would carry).
        await page.goto(`${nsUrl()}/workflows?query=AwaitingApproval%3Dtrue`);
        await page.getByRole('button', { name: 'AwaitingApproval = true' }).waitFor();
        await runLink.waitFor();
        await screenshot(page, 'b2-awaiting-approval-url');

        await runLink.click();
        await page.getByRole('heading', { level: 1, name: workflowId }).waitFor();
        await statusBadge(page, 'Running').waitFor();

        // Current details (rendered by the UI in a frame): what is waiting, for whom, and how to answer.
        await page.getByRole('tab', { name: 'User Metadata' }).click();
        const details = page.getByRole('main').locator('iframe').contentFrame();
        const waiting = details.getByRole('heading', { name: /^Waiting for approval: / });
        await waiting.waitFor();
        const step = (await waiting.innerText()).replace(/^Waiting for approval:\s*/, '').trim();
        expect(step).toBe(pending.step);
        const detailsText = await details.locator('body').innerText();
        expect(detailsText).toContain('DELETE ALL DATA of web');
        expect(detailsText).toMatch(/Approvers: alice, bob/);
        await screenshot(page, 'b3-current-details');

        await page.getByRole('button', { name: 'More Actions' }).click();
        await page.getByRole('menuitem', { name: 'Send a Signal' }).click();
        const dialog = page.getByRole('dialog', { name: 'Send a Signal' });
        await dialog.getByRole('button', { name: 'Select a signal' }).click();
        await dialog.getByRole('option', { name: 'approve', exact: true }).click();
        await typeJson(page, dialog.locator('[role="textbox"][contenteditable="true"]'), { by: 'bob', confirm: 'DELETE', step });
        await screenshot(page, 'b4-send-signal');
        await dialog.getByRole('button', { name: 'Submit' }).click();
        await dialog.waitFor({ state: 'hidden' });

        await page.getByRole('tab', { name: /^History/ }).click();
        await waitForStatus(page, 'Completed');
        await expectPanel(page, 'Result', /"dataDeleted": true/);
        await screenshot(page, 'b5-stack-stop-completed');
      });

      const result = (await handle.result()) as StackStopResult;
      expect(result).toMatchObject({ ok: true, clean: true, dataDeleted: true });
      expect(result.approvals).toEqual([expect.objectContaining({ step: pending.step, decision: 'approved', by: 'bob' })]);
      // What the operator would check on the machine: the service was stopped and its data is gone.
      expect(await readFile(stopMarker, 'utf8')).toBe('stopped');
      expect(existsSync(dataDir)).toBe(false);
      // And the run has left the approval queue.
      await waitForListed(client, 'AwaitingApproval = true', workflowId, false);
    });
  });
});
