/**
 * Scale: N concurrent runs (1,000 unless SCALE_RUNS says otherwise) on one worker process, each
 * workload on a dev server of its own (lib/temporal/server-settings.ts as the project starts it):
 *   - health-check over a config with one service (an HTTP and a TCP probe served here), by
 *     `runbook worker` (the compiled CLI, as operators run it);
 *   - a synthetic 10-step run (bench/workflows.ts, one activity per step) by a TypeScript worker
 *     (bench/scale-worker.ts) and by a minimal Go SDK worker (bench/go-worker/) as the reference.
 * Prints wall time (first start to last close, from the server's own timestamps), runs/s, steps/s,
 * p50/p95 run latency (start to close), and the peak RSS (VmHWM) of the worker and the server, with
 * the worker's peak before the first run (its start-up) and its RSS once all runs closed.
 * Targets: all complete; the runbook worker's peak RSS <= 400 MB; TypeScript runs/s within 1.5x
 * of Go's. `npm run bench -- scale`, or alone `npx tsx bench/scale.ts` (SCALE_ONLY=health: the
 * runbook worker's workloads only). Not part of `npm test`.
 * Payloads are not encrypted here (the Go worker has no codec).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { createLogger, type Logger } from '../lib/logger.js';
import { startDevServer } from '../lib/temporal/dev-server.js';
import { quantile, table } from './report.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const GO_DIR = path.join(ROOT, 'bench', 'go-worker');
const RUNS = Number(process.env.SCALE_RUNS ?? 1000);
const STEPS = 10;

/** Peak (VmHWM) or current (VmRSS) resident set of a live process, in MB (Linux). */
function rssMb(pid: number | undefined, field: 'VmHWM' | 'VmRSS' = 'VmHWM'): number | undefined {
  if (pid === undefined) return undefined;
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : undefined;
}

