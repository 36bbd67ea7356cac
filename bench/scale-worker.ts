/**
 * The TypeScript side of bench/scale.ts's synthetic workload: a worker process serving only
 * bench/workflows.ts (sequentialSteps, one activity per step), as the Go worker in
 * bench/go-worker/ does, so their peak RSS and throughput compare like for like.
 *   node --import tsx bench/scale-worker.ts <address> <namespace> <taskQueue>
 * Prints "ready" once polling; SIGTERM drains and exits.
 */
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { quietLogger } from './report.js';

const [address, namespace, taskQueue] = process.argv.slice(2);
if (!address || !namespace || !taskQueue) throw new Error('usage: scale-worker.ts <address> <namespace> <taskQueue>');
Runtime.install({ logger: { ...quietLogger, log() {} } });
const connection = await NativeConnection.connect({ address });
const worker = await Worker.create({
  connection,
  namespace,
  taskQueue,
  workflowBundle: await bundleWorkflowCode({ workflowsPath: fileURLToPath(new URL('./workflows.ts', import.meta.url)), logger: quietLogger }),
  activities: { step: async (i: number) => i },
});
process.stdout.write('ready\n');
await worker.run();
await connection.close();
