import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROCEDURE_IDS } from '../../common/procedures.js';
import type { LoadedConfig } from '../../lib/config.js';
import { freePort, startRedis, type RedisServer } from '../fixtures/servers.js';
import { runbookCli, testClient, withWorker, writeConfig } from '../fixtures/runbook-worker.js';

let redis: RedisServer;
let dir: string;
let dataDir: string;
let loaded: LoadedConfig;
let webPort: number;

const ctl = path.resolve('tests/fixtures/drivers/ctl.mjs');

beforeAll(async () => {
  redis = await startRedis();
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-cli-'));
  dataDir = path.join(dir, 'web-data');
  await mkdir(dataDir);
  await writeFile(path.join(dataDir, 'important.db'), 'rows');
  webPort = await freePort();
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
            stop: [process.execPath, ctl, 'stop', dir],
            status: [process.execPath, ctl, 'status', dir],
            clean: [process.execPath, '-e', 'require("fs").rmSync(process.argv[1], { recursive: true, force: true })', dataDir],
          },
          probes: [{ type: 'http', url: `http://127.0.0.1:${webPort}/` }],
        },
      ],
      approvals: { approvers: { default: ['alice', 'bob'] } },
      // The slow-probe finding is tested in tests/workflows; here a loaded CI machine must not turn the table P2.
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

