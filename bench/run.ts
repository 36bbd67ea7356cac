/**
 * Benchmarks for the foundation's speed targets, printed as tables. Not part of `npm test`.
 *   npm run bench                  (every section)
 *   npm run bench -- steps bundle  (only those: bundle, steps, health, stack, cli, scale, database)
 * Starts its own Temporal dev server (in memory, and one on a SQLite file for the step
 * benchmark) unless TEMPORAL_ADDRESS is set.
 */
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import { stringify } from 'yaml';
import type { HealthCheckResult } from '../common/types.js';
import type { StackStartResult } from '../common/stack/types.js';
import { parseConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { payloadEncryptionFromEnv } from '../lib/codec/index.js';
import { perRunEvaluation, workflowBundleReport } from '../lib/temporal/workflow-bundle.js';
import { bundleRunbookWorkflows, createRunbookWorker, installRuntime } from '../worker/main.js';
import { freePort } from '../tests/fixtures/servers.js';
import { quantile, quietLogger as quiet, table } from './report.js';
import { benchTemporal, type BenchTemporal } from './temporal.js';
import { cliStartup } from './cli.js';
import { scale } from './scale.js';

const logger = createLogger({ component: 'bench' }, 'warn');

/** Gaps between the starts of consecutive steps of one run of `workflowType` (bench/workflows.ts), after a warm-up run. */
async function stepGaps(client: Client, native: NativeConnection, namespace: string, workflowType: 'sequentialSteps' | 'sequentialLocalSteps', n: number): Promise<number[]> {
  const starts: number[] = [];
  const taskQueue = `bench-steps-${workflowType}-${Date.now()}`;
  const worker = await Worker.create({
    connection: native,
    namespace,
    taskQueue,
    // The client encrypts when a key is configured; this worker must decrypt alike.
    dataConverter: { payloadCodecs: payloadEncryptionFromEnv().dataConverter.payloadCodecs },
    workflowBundle: await bundleWorkflowCode({ workflowsPath: fileURLToPath(new URL('./workflows.ts', import.meta.url)), logger: quiet }),
    activities: {
      async step(i: number) {
        starts.push(performance.now());
        return i;
      },
    },
  });
  await worker.runUntil(async () => {
    await client.workflow.execute(workflowType, { taskQueue, workflowId: `bench-warm-${Date.now()}`, args: [20] });
    starts.length = 0;
    await client.workflow.execute(workflowType, { taskQueue, workflowId: `bench-steps-${Date.now()}`, args: [n] });
  });
  return starts.slice(1).map((t, i) => t - starts[i]!).sort((a, b) => a - b);
}

/**
 * Per-step cost of sequential steps on dev servers started as the project starts them
 * (lib/temporal/server-settings.ts): in memory (tests, benchmarks) and on a SQLite file (`runbook dev`).
 */
async function stepOverhead(temporal: BenchTemporal): Promise<void> {
  const n = 200;
  const row = (variant: string, targetMs: number | undefined, gaps: number[], digits = 2) => ({
    variant,
    median_ms: quantile(gaps, 0.5).toFixed(digits),
    p99_ms: quantile(gaps, 0.99).toFixed(digits),
    target: targetMs === undefined ? '-' : `median <= ${targetMs} ms`,
    met: targetMs === undefined ? '-' : quantile(gaps, 0.5) <= targetMs ? 'yes' : 'no',
  });
  const where = process.env.TEMPORAL_ADDRESS ? `the server at ${process.env.TEMPORAL_ADDRESS}` : 'in-memory dev server';
  const rows = [
    row(`activity step, ${where}`, 15, await stepGaps(temporal.client, temporal.native, temporal.namespace, 'sequentialSteps', n)),
    row(`local activity step, ${where}`, 5, await stepGaps(temporal.client, temporal.native, temporal.namespace, 'sequentialLocalSteps', n)),
  ];
  // A dev server of its own on a SQLite file, as `runbook dev` runs it; skipped against TEMPORAL_ADDRESS.
  if (!process.env.TEMPORAL_ADDRESS) {
    const dir = await mkdtemp(path.join(tmpdir(), 'bench-sqlite-'));
    const onFile = await benchTemporal(logger, { stateDir: dir });
    try {
      rows.push(row('activity step, dev server on SQLite (runbook dev)', 15, await stepGaps(onFile.client, onFile.native, onFile.namespace, 'sequentialSteps', n)));
    } finally {
      await onFile.close();
      await rm(dir, { recursive: true, force: true });
    }
  }
  // The same steps as plain function calls.
  const plain: number[] = [];
  const fn = async (i: number) => i;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    plain.push(performance.now() - t);
  }
  plain.sort((a, b) => a - b);
  rows.push(row('plain function call', undefined, plain, 4));
  table(`Orchestration overhead per step (${n} sequential steps of one run, after a 20-step warm-up run)`, rows);
}

