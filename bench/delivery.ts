/**
 * Delivery benchmarks, printed as tables. Not part of `npm test`.
 *   npx tsx bench/delivery.ts
 * Starts its own Temporal dev server (in memory) unless TEMPORAL_ADDRESS is set, a real
 * nginx, a real Prometheus and two demo services. Measures:
 *   - router update (write the upstream file, nginx -t, reload, old workers gone), median;
 *   - a failing analysis measurement -> traffic back at 0 % (target <= 2 s).
 */
import { WorkflowFailedError } from '@temporalio/client';
import type { ApplicationFailure } from '@temporalio/common';
import { stringify } from 'yaml';
import { createRouter } from '../activities/delivery/routers/index.js';
import { routerSchema } from '../common/delivery/config.js';
import type { CanaryDeployResult } from '../common/delivery/types.js';
import { parseConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { measureSplit, startDeliveryBed, startLoad } from '../tests/fixtures/delivery-traffic.js';
import { deliveryConfig, warmCanary } from '../tests/delivery/helpers.js';
import { bundleRunbookWorkflows, createRunbookWorker, installRuntime } from '../worker/main.js';
import { quietLogger as quiet, stats, table } from './report.js';
import { benchTemporal, type BenchTemporal } from './temporal.js';

const logger = createLogger({ component: 'bench' }, 'warn');

async function main(): Promise<void> {
  installRuntime({ logger });
  const bed = await startDeliveryBed();
  let temporal: BenchTemporal | undefined;
  try {
    // 1. Router update: write, nginx -t, reload (and, with pidFile, until the old workers are gone).
    const base = {
      type: 'nginx',
      configPath: bed.nginx.configPath,
      prefix: bed.nginx.prefix,
      upstreamFile: bed.nginx.upstreamFile,
      upstreamName: 'api',
      stable: new URL(bed.stable.httpUrl).host,
      canary: new URL(bed.canary.httpUrl).host,
    };
    const rows = [];
    for (const [label, extra] of [
      ['write + nginx -t + reload', {}],
      ['... + wait until old workers exit', { pidFile: bed.nginx.pidFile }],
    ] as const) {
      const router = createRouter('api', routerSchema.parse({ ...base, ...extra }), { env: process.env, logger, configDir: '/' });
      const times: number[] = [];
      for (let i = 0; i < 30; i++) times.push((await router.setWeight(i % 2 === 0 ? 25 : 50)).durationMs);
      rows.push(stats(label, times));
    }
    table('Router update (nginx, real master on loopback), 30 weight changes each', rows);

    // 2. Failing measurement -> traffic at 0 %.
    temporal = await benchTemporal(logger);
    const { address, namespace, client, native } = temporal;
    const taskQueue = `bench-delivery-${Date.now()}`;
    const config = parseConfig(stringify(deliveryConfig(bed, { analysis: { count: 1 } })), 'bench.yaml');
    const { worker } = await createRunbookWorker({
      loaded: { config, path: 'bench.yaml', dir: process.cwd() },
      settings: { address, namespace, taskQueue },
      connection: native,
      logger,
      env: process.env,
      workflowBundle: await bundleRunbookWorkflows({ logger: quiet }),
    });
    const reaction: number[] = [];
    const stable: number[] = [];
    await worker.runUntil(async () => {
      for (let i = 0; i < 5; i++) {
        await bed.startCanary();
        await bed.setCanary({ errorRate: 0.5 });
        await warmCanary(bed);
        const load = startLoad(bed.nginx.url, 60);
        const err = await client.workflow
          .execute('canary-deploy', { taskQueue, workflowId: `bench-canary-${Date.now()}`, args: [{ router: 'api', bakeSeconds: 1, requestedBy: 'bench' }] })
          .catch((e: unknown) => e);
        await load.stop();
        if (!(err instanceof WorkflowFailedError)) throw new Error(`expected a rolled-back canary, got ${JSON.stringify(err)}`);
        const result = (err.cause as ApplicationFailure).details![0] as CanaryDeployResult;
        reaction.push(Date.parse(result.trafficZeroAt!) - Date.parse(result.failedMeasurementAt!));
        stable.push((await measureSplit(bed.nginx.url, 400)).percent('1.0.0'));
      }
    });
    table('Failing analysis measurement -> traffic at 0 % (bad canary, 50 % errors; target <= 2000 ms)', [stats('measurement start -> weight 0 applied', reaction)]);
    console.log(`traffic on stable after each rollback (400 requests through nginx): ${stable.map((p) => `${p} %`).join(', ')}`);
  } finally {
    await bed.stop();
    await temporal?.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
