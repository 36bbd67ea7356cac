import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { PROCEDURE_IDS } from '../../common/procedures.js';
import { historyFromText } from '../fixtures/history.js';
import { workflowBundle } from '../fixtures/runbook-worker.js';

const dir = path.resolve('tests/replay/histories');

describe('replay of recorded histories', () => {
  it('has at least one history per workflow type', async () => {
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
    const types = new Set<string>();
    for (const f of files) {
      const json = JSON.parse(await readFile(path.join(dir, f), 'utf8')) as {
        events: Array<{ workflowExecutionStartedEventAttributes?: { workflowType?: { name?: string } } }>;
      };
      const name = json.events[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name;
      if (name) types.add(name);
    }
    expect([...types].sort()).toEqual(expect.arrayContaining([...PROCEDURE_IDS].sort()));
  });

  it('replays every history against the current workflow code without non-determinism', async () => {
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
    const histories = await Promise.all(
      files.map(async (f) => ({ workflowId: f.replace(/\.json$/, ''), history: historyFromText(await readFile(path.join(dir, f), 'utf8')) })),
    );
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories)) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
    expect(histories.length).toBeGreaterThanOrEqual(PROCEDURE_IDS.length);
  });
});