describe('runbook CLI', () => {
  it('config check: valid file, and one clear line for a bad one', async () => {
    const ok = await runbook('unused', 'config', 'check');
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout).toMatch(/valid - environment cli, 2 services, 2 groups, 0 databases/);

    const badFile = path.join(dir, 'bad.yaml');
    await writeFile(badFile, 'services:\n  - name: web\n    driver: { type: podman }\n');
    const bad = await runbook('unused', 'config', 'check', '--config', badFile);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/services\[0\]\.driver\.type: .*command.*compose.*kubernetes/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });

  it('refuses an unknown procedure and a bad input before starting anything', async () => {
    const unknown = await runbook('unused', 'run', 'stack-nuke');
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr.trim()).toBe(`runbook: unknown procedure "stack-nuke": expected one of ${PROCEDURE_IDS.join(', ')}`);
    expect(PROCEDURE_IDS).toEqual(expect.arrayContaining(['health-check', 'stack-start', 'stack-stop', 'service-restart']));
    const badJson = await runbook('unused', 'run', 'stack-stop', '--input', '{clean: true}');
    expect(badJson.exitCode).toBe(1);
    expect(badJson.stderr).toMatch(/^runbook: --input: not valid JSON/);
    const badField = await runbook('unused', 'run', 'stack-stop', '--input', '{"clean": "yes"}');
    expect(badField.exitCode).toBe(1);
    expect(badField.stderr.trim()).toMatch(/^runbook: invalid input for stack-stop: clean: expected boolean/);
  });

  it('run --wait shows the health table and exits 0; --json prints the result', async () => {
    await withWorker(loaded, async ({ taskQueue }) => {
      await execa(process.execPath, [ctl, 'start', dir, String(webPort)]);
      const plain = await runbook(taskQueue, 'run', 'health-check', '--wait');
      expect(plain.exitCode).toBe(0);
      expect(plain.stdout).toMatch(/^SERVICE\s+PROBE/m);
      expect(plain.stdout).toMatch(/cache\s+redis\s+.*healthy/);
      expect(plain.stderr).toMatch(/✓ Probe services - 2\/2 OK/);

      const json = await runbook(taskQueue, 'run', 'health-check', '--wait', '--json', '--input', '{"services":["cache"]}');
      expect(json.exitCode).toBe(0);
      const parsed = JSON.parse(json.stdout) as { workflowId: string; status: string; result: { ok: boolean; results: unknown[] } };
      expect(parsed).toMatchObject({ status: 'COMPLETED', result: { ok: true } });
      expect(parsed.result.results).toHaveLength(1);
      expect(parsed.workflowId).toMatch(/^health-check--cli--/);
    });
  });

  it('stack-stop clean waits for approve --confirm DELETE from someone other than the requester', async () => {
    await withWorker(loaded, async ({ taskQueue }) => {
      const started = await runbook(taskQueue, 'run', 'stack-stop', '--input', '{"clean":true}', '--json');
      expect(started.exitCode).toBe(0);
      const { workflowId } = JSON.parse(started.stdout) as { workflowId: string };

      let status: { status: string; pendingApproval: { step: string; confirmPhrase: string } | null } | undefined;
      for (let i = 0; i < 30; i++) {
        const s = await runbook(taskQueue, 'status', workflowId, '--json');
        status = JSON.parse(s.stdout);
        if (status?.pendingApproval) break;
        await sleep(200);
      }
      expect(status).toMatchObject({ status: 'RUNNING', pendingApproval: { step: 'approve-delete', confirmPhrase: 'DELETE' } });

      let listed = '';
      for (let i = 0; i < 30 && !listed.includes(workflowId); i++) {
        listed = (await runbook(taskQueue, 'list', '--awaiting-approval', '--json')).stdout;
        if (!listed.includes(workflowId)) await sleep(300);
      }
      expect(listed).toContain(workflowId);

      const wrong = await runbook(taskQueue, 'approve', workflowId, '--as', 'bob', '--confirm', 'delete');
      expect(wrong.exitCode).toBe(1);
      expect(wrong.stderr.trim()).toBe('runbook: refused: confirmation must be exactly "DELETE" (got "delete")');
      const self = await runbook(taskQueue, 'approve', workflowId, '--as', 'alice', '--confirm', 'DELETE');
      expect(self.exitCode).toBe(1);
      expect(self.stderr).toMatch(/two-person rule/);
      expect(existsSync(dataDir)).toBe(true);

      const ok = await runbook(taskQueue, 'approve', workflowId, '--as', 'bob', '--confirm', 'DELETE', '--comment', 'wipe test env');
      expect(ok.exitCode).toBe(0);
      expect(ok.stdout.trim()).toBe(`approved: step approve-delete of ${workflowId} by bob`);

      for (let i = 0; i < 50; i++) {
        status = JSON.parse((await runbook(taskQueue, 'status', workflowId, '--json')).stdout);
        if (status?.status !== 'RUNNING') break;
        await sleep(200);
      }
      expect(status?.status).toBe('COMPLETED');
      expect(existsSync(dataDir)).toBe(false);
      // The history says which OS account on which host sent each answer, beside the claimed --as.
      const history = await (await testClient()).workflow.getHandle(workflowId).fetchHistory();
      const answers = (history.events ?? []).flatMap((e) => {
        const a = e.workflowExecutionUpdateAcceptedEventAttributes;
        return a ? [a.acceptedRequest?.meta?.identity ?? ''] : [];
      });
      expect(answers).toHaveLength(3);
      for (const identity of answers) expect(identity).toMatch(new RegExp(`^runbook ${userInfo().username}@${hostname()} pid \\d+$`));
      const web = await execa(process.execPath, [ctl, 'status', dir], { reject: false });
      expect(web.exitCode).not.toBe(0);
    });
  });

  it('run --wait exits 1 with the reason when the run fails', async () => {
    await withWorker(loaded, async ({ taskQueue }) => {
      const r = await runbook(taskQueue, 'run', 'stack-stop', '--wait', '--input', '{"clean":true,"approvalTimeoutSeconds":1}');
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/waiting for approval of step "approve-delete"/);
      // How to sign the answer, for configs that require signed approvals.
      expect(r.stderr).toMatch(/signed: {2}add --key <your approver key file>/);
      expect(r.stderr).toMatch(/stack-stop failed: step approve-delete: no answer within 1s; nothing was stopped and no data was deleted/);
    });
  });
});

describe('runbook codec-server help', () => {
  it('shows the defaults lib/codec/server.ts uses (the CLI defines them without loading the server)', async () => {
    const [cli, lib] = await Promise.all([import('../../client/codec-server.js'), import('../../lib/codec/server.js')]);
    expect(cli.CLI_CODEC_PORT).toBe(lib.DEFAULT_CODEC_PORT);
    expect([...cli.CLI_CORS_ORIGINS]).toEqual(lib.DEFAULT_CORS_ORIGINS);
  });
});
