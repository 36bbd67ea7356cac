import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { progressQuery } from '../../common/messages.js';
import type { HealthCheckResult } from '../../common/types.js';
import type { StackStartResult } from '../../common/stack/types.js';
import { demoConfig, type DemoPorts } from '../../demo/config.js';
import { demoServiceAction, DEMO_SERVICES } from '../../demo/env.js';
import type { LoadedConfig } from '../../lib/config.js';
import { freeDemoPorts, freePort } from '../fixtures/servers.js';
import { spawnWorker, type WorkerProcess } from '../fixtures/worker-process.js';
import { temporalAddress, testClient, uniqueQueue, writeConfig } from '../fixtures/runbook-worker.js';


let stateDir: string;
let ports: DemoPorts;
let loaded: LoadedConfig;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  stateDir = await mkdtemp(path.join(tmpdir(), 'runbook-worker-'));
  ports = await freeDemoPorts();
  loaded = await writeConfig(demoConfig({ stateDir, ports }));
});

afterAll(async () => {
  for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  const port = (svc: string) => ({ postgres: ports.postgres, redis: ports.redis, nats: ports.nats, api: ports.apiHttp })[svc];
  for (const svc of [...DEMO_SERVICES].reverse()) await demoServiceAction('stop', svc, { stateDir, port: port(svc) });
  await rm(stateDir, { recursive: true, force: true });
});

describe('runbook worker process', () => {
  it('refuses to start on an invalid config, naming the field, without a stack trace', async () => {
    const bad = path.join(stateDir, 'bad.yaml');
    await writeFile(bad, 'services:\n  - name: api\n    driver: { type: command }\n    probes: [{ type: http }]\n');
    const child = spawn(process.execPath, ['bin/runbook.mjs', 'worker', '--config', bad, '--metrics', 'off'], {
      env: { ...process.env, TEMPORAL_ADDRESS: temporalAddress() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    expect(err).toMatch(/services\[0\]\.probes\[0\]\.url: /);
    expect(err).not.toMatch(/\n\s+at /);
  });

  it('refuses a RUNBOOK_MAX_CACHED_WORKFLOWS that is not a whole number, naming it', async () => {
    const child = spawn(process.execPath, ['bin/runbook.mjs', 'worker', '--config', loaded.path, '--metrics', 'off'], {
      env: { ...process.env, TEMPORAL_ADDRESS: temporalAddress(), RUNBOOK_MAX_CACHED_WORKFLOWS: '2.5' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).not.toBe(0);
    expect(err).toMatch(/RUNBOOK_MAX_CACHED_WORKFLOWS must be a whole number/);
  });

  it('loads its workflow code from the bundle file built once beside dist/, not bundling in its own process', async () => {
    // The workers of this file (and of earlier files) started from dist/: the first made the file.
    const taskQueue = uniqueQueue('bundle-file');
    const w = await spawnWorker(loaded.path, taskQueue);
    workers.push(w);
    expect(existsSync(path.join('dist', 'workflow-bundle.plain.js')) || existsSync(path.join('dist', 'workflow-bundle.encrypted.js'))).toBe(true);
    const client = await testClient();
    const r = (await client.workflow.execute('health-check', { taskQueue, workflowId: `bundle-file-${Date.now()}`, args: [{ requestedBy: 'alice', services: ['api'] }] })) as HealthCheckResult;
    expect(r.results.length).toBeGreaterThan(0);
    w.child.kill('SIGTERM');
  });

  it('a worker killed with SIGKILL during stack-start: a new worker finishes the run', async () => {
    const taskQueue = uniqueQueue('crash');
    const first = await spawnWorker(loaded.path, taskQueue);
    workers.push(first);
    const client = await testClient();
    const handle = await client.workflow.start('stack-start', { taskQueue, workflowId: `crash-${Date.now()}`, args: [{ requestedBy: 'alice' }] });

    // Kill it in the middle: once infrastructure is being started or waited for.
    let step: string | undefined;
    for (let i = 0; i < 600; i++) {
      step = (await handle.query(progressQuery)).currentStep;
      if (step === 'wait-infra' || step === 'start-infra' || step === 'migrations') break;
      await sleep(50);
    }
    expect(['start-infra', 'wait-infra', 'migrations']).toContain(step);
    first.child.kill('SIGKILL');
    expect(await first.exited).toBeNull();

    const second = await spawnWorker(loaded.path, taskQueue);
    workers.push(second);
    const result = (await handle.result()) as StackStartResult;
    expect(result.ok).toBe(true);
    expect(result.health.results.every((r) => r.status === 'healthy')).toBe(true);
    // No service was started twice, even though the first worker died mid-step.
    const names = result.started.map((s) => s.service);
    expect(new Set(names).size).toBe(names.length);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });

  it('exposes Prometheus metrics with the runbook counters, and drains on SIGTERM', async () => {
    const taskQueue = uniqueQueue('metrics');
    const metricsPort = await freePort();
    const w = await spawnWorker(loaded.path, taskQueue, { metrics: `127.0.0.1:${metricsPort}` });
    workers.push(w);
    const client = await testClient();
    const result = (await client.workflow.execute('health-check', {
      taskQueue,
      workflowId: `metrics-${Date.now()}`,
      args: [{ services: ['redis'] }],
    })) as HealthCheckResult;
    expect(result.results).toHaveLength(1);
    let text = '';
    for (let i = 0; i < 50 && !/runbook_runs_total\{[^}]*procedure="health-check"/.test(text); i++) {
      text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      await sleep(200);
    }
    expect(text).toMatch(/runbook_runs_total\{[^}]*outcome="succeeded"[^}]*\}|runbook_runs_total\{[^}]*procedure="health-check"[^}]*\}/);
    expect(text).toMatch(/temporal_workflow_completed/);
    // JSON logs carry the workflow and run ids.
    expect(w.output()).toMatch(/"workflowId":"metrics-/);
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    expect(w.output()).toMatch(/"worker stopped"/);
  });
});