/** The Go reference worker, built once per source version into the user's cache. */
function goWorkerBinary(logger: Logger): string {
  const hash = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go']) hash.update(readFileSync(path.join(GO_DIR, f)));
  const bin = path.join(homedir(), '.cache', 'durable-runbooks', `bench-go-worker-${hash.digest('hex').slice(0, 12)}`, 'bench-go-worker');
  if (existsSync(bin)) return bin;
  logger.warn({ bin }, 'building the Go reference worker (about 15 s once the Go SDK is in the module cache)');
  const env = { ...process.env, PATH: `/usr/local/go/bin:${process.env.PATH}`, GOTOOLCHAIN: 'local' };
  const r = spawnSync('go', ['build', '-o', bin, '.'], { cwd: GO_DIR, env, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`go build in ${GO_DIR} failed (exit ${r.status}); Go and the module proxy are needed for the reference worker`);
  return bin;
}

/** Spawns a worker process and resolves once it prints "ready". */
function startWorker(argv: string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let started = false;
    // Read to the end (a full pipe would stall the worker), kept only until it is ready.
    const onData = (d: Buffer) => {
      if (started) return;
      out += d.toString();
      if (ready.test(out)) {
        started = true;
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => started || reject(new Error(`${argv.join(' ')} exited ${code} before it was ready:\n${out.slice(-2000)}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

interface Outcome {
  workload: string;
  completed: number;
  wallS: number;
  latencies: number[];
  workerRssMb?: number;
  workerReadyRssMb?: number;
  workerEndRssMb?: number;
  serverRssMb?: number;
  steps: number;
}

/**
 * One workload on a fresh dev server: starts the worker, starts RUNS runs (at most 100 start
 * calls in flight), waits until none is running, and reads start and close times from visibility.
 */
async function workload(
  name: string,
  logger: Logger,
  steps: number,
  worker: (address: string, namespace: string, taskQueue: string) => Promise<ChildProcess>,
  start: (client: Client, taskQueue: string, i: number) => Promise<unknown>,
): Promise<Outcome> {
  const server = await startDevServer({ port: 0, ui: false, logger });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, namespace: server.namespace });
  const taskQueue = `bench-scale-${Date.now()}`;
  const child = await worker(server.address, server.namespace, taskQueue);
  // What the worker holds before any run: its start-up (the runbook worker bundles its workflows with webpack).
  const workerReadyRssMb = rssMb(child.pid);
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        while (next < RUNS) await start(client, taskQueue, next++);
      }),
    );
    const query = `TaskQueue = "${taskQueue}"`;
    for (let waited = 0; ; waited += 500) {
      const running = await client.workflow.count(`${query} AND ExecutionStatus = "Running"`);
      if (running.count === 0) break;
      if (waited > 30 * 60_000) throw new Error(`${running.count} runs still running after 30 min`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const latencies: number[] = [];
    let first = Infinity;
    let last = 0;
    let completed = 0;
    for await (const wf of client.workflow.list({ query })) {
      if (wf.status.name === 'COMPLETED') completed++;
      const s = wf.startTime.getTime();
      const c = wf.closeTime?.getTime() ?? s;
      latencies.push(c - s);
      first = Math.min(first, s);
      last = Math.max(last, c);
    }
    return { workload: name, completed, wallS: (last - first) / 1000, latencies: latencies.sort((a, b) => a - b), workerRssMb: rssMb(child.pid), workerReadyRssMb, workerEndRssMb: rssMb(child.pid, 'VmRSS'), serverRssMb: rssMb(server.pid), steps };
  } finally {
    await stop(child);
    await connection.close();
    await server.stop();
  }
}

function row(o: Outcome, targetRss?: number, goRunsPerS?: number): Record<string, string | number> {
  const rate = o.completed / o.wallS;
  const checks = [`${o.completed}/${RUNS} completed`];
  if (targetRss !== undefined && o.workerRssMb !== undefined) checks.push(`RSS ${o.workerRssMb <= targetRss ? '<=' : '>'} ${targetRss} MB`);
  if (goRunsPerS !== undefined) checks.push(`${(goRunsPerS / rate).toFixed(2)}x slower than Go (target <= 1.5x)`);
  const met = o.completed === RUNS && (targetRss === undefined || (o.workerRssMb ?? Infinity) <= targetRss) && (goRunsPerS === undefined || goRunsPerS / rate <= 1.5);
  return {
    workload: o.workload,
    wall_s: o.wallS.toFixed(1),
    'runs/s': rate.toFixed(1),
    'steps/s': o.steps ? ((o.completed * o.steps) / o.wallS).toFixed(0) : '-',
    p50_ms: quantile(o.latencies, 0.5).toFixed(0),
    p95_ms: quantile(o.latencies, 0.95).toFixed(0),
    worker_peak_rss_mb: o.workerRssMb?.toFixed(0) ?? '-',
    'of_which_start-up_mb': o.workerReadyRssMb?.toFixed(0) ?? '-',
    worker_rss_after_mb: o.workerEndRssMb?.toFixed(0) ?? '-',
    server_peak_rss_mb: o.serverRssMb?.toFixed(0) ?? '-',
    checks: checks.join('; '),
    met: met ? 'yes' : 'NO',
  };
}

export async function scale(logger: Logger = createLogger({ component: 'bench' }, 'warn')): Promise<void> {
  const build = spawnSync(process.execPath, ['bin/build.mjs', '--if-stale'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('npm run build failed');
  const goBin = process.env.SCALE_ONLY === 'health' ? '' : goWorkerBinary(logger);
  const probeTarget = http.createServer((_req, res) => res.end('healthy'));
  await new Promise<void>((resolve) => probeTarget.listen(0, '127.0.0.1', resolve));
  const port = (probeTarget.address() as AddressInfo).port;
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-scale-'));
  const configFile = path.join(dir, 'runbooks.json');
  await writeFile(
    configFile,
    JSON.stringify({
      services: [{ name: 'web', group: 'apps', driver: { type: 'command', status: ['true'], stop: ['true'] }, probes: [{ type: 'http', url: `http://127.0.0.1:${port}/healthz`, bodyMatch: 'healthy' }, { type: 'tcp', host: '127.0.0.1', port }] }],
      approvals: { approvers: { default: ['alice', 'bob'] } },
    }),
  );
  const baseEnv = { ...process.env };
  delete baseEnv.RUNBOOK_CODEC_KEY;
  delete baseEnv.RUNBOOK_CODEC_KEY_FILE;
  try {
    const health = await workload(
      `health-check (2 probes), runbook worker`,
      logger,
      0,
      (address, namespace, taskQueue) =>
        startWorker([process.execPath, 'bin/runbook.mjs', 'worker', '--config', configFile, '--metrics', 'off'], { ...baseEnv, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: namespace, RUNBOOK_TASK_QUEUE: taskQueue }, /worker started/),
      (client, taskQueue, i) => client.workflow.start('health-check', { taskQueue, workflowId: `scale-hc-${i}`, args: [{ requestedBy: 'bench' }] }),
    );
    // The same with the worker's cache of runs bounded (RUNBOOK_MAX_CACHED_WORKFLOWS): memory for CPU.
    const cached = Number(process.env.SCALE_MAX_CACHED ?? 250);
    const healthBounded = await workload(
      `health-check, runbook worker, RUNBOOK_MAX_CACHED_WORKFLOWS=${cached}`,
      logger,
      0,
      (address, namespace, taskQueue) =>
        startWorker([process.execPath, 'bin/runbook.mjs', 'worker', '--config', configFile, '--metrics', 'off'], { ...baseEnv, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: namespace, RUNBOOK_TASK_QUEUE: taskQueue, RUNBOOK_MAX_CACHED_WORKFLOWS: String(cached) }, /worker started/),
      (client, taskQueue, i) => client.workflow.start('health-check', { taskQueue, workflowId: `scale-hc-${i}`, args: [{ requestedBy: 'bench' }] }),
    );
    // SCALE_ONLY=health: the runbook worker's two workloads alone (its memory, without the Go comparison).
    if (process.env.SCALE_ONLY === 'health') {
      table(`Scale: ${RUNS} concurrent runs on one worker process, a fresh dev server per workload`, [row(health, 400), row(healthBounded, 400)]);
      return;
    }
    const synth = (label: string, worker: (a: string, n: string, q: string) => Promise<ChildProcess>) =>
      workload(label, logger, STEPS, worker, (client, taskQueue, i) => client.workflow.start('sequentialSteps', { taskQueue, workflowId: `scale-steps-${i}`, args: [STEPS] }));
    const ts = await synth(`${STEPS}-step synthetic, TypeScript worker`, (a, n, q) => startWorker([process.execPath, '--import', 'tsx', 'bench/scale-worker.ts', a, n, q], baseEnv, /ready/));
    const go = await synth(`${STEPS}-step synthetic, Go SDK worker (reference)`, (a, n, q) => startWorker([goBin, '-address', a, '-namespace', n, '-task-queue', q], baseEnv, /ready/));
    const goRate = go.completed / go.wallS;
    table(`Scale: ${RUNS} concurrent runs on one worker process, a fresh dev server per workload`, [row(health, 400), row(healthBounded, 400), row(ts, undefined, goRate), row(go)]);
  } finally {
    probeTarget.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await scale();
}
