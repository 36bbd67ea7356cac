import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApplicationFailure, type Client, WorkflowFailedError } from '@temporalio/client';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { progressFromHistory } from '../../client/operations.js';
import { pendingApprovalQuery, progressQuery } from '../../common/messages.js';
import type { RunAccount } from '../../common/run-account.js';
import type { LoadedConfig } from '../../lib/config.js';
import { freePort, startRedis, type RedisServer } from '../fixtures/servers.js';
import { historyFromText } from '../fixtures/history.js';
import { runbookCli, withWorker, writeConfig } from '../fixtures/runbook-worker.js';

let redis: RedisServer;
let dir: string;
let dataDir: string;
let slowFile: string;
let loaded: LoadedConfig;
let webPort: number;

const ctl = path.resolve('tests/fixtures/drivers/ctl.mjs');

beforeAll(async () => {
  redis = await startRedis();
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-closed-'));
  dataDir = path.join(dir, 'web-data');
  slowFile = path.join(dir, 'slow-stop');
  webPort = await freePort();
  // Stops the server at once, then (when slow-stop exists) lingers like a slow shutdown script,
  // so a test can cancel the run while the stop step is still running.
  const stopScript = path.join(dir, 'stop.mjs');
  await writeFile(
    stopScript,
    [
      "import { execFileSync } from 'node:child_process';",
      "import { existsSync } from 'node:fs';",
      'const [ctl, state, slow] = process.argv.slice(2);',
      "execFileSync(process.execPath, [ctl, 'stop', state], { stdio: 'inherit' });",
      'if (existsSync(slow)) await new Promise((r) => setTimeout(r, 60_000));',
    ].join('\n'),
  );
  loaded = await writeConfig(
    {
      environment: 'cli',
      services: [
        { name: 'cache', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'redis', url: redis.url }] },
        {
          name: 'web',
          group: 'apps',
          driver: {
            type: 'command',
            start: [process.execPath, ctl, 'start', dir, String(webPort)],
            stop: [process.execPath, stopScript, ctl, dir, slowFile],
            status: [process.execPath, ctl, 'status', dir],
            clean: [process.execPath, '-e', 'require("fs").rmSync(process.argv[1], { recursive: true, force: true })', dataDir],
            timeoutSeconds: 120,
          },
          probes: [{ type: 'http', url: `http://127.0.0.1:${webPort}/` }],
        },
      ],
      approvals: { approvers: { default: ['alice', 'bob'] } },
      thresholds: { slowProbeMs: 5000 },
    },
    dir,
  );
});