/** Size of the workers' workflow bundle against its budget, and what a new run evaluates of it (tests/worker/bundle.test.ts). */
async function bundleSize(): Promise<void> {
  const { code } = await bundleRunbookWorkflows({ logger: quiet });
  const report = workflowBundleReport(code);
  const evaluation = await perRunEvaluation(code);
  const mb = (bytes: number) => (bytes / 1e6).toFixed(2);
  table('Workflow bundle of the runbook worker', [
    {
      measure: 'bundle size',
      MB: mb(report.bytes),
      budget_MB: mb(report.budgetBytes),
      modules: report.modules.length,
      packages: report.packages.join(' '),
      zod: report.packages.includes('zod') ? 'yes' : 'no',
      met: report.bytes <= report.budgetBytes && !report.packages.includes('zod') ? 'yes' : 'no',
    },
  ]);
  table('What a new run evaluates of it (modules shared by all runs: preloadModules, worker/main.ts) - target: nothing', [
    {
      shared_modules: evaluation.shared,
      per_run_modules: evaluation.perRun.length,
      per_run_import_ms: evaluation.medianMs.toFixed(2),
      met: evaluation.perRun.length === 0 ? 'yes' : 'no',
    },
  ]);
}

async function healthFanOut(client: Client, native: NativeConnection, namespace: string, address: string): Promise<void> {
  const delayMs = 200;
  const WARM_UP = 3;
  const MEASURED = 11;
  const server = http.createServer((_req, res) => setTimeout(() => res.end('ok'), delayMs));
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const services = Array.from({ length: 20 }, (_, i) => ({
    name: `svc${i}`,
    driver: { type: 'command', status: ['true'] },
    probes: [{ type: 'http', url: `http://127.0.0.1:${port}/slow/${i}`, timeoutMs: 5000 }],
  }));
  const text = stringify({ services, stack: { groups: [{ name: 'apps', waitTimeoutSeconds: 60 }] } });
  const loaded = { config: parseConfig(text, 'bench'), path: 'bench.yaml', dir: process.cwd() };
  // The worker as shipped (workflow modules evaluated once, shared by all runs) and one that
  // evaluates them for every run, as it did before, alternated run by run.
  const variants = await Promise.all(
    [true, false].map(async (shareModules) => {
      const taskQueue = `bench-health-${shareModules ? 'shared' : 'per-run'}-${Date.now()}`;
      const bundle = await bundleRunbookWorkflows({ logger: quiet, shareModules });
      const { worker } = await createRunbookWorker({ loaded, settings: { address, namespace, taskQueue }, connection: native, logger, workflowBundle: bundle });
      return { taskQueue, worker, walls: [] as number[], slowest: [] as number[] };
    }),
  );
  const runOnce = async (v: (typeof variants)[number], i: number, record: boolean) => {
    const t = performance.now();
    const r = (await client.workflow.execute('health-check', { taskQueue: v.taskQueue, workflowId: `bench-hc-${v.taskQueue}-${i}`, args: [{}] })) as HealthCheckResult;
    if (r.results.length !== 20) throw new Error('expected 20 probe results');
    if (!record) return;
    v.walls.push(performance.now() - t);
    v.slowest.push(Math.max(...r.results.map((p) => p.latencyMs)));
  };
  const [shipped, perRun] = variants as [(typeof variants)[number], (typeof variants)[number]];
  await shipped.worker.runUntil(() =>
    perRun.worker.runUntil(async () => {
      // Workers that have served a few runs, as an operator's long-running worker has: the first
      // runs are the JIT compiling the workflow code and the SDK's paths.
      for (let i = 0; i < WARM_UP + MEASURED; i++) {
        for (const v of i % 2 === 0 ? [shipped, perRun] : [perRun, shipped]) await runOnce(v, i, i >= WARM_UP);
      }
    }),
  );
  server.close();
  const row = (v: (typeof variants)[number], variant: string) => {
    const median = quantile([...v.walls].sort((a, b) => a - b), 0.5);
    const slowestMedian = quantile([...v.slowest].sort((a, b) => a - b), 0.5);
    return {
      variant,
      median_ms: median.toFixed(0),
      ratio_to_200ms: (median / delayMs).toFixed(2),
      slowest_probe_ms: slowestMedian.toFixed(0),
      ratio_to_slowest: (median / slowestMedian).toFixed(2),
      met: median <= 1.3 * delayMs ? 'yes' : 'no',
    };
  };
  // The target is read against the server's 200 ms; the slowest probe as measured (its request on a
  // loaded machine takes longer than the server's delay) is shown beside it.
  table(`health-check over 20 probes of 200 ms each (median of ${MEASURED} runs after ${WARM_UP} warm-up runs) - target <= 1.3x the slowest probe (260 ms)`, [
    row(shipped, 'health-check workflow (start -> result), as shipped'),
    { ...row(perRun, 'the same, workflow modules evaluated for each run (before)'), met: '-' },
    { variant: 'runbook by hand (20 sequential curls)', median_ms: (20 * delayMs).toFixed(0), ratio_to_200ms: '20.00', slowest_probe_ms: '-', ratio_to_slowest: '-', met: '-' },
  ]);
}

