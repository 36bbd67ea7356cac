/**
 * Start-up of the `runbook` CLI (compiled dist/, as users run it): wall time of `runbook --help`
 * and of `runbook status <id>` on a run waiting for approval, each a fresh process, 10 runs after
 * a warm-up. Part of `npm run bench`; alone: `npx tsx bench/cli.ts` (TEMPORAL_ADDRESS or its own
 * in-memory dev server).
 */
import { spawn, spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { pendingApprovalQuery } from '../common/messages.js';
import { parseConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { bundleRunbookWorkflows, createRunbookWorker, installRuntime } from '../worker/main.js';
import { quietLogger as quiet, stats, table } from './report.js';
import { benchTemporal, type BenchTemporal } from './temporal.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUNS = 10;

/** Wall time of one process, spawn to exit; it must exit 0. */
function timed(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr.trim()}`))));
  });
}

async function series(argv: string[], env: NodeJS.ProcessEnv): Promise<number[]> {
  await timed(argv, env);
  const walls: number[] = [];
  for (let i = 0; i < RUNS; i++) walls.push(await timed(argv, env));
  return walls;
}

export async function cliStartup(temporal: BenchTemporal, logger = createLogger({ component: 'bench' }, 'warn')): Promise<void> {
  // The CLI runs dist/: build it when a source is newer, so the figures are of the current code.
  const build = spawnSync(process.execPath, ['bin/build.mjs', '--if-stale'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('npm run build failed');

  const { address, namespace, client, native } = temporal;
  const taskQueue = `bench-cli-${Date.now()}`;
  const text = JSON.stringify({
    services: [{ name: 'web', group: 'apps', driver: { type: 'command', status: ['true'], stop: ['true'], clean: ['true'] }, probes: [{ type: 'tcp', host: '127.0.0.1', port: 9 }] }],
    approvals: { approvers: { default: ['alice', 'bob'] } },
  });
  const loaded = { config: parseConfig(text, 'bench'), path: 'bench.yaml', dir: ROOT };
  const bundle = await bundleRunbookWorkflows({ logger: quiet });
  const { worker } = await createRunbookWorker({ loaded, settings: { address, namespace, taskQueue }, connection: native, logger, workflowBundle: bundle });
  const env = { ...process.env, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: namespace, RUNBOOK_TASK_QUEUE: taskQueue };
  const runbook = (...args: string[]) => [process.execPath, 'bin/runbook.mjs', ...args];

  await worker.runUntil(async () => {
    // A run as `runbook status` usually meets one: waiting for an approval, answered by the worker's queries.
    const workflowId = `bench-cli-${Date.now()}`;
    const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId, args: [{ clean: true, requestedBy: 'bench' }] });
    for (let i = 0; !(await handle.query(pendingApprovalQuery)); i++) {
      if (i > 100) throw new Error('stack-stop did not reach its approval');
      await new Promise((r) => setTimeout(r, 100));
    }
    const load = loadavg()[0]!.toFixed(1);
    const node = await series([process.execPath, '-e', '0'], env);
    const help = await series(runbook('--help'), env);
    const status = await series(runbook('status', workflowId), env);
    table(`runbook CLI start-up, a fresh process each (${RUNS} runs after a warm-up, load average ${load})`, [
      { ...stats('node -e 0 (Node alone)', node), target: '-' },
      { ...stats('runbook --help', help), target: 'median <= 300 ms' },
      { ...stats('runbook status <id> (run waiting for approval)', status), target: 'median <= 600 ms' },
    ]);
    await handle.terminate('benchmark done');
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const logger = createLogger({ component: 'bench' }, 'warn');
  installRuntime({ logger });
  const temporal = await benchTemporal(logger);
  try {
    await cliStartup(temporal, logger);
  } finally {
    await temporal.close();
  }
}