afterAll(async () => {
  await execa(process.execPath, [ctl, 'stop', dir], { reject: false });
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

function runbook(taskQueue: string, ...args: string[]) {
  return runbookCli({ RUNBOOK_TASK_QUEUE: taskQueue, RUNBOOK_CONFIG: loaded.path, RUNBOOK_USER: 'alice' })(...args);
}

async function startStop(taskQueue: string, input: Record<string, unknown>): Promise<string> {
  const started = await runbook(taskQueue, 'run', 'stack-stop', '--input', JSON.stringify(input), '--json');
  expect(started.exitCode, started.stderr).toBe(0);
  return (JSON.parse(started.stdout) as { workflowId: string }).workflowId;
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(150);
  }
}

const waitPending = (client: Client, id: string) => until(`${id} to wait for an approval`, () => client.workflow.getHandle(id).query(pendingApprovalQuery).then((p) => p ?? undefined));
const waitClosed = (client: Client, id: string) =>
  until(`${id} to close`, async () => {
    const d = await client.workflow.getHandle(id).describe();
    return d.status.name !== 'RUNNING' && d.status.name;
  }, 60_000);

async function webRunning(): Promise<boolean> {
  return (await execa(process.execPath, [ctl, 'status', dir], { reject: false })).exitCode === 0;
}

const T = '\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z';

describe('runbook approve/reject/status of runs that are no longer running', () => {
  it('tells a completed run, a timed-out approval, a cancelled run, a terminated run and a wrong id apart', async () => {
    await execa(process.execPath, [ctl, 'start', dir, String(webPort)]);
    await mkdir(dataDir, { recursive: true });
    const ids = await withWorker(loaded, async ({ client, taskQueue }) => {
      const completed = await startStop(taskQueue, { clean: true });
      await waitPending(client, completed);
      const ok = await runbook(taskQueue, 'approve', completed, '--as', 'bob', '--confirm', 'DELETE', '--comment', 'wipe test env');
      expect(ok.exitCode, ok.stderr).toBe(0);
      expect(await waitClosed(client, completed)).toBe('COMPLETED');

      const timedOut = await startStop(taskQueue, { clean: true, approvalTimeoutSeconds: 1 });
      expect(await waitClosed(client, timedOut)).toBe('FAILED');

      const cancelled = await startStop(taskQueue, { clean: true });
      await waitPending(client, cancelled);
      await client.workflow.getHandle(cancelled).cancel();
      expect(await waitClosed(client, cancelled)).toBe('FAILED');

      const terminated = await startStop(taskQueue, { clean: true });
      await waitPending(client, terminated);
      await client.workflow.getHandle(terminated).terminate('wrong environment');
      expect(await waitClosed(client, terminated)).toBe('TERMINATED');
      return { completed, timedOut, cancelled, terminated };
    });

    // No worker polls any more: nothing below may depend on one (a query to a closed run would hang).
    const q = 'no-worker';
    const oneLine = (r: { exitCode?: number; stderr: string; stdout: string }) => {
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      return r.stderr.trim();
    };

    const completedApprove = oneLine(await runbook(q, 'approve', ids.completed, '--as', 'bob', '--confirm', 'DELETE'));
    expect(completedApprove).toMatch(
      new RegExp(`^runbook: run ${ids.completed} completed at ${T}; step approve-delete approved by bob at ${T} \\("wipe test env"\\)\\. Nothing is left to answer`),
    );
    expect(oneLine(await runbook(q, 'reject', ids.completed, '--as', 'alice'))).toBe(completedApprove);

    expect(oneLine(await runbook(q, 'approve', ids.timedOut, '--as', 'bob', '--confirm', 'DELETE'))).toMatch(
      new RegExp(`^runbook: run ${ids.timedOut} failed at ${T}; step approve-delete timed out at ${T} \\(no answer within 1s\\)\\. Nothing is left to answer`),
    );
    expect(oneLine(await runbook(q, 'reject', ids.cancelled, '--as', 'bob'))).toMatch(
      new RegExp(`^runbook: run ${ids.cancelled} was cancelled at ${T} \\(cancel requested by \\S+\\); it was waiting for an answer to step approve-delete, which it can no longer take\\.`),
    );
    expect(oneLine(await runbook(q, 'approve', ids.terminated, '--as', 'bob', '--confirm', 'DELETE'))).toMatch(
      new RegExp(
        `^runbook: run ${ids.terminated} was terminated at ${T} \\(reason: "wrong environment", by \\S+\\); it was waiting for an answer to step approve-delete, which it can no longer take\\.`,
      ),
    );
    expect(oneLine(await runbook(q, 'approve', 'stack-stop--cli--no-such-run', '--as', 'bob'))).toBe('runbook: no run with id stack-stop--cli--no-such-run');

    const status = async (id: string) => {
      const r = await runbook(q, 'status', id);
      expect(r.exitCode, r.stderr).toBe(0);
      return r.stdout;
    };
    const completedStatus = await status(ids.completed);
    expect(completedStatus).toMatch(new RegExp(`^${ids.completed}  stack-stop  COMPLETED  started ${T}  closed ${T}\\n`));
    expect(completedStatus).toContain('  ✓ Approve deleting all data - step approve-delete approved by bob: wipe test env\n');
    expect(completedStatus).toContain('  ✓ Stop apps - 1 stopped');
    expect(completedStatus).toContain('  ✓ Delete data - 1 clean commands run');
    expect(completedStatus).toMatch(/approval: step approve-delete approved by bob at \S+ \("wipe test env"\)/);

    const timedOutStatus = await status(ids.timedOut);
    expect(timedOutStatus).toContain('  FAILED  ');
    expect(timedOutStatus).toContain('  ✗ Approve deleting all data - step approve-delete: no answer within 1s');
    expect(timedOutStatus).toContain('    Stop apps\n');
    expect(timedOutStatus).toMatch(/approval: step approve-delete timed out at/);
    expect(timedOutStatus).toContain('failure: step approve-delete: no answer within 1s; nothing was stopped and no data was deleted');
    expect(timedOutStatus).toContain('left: nothing was stopped and no data was deleted');

    const cancelledStatus = await status(ids.cancelled);
    expect(cancelledStatus).toContain('  ! Approve deleting all data - cancelled while waiting for an answer');
    expect(cancelledStatus).toMatch(/cancel requested at \S+ by \S+/);
    expect(cancelledStatus).toContain(
      'cancelled: cancelled during step "Approve deleting all data". done: Load configuration. not started: Stop apps, Stop infra, Delete data. ' +
        'left: nothing was stopped and no data was deleted. to finish or undo: run stack-stop with {"clean": true} again when it should stop.',
    );

    const terminatedStatus = await status(ids.terminated);
    expect(terminatedStatus).toContain('  TERMINATED  ');
    expect(terminatedStatus).toContain('  ✓ Load configuration - 2 services');
    expect(terminatedStatus).toContain('  ! Approve deleting all data - waiting for an answer when the run was terminated');
    expect(terminatedStatus).toContain('(steps as the run last recorded them)');
    expect(terminatedStatus).toMatch(/terminated: reason "wrong environment" by \S+/);

    const missing = await runbook(q, 'status', 'stack-stop--cli--no-such-run');
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr.trim()).toBe('runbook: no run with id stack-stop--cli--no-such-run');
  }, 240_000);

  it('a stack-stop (clean) cancelled mid-run starts again what it stopped, keeps the data, and gives an account', async () => {
    await execa(process.execPath, [ctl, 'start', dir, String(webPort)]);
    await mkdir(dataDir, { recursive: true });
    await writeFile(path.join(dataDir, 'important.db'), 'rows');
    await writeFile(slowFile, '');
    try {
      const id = await withWorker(loaded, async ({ client, taskQueue }) => {
        const workflowId = await startStop(taskQueue, { clean: true });
        await waitPending(client, workflowId);
        const ok = await runbook(taskQueue, 'approve', workflowId, '--as', 'bob', '--confirm', 'DELETE', '--comment', 'wipe');
        expect(ok.exitCode, ok.stderr).toBe(0);
        const handle = client.workflow.getHandle(workflowId);
        // The run has stopped web and its stop step is still running.
        await until('web to be stopped by the run', async () => !(await webRunning()));
        const progress = await handle.query(progressQuery);
        expect(progress.steps.find((s) => s.id === 'stop-apps')?.status).toBe('running');
        await handle.cancel();

        const err = await handle.result().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(WorkflowFailedError);
        const failure = (err as WorkflowFailedError).cause as ApplicationFailure;
        expect(failure).toBeInstanceOf(ApplicationFailure);
        expect(failure.type).toBe('RunCancelled');
        expect(failure.message).toMatch(
          new RegExp(
            '^cancelled during step "Stop apps"\\. done: Load configuration, Approve deleting all data, Cleanup: start again what this run stopped\\. ' +
              `step approve-delete approved by bob at ${T} \\("wipe"\\)\\. not started: Stop infra, Delete data\\. ` +
              'cleanup: started again web, stopped by this run\\. left: the stack runs as before the run; no data was deleted\\. ' +
              'to finish or undo: run stack-stop with \\{"clean": true\\} again when it should stop\\.$',
          ),
        );
        const account = failure.details?.[0] as RunAccount;
        expect(account).toMatchObject({ outcome: 'cancelled', interrupted: 'Stop apps', cleanup: ['started again web, stopped by this run'] });
        expect(account.progress.steps.map((s) => [s.id, s.status])).toEqual([
          ['plan', 'succeeded'],
          ['approve-delete', 'succeeded'],
          ['stop-apps', 'interrupted'],
          ['stop-infra', 'pending'],
          ['delete-data', 'pending'],
          ['undo-stop', 'succeeded'],
        ]);
        return workflowId;
      });

      // The cleanup ran for real: web is serving again and no data was deleted.
      expect(await webRunning()).toBe(true);
      expect((await fetch(`http://127.0.0.1:${webPort}/`)).ok).toBe(true);
      expect(existsSync(path.join(dataDir, 'important.db'))).toBe(true);

      const status = await runbook('no-worker', 'status', id);
      expect(status.exitCode, status.stderr).toBe(0);
      expect(status.stdout).toContain('  ✓ Approve deleting all data - step approve-delete approved by bob: wipe\n');
      expect(status.stdout).toMatch(/ {2}! Stop apps - cancelled while running/);
      expect(status.stdout).toContain('    Delete data\n');
      expect(status.stdout).toContain('  ✓ Cleanup: start again what this run stopped - started again: web\n');
      expect(status.stdout).toContain('cancelled: cancelled during step "Stop apps"');

      const late = await runbook('no-worker', 'approve', id, '--as', 'bob', '--confirm', 'DELETE');
      expect(late.exitCode).toBe(1);
      expect(late.stderr.trim()).toMatch(new RegExp(`^runbook: run ${id} was cancelled at ${T} \\(cancel requested by \\S+\\); step approve-delete approved by bob at ${T} \\("wipe"\\)\\. Nothing is left to answer`));
    } finally {
      await rm(slowFile, { force: true });
    }
  }, 120_000);

  it('a stack-stop terminated mid-run still shows its steps: the one in flight from its last recorded progress', async () => {
    await execa(process.execPath, [ctl, 'start', dir, String(webPort)]);
    await writeFile(slowFile, '');
    try {
      const id = await withWorker(loaded, async ({ client, taskQueue }) => {
        const workflowId = await startStop(taskQueue, {});
        await until('web to be stopped by the run', async () => !(await webRunning()));
        await client.workflow.getHandle(workflowId).terminate('operator pulled the plug');
        await waitClosed(client, workflowId);
        return workflowId;
      });
      const status = await runbook('no-worker', 'status', id);
      expect(status.exitCode, status.stderr).toBe(0);
      expect(status.stdout).toContain('  TERMINATED  ');
      expect(status.stdout).toContain('  ✓ Load configuration - 2 services\n');
      expect(status.stdout).toContain('  ! Stop apps - in flight when the run was terminated\n');
      expect(status.stdout).toContain('    Stop infra\n');
      expect(status.stdout).toMatch(/terminated: reason "operator pulled the plug" by \S+/);
    } finally {
      await rm(slowFile, { force: true });
    }
  }, 120_000);

  it('a run that recorded no progress (started before it did) gets its steps from the history: activities done and in flight', async () => {
    const history = historyFromText(await readFile('tests/replay/histories/stack-stop-clean-approved.json', 'utf8'));
    const events = history.events ?? [];
    // Cut the history just after the last activity was scheduled: as a run terminated mid-activity.
    const lastScheduled = events.map((e) => !!e.activityTaskScheduledEventAttributes).lastIndexOf(true);
    const cut = events.slice(0, lastScheduled + 1);
    const progress = progressFromHistory('stack-stop', cut);
    expect(progress.steps.length).toBeGreaterThan(1);
    expect(progress.steps.at(-1)).toMatchObject({ status: 'running' });
    expect(progress.steps.slice(0, -1).every((s) => s.status === 'succeeded')).toBe(true);
    expect(progress.steps.map((s) => s.title)).toEqual(expect.arrayContaining(['local activity loadPlan', 'activity serviceAction']));
  });
});
