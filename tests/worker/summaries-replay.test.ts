import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { payloadEncryptionFromEnv } from '../../lib/codec/index.js';
import { historyFromText } from '../fixtures/history.js';
import { workflowBundle } from '../fixtures/runbook-worker.js';

/**
 * The workers' bundle carries the interceptor that adds summaries to activities and child runs
 * (workflows/shared/interceptors.ts). Summaries are user metadata, not commands: every recorded
 * history, made before they existed, still replays against that bundle.
 */
describe('summaries interceptor and replay', () => {
  it('replays every recorded history with the interceptor in the bundle', async () => {
    const dir = path.resolve('tests/replay/histories');
    const files = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.json')).sort();
    const histories = await Promise.all(
      files.map(async (f) => ({ workflowId: f.replace(/\.json$/, ''), history: historyFromText(await readFile(path.join(dir, f), 'utf8')) })),
    );
    const { payloadCodecs } = payloadEncryptionFromEnv().dataConverter;
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle: await workflowBundle(), dataConverter: { payloadCodecs } }, histories)) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
    expect(histories.length).toBeGreaterThan(20);
  }, 120_000);
});
