import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../lib/config.js';
import { startRedis, type RedisServer } from '../fixtures/servers.js';
import { temporalAddress, temporalNamespace, testClient, uniqueQueue, withWorker, writeConfig } from '../fixtures/runbook-worker.js';

/**
 * The `run` command's input and pre-start checks, error lines for a wrong endpoint, and
 * output into a closed pipe: the real `runbook` binary against the run's dev server.
 */

let redis: RedisServer;
let dir: string;
let loaded: LoadedConfig;

beforeAll(async () => {
  redis = await startRedis();
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-cli-run-'));
  loaded = await writeConfig(
    {
      environment: 'cli-run',
      services: [{ name: 'cache', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'redis', url: redis.url }] }],
      approvals: { approvers: { default: ['alice', 'bob'] } },
      thresholds: { slowProbeMs: 5000 },
    },
    dir,
  );
});

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

function env(taskQueue: string, extra: Record<string, string> = {}) {
  return {
    TEMPORAL_ADDRESS: temporalAddress(),
    TEMPORAL_NAMESPACE: temporalNamespace(),
    RUNBOOK_TASK_QUEUE: taskQueue,
    RUNBOOK_CONFIG: loaded.path,
    RUNBOOK_USER: 'alice',
    ...extra,
  };
}

function runbook(taskQueue: string, args: string[], opts: { input?: string; env?: Record<string, string> } = {}) {
  return execa(process.execPath, ['bin/runbook.mjs', ...args], { reject: false, input: opts.input, env: env(taskQueue, opts.env) });
}

/** Runs the CLI with its stdout closed before it writes anything: what `| head` does to a long output. */
function withClosedStdout(taskQueue: string, args: string[]): Promise<{ exitCode: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['bin/runbook.mjs', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env(taskQueue) } });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (exitCode) => resolve({ exitCode, stderr })));
}

async function runsOn(taskQueue: string): Promise<number> {
  const client = await testClient();
  let n = 0;
  for await (const _ of client.workflow.list({ query: `TaskQueue = '${taskQueue}'` })) n++;
  return n;
}

describe('runbook run: the input', () => {
  it('refuses null and anything but one JSON object, naming where it came from', async () => {
    for (const [text, got] of [
      ['null', 'null'],
      ['[]', 'an array'],
      ['"x"', 'a string'],
    ] as const) {
      const r = await runbook('unused', ['run', 'health-check', '--input', text]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr.trim()).toMatch(new RegExp(`^runbook: --input: expected one JSON object, got ${got}; e\\.g\\. `));
    }
  });

  it('--input @file: a missing file and bad JSON are named with the path and the line and column', async () => {
    const missing = await runbook('unused', ['run', 'health-check', '--input', `@${path.join(dir, 'nope.json')}`]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr.trim()).toBe(`runbook: --input @${path.join(dir, 'nope.json')}: cannot read ${path.join(dir, 'nope.json')} (no such file)`);

    const bad = path.join(dir, 'bad.json');
    await writeFile(bad, '{\n  "services": [\n    "cache",\n  ]\n}\n');
    const r = await runbook('unused', ['run', 'health-check', '--input', `@${bad}`]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toMatch(new RegExp(`^runbook: --input @${bad}: not valid JSON at line 4, column 3 \\(unexpected "\\]"\\)`));
    expect(r.stderr.trim().split('\n')).toHaveLength(1);

    const stdin = await runbook('unused', ['run', 'health-check', '--input', '-'], { input: '{"services": ["cache"' });
    expect(stdin.exitCode).toBe(1);
    expect(stdin.stderr.trim()).toMatch(/^runbook: --input - \(stdin\): not valid JSON at line 1, column 22 \(unexpected end of input\)/);
  });

  it('--input @file and --input - carry an input larger than one command-line argument may be', async () => {
    // Linux refuses a single argument over 128 KiB; JSON whitespace makes a large but valid input.
    const large = `{"services": ["cache"]${' '.repeat(300_000)}}`;
    const file = path.join(dir, 'large.json');
    await writeFile(file, large);
    await withWorker(loaded, async ({ taskQueue }) => {
      for (const [args, input] of [
        [['--input', `@${file}`], undefined],
        [['--input', '-'], large],
      ] as const) {
        const r = await runbook(taskQueue, ['run', 'health-check', '--wait', '--json', ...args], { input });
        expect(r.stderr).toBe('');
        expect(r.exitCode).toBe(0);
        const out = JSON.parse(r.stdout) as { status: string; result: { results: Array<{ service: string }> } };
        expect(out.status).toBe('COMPLETED');
        expect(out.result.results.map((x) => x.service)).toEqual(['cache']);
      }
    });
  });
});

describe('runbook run: refused before anything starts', () => {
  it('an empty requester, one with control characters, unknown services: exit 1 naming the field, no run', async () => {
    const taskQueue = uniqueQueue('cli-refused');
    const cases: Array<[string[], RegExp]> = [
      [['--as', ''], /^runbook: invalid input for health-check: --as \(requestedBy\): expected identity/],
      [['--as', 'al\u001b[31mice'], /^runbook: invalid input for health-check: --as \(requestedBy\): expected identity/],
      [['--input', '{"services": ["cache", "nope"]}'], /^runbook: invalid input for health-check: services: unknown service "nope" in .*runbooks\.yaml: expected one of cache$/],
    ];
    for (const [args, message] of cases) {
      const r = await runbook(taskQueue, ['run', 'health-check', ...args]);
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim()).toMatch(message);
    }
    const restart = await runbook(taskQueue, ['run', 'service-restart', '--input', '{"service": "web"}']);
    expect(restart.exitCode).toBe(1);
    expect(restart.stderr.trim()).toMatch(/^runbook: invalid input for service-restart: service: unknown service "web" in .*: expected one of cache$/);
    // $RUNBOOK_USER is checked the same way when --as is not given.
    const fromEnv = await runbook(taskQueue, ['run', 'health-check'], { env: { RUNBOOK_USER: 'eve\nmallory' } });
    expect(fromEnv.exitCode).toBe(1);
    expect(fromEnv.stderr).toMatch(/--as \(default \$RUNBOOK_USER or \$USER\) \(requestedBy\): expected identity/);
    expect(await runsOn(taskQueue)).toBe(0);
  });

  it('a run the workflow refuses in its first task fails `run` without --wait too', async () => {
    await withWorker(loaded, async ({ taskQueue }) => {
      // A CLI without the config cannot check the name; the run does, in its first task.
      const r = await runbook(taskQueue, ['run', 'health-check', '--input', '{"services": ["nope"]}'], { env: { RUNBOOK_CONFIG: path.join(dir, 'none.yaml') } });
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim()).toMatch(/^runbook: health-check failed: services: unknown service\(s\) nope: expected one of cache \(run health-check--default--\S+\)$/);
    });
  });
});

