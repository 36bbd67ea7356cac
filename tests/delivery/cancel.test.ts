import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunAccount } from '../../common/run-account.js';
import type { LoadedConfig } from '../../lib/config.js';
import { freePort } from '../fixtures/servers.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { waitForStatus } from './helpers.js';

let dir: string;
let weightFile: string;
let canaryPort: number;
let loaded: LoadedConfig;

const ctl = path.resolve('tests/fixtures/drivers/ctl.mjs');

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-canary-cancel-'));
  weightFile = path.join(dir, 'weight');
  await writeFile(weightFile, '0');
  canaryPort = await freePort();
  loaded = await writeConfig(
    {
      environment: 'cancel',
      services: [
        {
          name: 'api-canary',
          driver: {
            type: 'command',
            start: [process.execPath, ctl, 'start', dir, String(canaryPort)],
            stop: [process.execPath, ctl, 'stop', dir],
            status: [process.execPath, ctl, 'status', dir],
          },
        },
      ],
      approvals: { approvers: { default: ['alice', 'bob'] } },
      delivery: {
        // A router that is the user's own script: the weight in effect is the file's content.
        routers: {
          api: {
            type: 'command',
            setWeight: [process.execPath, '-e', 'require("fs").writeFileSync(process.argv[1], process.argv[2])', weightFile, '{weight}'],
            getWeight: [process.execPath, '-e', 'process.stdout.write(require("fs").readFileSync(process.argv[1], "utf8"))', weightFile],
            canaryService: 'api-canary',
          },
        },
        canary: { steps: [10, 50], bakeSeconds: 600 },
      },
    },
    dir,
  );
});

afterAll(async () => {
  await execa(process.execPath, [ctl, 'stop', dir], { reject: false });
  await rm(dir, { recursive: true, force: true });
});

const canaryRunning = async () => (await execa(process.execPath, [ctl, 'status', dir], { reject: false })).exitCode === 0;

describe('a cancelled canary-deploy', () => {
  it('puts all traffic back on stable and stops the canary (non-cancellable), then fails with an account of what it did and left', async () => {
    await execa(process.execPath, [ctl, 'start', dir, String(canaryPort)]);
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const handle = await client.workflow.start('canary-deploy', {
        taskQueue,
        workflowId: `canary-deploy--cancel--${Date.now()}`,
        args: [{ router: 'api', skipAnalysis: true, requestedBy: 'alice' }],
      });
      await waitForStatus(handle, (s) => s.phase === 'baking' && s.weight === 10);
      expect(await readFile(weightFile, 'utf8')).toBe('10');
      await handle.cancel();

      const err = await handle.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const failure = (err as WorkflowFailedError).cause as ApplicationFailure;
      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure.type).toBe('RunCancelled');
      expect(failure.message).toBe(
        'cancelled during step "Bake at 10 % (600s)". done: Load configuration, Route 10 % of traffic to the canary, ' +
          'Roll back: all traffic to stable (0 %), Roll back: stop the canary (api-canary), Notify. ' +
          'not started: Analysis at 10 % (skipped), Route 50 % of traffic to the canary, Bake at 50 % (600s), Analysis at 50 % (skipped). ' +
          'left: all traffic on stable (0 % on the canary of router api), api-canary stopped. to finish or undo: start a new canary-deploy when the canary is ready.',
      );
      const account = failure.details?.[0] as RunAccount;
      expect(account.progress.steps.find((s) => s.id === 'bake-10')).toMatchObject({ status: 'interrupted', detail: expect.stringMatching(/^cancelled while running/) });
      expect(account.progress.steps.find((s) => s.id === 'rollback-traffic')).toMatchObject({ status: 'succeeded', detail: expect.stringMatching(/^0 % on canary \(was 10 %\); the run was cancelled/) });
    });
    // The cleanup happened in the world, not only in the account.
    expect(await readFile(weightFile, 'utf8')).toBe('0');
    expect(await canaryRunning()).toBe(false);
  }, 120_000);
});