/** A service that takes `readyMs` to come up: a detached HTTP server that starts listening after the delay. */
async function stackStartOverhead(client: Client, native: NativeConnection, namespace: string, address: string): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-stack-'));
  const readyMs = 1500;
  const script = path.join(dir, 'svc.mjs');
  await writeFile(
    script,
    `import http from 'node:http'; import fs from 'node:fs';
const [port, pidFile, delay] = process.argv.slice(2);
fs.writeFileSync(pidFile, String(process.pid));
setTimeout(() => http.createServer((q, s) => s.end('ok')).listen(Number(port), '127.0.0.1'), Number(delay));`,
  );
  const starter = path.join(dir, 'start.mjs');
  await writeFile(
    starter,
    `import { spawn, spawnSync } from 'node:child_process';
const c = spawn(process.execPath, process.argv.slice(2), { detached: true, stdio: 'ignore' }); c.unref();`,
  );
  const ports = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const service = (name: string, group: string, port: number) => ({
    name,
    group,
    driver: {
      type: 'command',
      start: [process.execPath, starter, script, String(port), path.join(dir, `${name}.pid`), String(readyMs)],
      stop: ['pkill', '-f', `${script} ${port}`],
    },
    probes: [{ type: 'http', url: `http://127.0.0.1:${port}/` }],
  });
  const text = stringify({
    services: [service('db', 'infra', ports[0]!), service('cache', 'infra', ports[1]!), service('api', 'apps', ports[2]!), service('web', 'apps', ports[3]!)],
    stack: { groups: [{ name: 'infra', waitTimeoutSeconds: 60 }, { name: 'apps', waitTimeoutSeconds: 60 }], pollIntervalSeconds: 0.1 },
    preflight: { ports: [], minDiskGb: 0, minMemoryGb: 0 },
  });
  const loaded = { config: parseConfig(text, 'bench'), path: 'bench.yaml', dir };
  const taskQueue = `bench-stack-${Date.now()}`;
  const bundle = await bundleRunbookWorkflows({ logger: quiet });
  const { worker } = await createRunbookWorker({ loaded, settings: { address, namespace, taskQueue }, connection: native, logger, workflowBundle: bundle });
  const stopAll = () => new Promise((resolve) => spawn('pkill', ['-f', script]).on('exit', resolve));
  const cfgServices = loaded.config.services;
  // The same steps by hand: each group's start commands at once, then poll until every service answers.
  const byHand = async (): Promise<number> => {
    const t = performance.now();
    for (const group of ['infra', 'apps']) {
      const svcs = cfgServices.filter((s) => s.group === group);
      await Promise.all(
        svcs.map((s) => {
          const argv = (s.driver as { start: string[] }).start;
          return new Promise((resolve) => spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' }).on('exit', resolve));
        }),
      );
      for (;;) {
        const ok = await Promise.all(
          svcs.map((s) => fetch((s.probes[0] as { url: string }).url).then((r) => r.ok, () => false)),
        );
        if (ok.every(Boolean)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return performance.now() - t;
  };
  const hand: number[] = [];
  for (let i = 0; i < 3; i++) {
    await stopAll();
    await new Promise((r) => setTimeout(r, 300));
    hand.push(await byHand());
  }
  const wall: number[] = [];
  await worker.runUntil(async () => {
    for (let i = 0; i < 3; i++) {
      await stopAll();
      await new Promise((r) => setTimeout(r, 300));
      const t = performance.now();
      const r = (await client.workflow.execute('stack-start', { taskQueue, workflowId: `bench-stack-${Date.now()}`, args: [{}] })) as StackStartResult;
      if (!r.ok) throw new Error('stack-start failed');
      wall.push(performance.now() - t);
    }
  });
  await stopAll();
  await rm(dir, { recursive: true, force: true });
  wall.sort((a, b) => a - b);
  hand.sort((a, b) => a - b);
  const own = quantile(hand, 0.5);
  const median = quantile(wall, 0.5);
  table(`stack-start over 2 groups x 2 services that each take ${readyMs} ms to be ready (3 runs each) - target <= 1 s over their own readiness`, [
    { variant: 'same start commands by hand, polled every 100 ms', median_ms: own.toFixed(0), overhead_ms: '-' },
    { variant: 'stack-start workflow (preflight, 2 groups, final health)', median_ms: median.toFixed(0), overhead_ms: (median - own).toFixed(0) },
  ]);
}

const SECTIONS = ['bundle', 'steps', 'health', 'stack', 'cli', 'scale', 'database'] as const;

/** `npm run bench -- steps bundle` runs only those sections; no argument, all of them. */
async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !(SECTIONS as readonly string[]).includes(w));
  if (unknown.length > 0) throw new Error(`unknown bench section ${unknown.join(', ')}; choose from ${SECTIONS.join(', ')}`);
  const run = (section: (typeof SECTIONS)[number]) => wanted.length === 0 || wanted.includes(section);
  // The SDK's default runtime logs every worker state change at INFO: keep the tables readable.
  installRuntime({ logger });
  const temporal = await benchTemporal(logger);
  const { address, namespace, client, native } = temporal;
  try {
    if (run('bundle')) await bundleSize();
    if (run('steps')) await stepOverhead(temporal);
    if (run('health')) await healthFanOut(client, native, namespace, address);
    if (run('stack')) await stackStartOverhead(client, native, namespace, address);
    if (run('cli')) await cliStartup(temporal, logger);
    // Its own dev server per workload, started and stopped inside.
    if (run('scale')) await scale(logger);
    // db-backup against pg_dump -Fc and pitr-restore against the steps by hand (bench/database.ts,
    // its own dev server and PostgreSQL), in a process of its own: it runs its benchmark on import.
    if (run('database')) {
      const db = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./database.ts', import.meta.url))], { stdio: 'inherit' });
      if (db.status !== 0) throw new Error(`bench/database.ts exited ${db.status}`);
    }
  } finally {
    await temporal.close();
  }
}

await main();