describe('runbook: a wrong endpoint', () => {
  it('an HTTP server that answers 404 is named with its address and the cause, in one line', async () => {
    const h2 = http2.createServer((_req, res) => {
      res.statusCode = 404;
      res.end('not found');
    });
    const h1 = http.createServer((_req, res) => {
      res.statusCode = 404;
      res.end('not found');
    });
    await Promise.all([new Promise<void>((r) => h2.listen(0, '127.0.0.1', r)), new Promise<void>((r) => h1.listen(0, '127.0.0.1', r))]);
    try {
      const h2Address = `127.0.0.1:${(h2.address() as AddressInfo).port}`;
      for (const args of [['list'], ['status', 'some-run']]) {
        const r = await runbook('unused', args, { env: { TEMPORAL_ADDRESS: h2Address } });
        expect(r.exitCode).toBe(2);
        const lines = r.stderr.trim().split('\n');
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(new RegExp(`^runbook: Failed to \\w+ \\w+: Temporal at ${h2Address} answered 12 UNIMPLEMENTED: Received HTTP status code 404: is TEMPORAL_ADDRESS the gRPC address of a Temporal frontend`));
      }
      const h1Address = `127.0.0.1:${(h1.address() as AddressInfo).port}`;
      const r = await runbook('unused', ['list'], { env: { TEMPORAL_ADDRESS: h1Address } });
      expect(r.exitCode).toBe(1);
      expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^runbook: cannot reach Temporal at ${h1Address}: `))]);
    } finally {
      h2.close();
      h1.close();
    }
  });
});

describe('runbook: output into a closed pipe', () => {
  it('`runbook status ID | head -3` and `runbook --help | head` exit 0 without a stack trace', async () => {
    await withWorker(loaded, async ({ taskQueue }) => {
      const started = await runbook(taskQueue, ['run', 'stack-stop', '--input', '{"clean": true}']);
      expect(started.exitCode).toBe(0);
      const workflowId = started.stdout.trim();
      for (const args of [['status', workflowId], ['--help'], ['list']]) {
        const r = await withClosedStdout(taskQueue, args);
        expect(r.stderr).not.toMatch(/EPIPE|\n\s+at /);
        expect(r.exitCode).toBe(0);
      }
      await (await testClient()).workflow.getHandle(workflowId).terminate('test done');
    });
  });
});
