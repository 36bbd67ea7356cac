import http from 'node:http';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { pendingApprovalQuery, progressQuery } from '../../common/messages.js';
import type { HealthCheckResult } from '../../common/types.js';
import { payloadEncryptionFromEnv } from '../../lib/codec/index.js';
import { freePort } from '../fixtures/servers.js';
import { withWorker, workflowBundle, writeConfig } from '../fixtures/runbook-worker.js';

/**
 * A run queried from its very first moment (`runbook run --wait`, a status right after the
 * start) answers, finishes, and its history replays. A first step that lets a query end the
 * first workflow task early would leave patch markers in another task than on replay: the run
 * would fail the next time a worker replays it (after a restart, or when it leaves the cache).
 */
describe('a run queried while it starts', () => {
  it('answers from the start, completes, and its history replays', async () => {
    const service = (name: string, group: string) => ({
      name,
      group,
      driver: { type: 'command', start: ['true'], stop: ['true'], status: ['true'] },
    });
    const loaded = await writeConfig({
      environment: 'qstart',
      services: [service('api', 'apps'), service('cache', 'infra')],
      stack: { groups: [{ name: 'infra', waitTimeoutSeconds: 5 }, { name: 'apps', waitTimeoutSeconds: 5 }], pollIntervalSeconds: 0.2 },
      approvals: { approvers: { default: ['alice', 'bob'] } },
    });
    const histories = await withWorker(loaded, async ({ client, taskQueue }) =>
      Promise.all(
        Array.from({ length: 6 }, async (_, i) => {
          const handle = await client.workflow.start('stack-stop', { taskQueue, workflowId: `qstart-${i}-${Date.now()}`, args: [{ requestedBy: 'alice' }] });
          const done = handle.result().then(() => true);
          let answered = 0;
          // Queries from the first moment until the run ends, as a follower does.
          while (!(await Promise.race([done, Promise.resolve(false)]))) {
            const [progress, pending] = await Promise.all([handle.query(progressQuery), handle.query(pendingApprovalQuery)]);
            expect(progress.procedure).toBe('stack-stop');
            expect(pending).toBeNull();
            answered++;
          }
          expect(answered).toBeGreaterThan(0);
          return { workflowId: handle.workflowId, history: await handle.fetchHistory() };
        }),
      ),
    );
    const { payloadCodecs } = payloadEncryptionFromEnv().dataConverter;
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle: await workflowBundle(), dataConverter: { payloadCodecs } }, histories)) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
  }, 120_000);

  // health-check takes its own change (all probes in one local activity) where RunContext takes
  // its changes: a query during its first task or its local activities must not move the marker.
  it('health-check, its probes in one local activity, answers from the start and replays', async () => {
    const server = http.createServer((_req, res) => setTimeout(() => res.end('healthy'), 100));
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const loaded = await writeConfig({
      environment: 'qstart',
      services: ['api', 'web'].map((name) => ({
        name,
        group: 'apps',
        driver: { type: 'command', status: ['true'] },
        probes: [{ type: 'http', url: `http://127.0.0.1:${port}/${name}`, bodyMatch: 'healthy' }],
      })),
    });
    try {
      const histories = await withWorker(loaded, async ({ client, taskQueue }) =>
        Promise.all(
          Array.from({ length: 6 }, async (_, i) => {
            const handle = await client.workflow.start('health-check', { taskQueue, workflowId: `qstart-hc-${i}-${Date.now()}`, args: [{ requestedBy: 'alice' }] });
            const result = handle.result() as Promise<HealthCheckResult>;
            const done = result.then(() => true);
            let answered = 0;
            while (!(await Promise.race([done, Promise.resolve(false)]))) {
              const progress = await handle.query(progressQuery);
              expect(progress.procedure).toBe('health-check');
              answered++;
            }
            expect(answered).toBeGreaterThan(0);
            expect((await result).results.map((r) => r.status)).toEqual(['healthy', 'healthy']);
            return { workflowId: handle.workflowId, history: await handle.fetchHistory() };
          }),
        ),
      );
      const { payloadCodecs } = payloadEncryptionFromEnv().dataConverter;
      const failures: string[] = [];
      for await (const result of Worker.runReplayHistories({ workflowBundle: await workflowBundle(), dataConverter: { payloadCodecs } }, histories)) {
        if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
      }
      expect(failures).toEqual([]);
    } finally {
      server.close();
    }
  }, 120_000);
});
