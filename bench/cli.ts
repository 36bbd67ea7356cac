/**
 * Start-up of the `runbook` CLI (compiled dist/, as users run it), each a fresh process, 10 runs
 * after a warm-up, printed with its target and whether the median meets it:
 *   runbook --help                      <= 300 ms
 *   runbook status <id>                 <= 600 ms (a run waiting for approval, as status usually meets one)
 *   runbook run health-check --wait     <= 500 ms end to end (a healthy service: an HTTP probe and a TCP probe)
 * beside Node's own start-up and the health-check workflow alone (started and awaited in this process),
 * which tell how much of a figure the CLI can still change.
 * status and run are also timed from the compiled ES modules (RUNBOOK_CLI_BUNDLE=0), alternated with
 * the bundle, to show what the one-file bundle and its code cache save (bin/bundle-cli.mjs). Part of `npm run bench`; alone:
 * `npx tsx bench/cli.ts` (TEMPORAL_ADDRESS or its own in-memory dev server). Payloads are encrypted
 * as in the demo when RUNBOOK_CODEC_KEY(_FILE) is set, for the CLI and the worker alike.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { pendingApprovalQuery } from '../common/messages.js';
import { parseConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { bundleRunbookWorkflows, createRunbookWorker, installRuntime } from '../worker/main.js';
import { quantile, quietLogger as quiet, stats, table } from './report.js';
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

async function series(run: () => Promise<number>): Promise<number[]> {
  await run();
  const walls: number[] = [];
  for (let i = 0; i < RUNS; i++) walls.push(await run());
  return walls;
}

/** Two commands alternated, one warm-up each: their figures meet the same load. */
async function pair(a: () => Promise<number>, b: () => Promise<number>): Promise<[number[], number[]]> {
  await a();
  await b();
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    xs.push(await a());
    ys.push(await b());
  }
  return [xs, ys];
}

/** A stats row with the target and whether the median meets it. */
function judged(label: string, xs: number[], targetMs?: number): Record<string, string | number> {
  const median = quantile([...xs].sort((a, b) => a - b), 0.5);
  return {
    ...stats(label, xs),
    target: targetMs === undefined ? '-' : `median <= ${targetMs} ms`,
    met: targetMs === undefined ? '-' : median <= targetMs ? 'yes' : 'NO',
  };
}

export async function cliStartup(temporal: BenchTemporal, logger = createLogger({ component: 'bench' }, 'warn')): Promise<void> {
  // The CLI runs dist/: build it when a source is newer, so the figures are of the current code.
  const build = spawnSync(process.execPath, ['bin/build.mjs', '--if-stale'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('npm run build failed');

  // The service health-check probes: an HTTP endpoint (status and body) and its TCP port.
  const server = http.createServer((_req, res) => res.end('healthy'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const { address, namespace, client, native } = temporal;
  const taskQueue = `bench-cli-${Date.now()}`;
  const text = JSON.stringify({
    services: [
      {
        name: 'web',
        group: 'apps',
        driver: { type: 'command', status: ['true'], stop: ['true'], clean: ['true'] },
        probes: [
          { type: 'http', url: `http://127.0.0.1:${port}/healthz`, bodyMatch: 'healthy' },
          { type: 'tcp', host: '127.0.0.1', port },
        ],
      },
    ],
    approvals: { approvers: { default: ['alice', 'bob'] } },
  });
  const loaded = { config: parseConfig(text, 'bench'), path: 'bench.yaml', dir: ROOT };
  const bundle = await bundleRunbookWorkflows({ logger: quiet });
  const { worker } = await createRunbookWorker({ loaded, settings: { address, namespace, taskQueue }, connection: native, logger, workflowBundle: bundle });
  // `runbook run` checks the input against the config it sees (service names, environment): the worker's.
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-cli-'));
  const configFile = path.join(dir, 'runbooks.json');
  await writeFile(configFile, text);
  const env = { ...process.env, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: namespace, RUNBOOK_TASK_QUEUE: taskQueue, RUNBOOK_CONFIG: configFile };
  const runbook = (...args: string[]) => () => timed([process.execPath, 'bin/runbook.mjs', ...args], env);
  const esm = (...args: string[]) => () => timed([process.execPath, 'bin/runbook.mjs', ...args], { ...env, RUNBOOK_CLI_BUNDLE: '0' });

  try {
    await worker.runUntil(async () => {
      // A run as `runbook status` usually meets one: waiting for an approval, answered by the worker's queries.
      const workflowId = `bench-cli-${Date.now()}`;
      const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId, args: [{ clean: true, requestedBy: 'bench' }] });
      for (let i = 0; !(await handle.query(pendingApprovalQuery)); i++) {
        if (i > 100) throw new Error('stack-stop did not reach its approval');
        await new Promise((r) => setTimeout(r, 100));
      }
      const loadBefore = loadavg()[0]!.toFixed(1);
      const node = await series(() => timed([process.execPath, '-e', '0'], env));
      const help = await series(runbook('--help'));
      // The one-file bundle with its code cache (what short commands run) against the compiled ES
      // modules it replaces (RUNBOOK_CLI_BUNDLE=0), alternated run by run so both meet the same load.
      const [status, statusEsm] = await pair(runbook('status', workflowId), esm('status', workflowId));
      const [run, runEsm] = await pair(runbook('run', 'health-check', '--wait'), esm('run', 'health-check', '--wait'));
      let n = 0;
      const workflow = await series(async () => {
        const started = performance.now();
        await client.workflow.execute('health-check', { taskQueue, workflowId: `bench-cli-hc-${Date.now()}-${n++}`, args: [{ requestedBy: 'bench' }] });
        return performance.now() - started;
      });
      const loadAfter = loadavg()[0]!.toFixed(1);
      table(`runbook CLI start-up, a fresh process each (${RUNS} runs after a warm-up; load average ${loadBefore} before, ${loadAfter} after)`, [
        judged('node -e 0 (Node alone)', node),
        judged('runbook --help', help, 300),
        judged('runbook status <id> (run waiting for approval)', status, 600),
        judged('  the same from the ES modules, not the bundle', statusEsm),
        judged('runbook run health-check --wait (2 probes, healthy)', run, 500),
        judged('  the same from the ES modules, not the bundle', runEsm),
        judged('  of which the workflow alone (start -> result, in-process client)', workflow),
      ]);
      await handle.terminate('benchmark done');
    });
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
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
