import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { PROCEDURE_IDS } from '../../common/procedures.js';
import { payloadEncryptionFromEnv } from '../../lib/codec/index.js';
import { historyFromText } from '../fixtures/history.js';
import { WORKFLOWS_PATH } from '../../worker/main.js';
import { quietBundlerLogger } from '../fixtures/runbook-worker.js';

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

  // Subfolders keep histories recorded by earlier workflow code (v1-before-quorum: approvals
  // without quorum or named steps), proving runs in flight across an upgrade still replay.
  it('replays every history, old and new, against the current workflow code without non-determinism', async () => {
    const files = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.json')).sort();
    const histories = await Promise.all(
      files.map(async (f) => ({ workflowId: f.replace(/\.json$/, ''), history: historyFromText(await readFile(path.join(dir, f), 'utf8')) })),
    );
    const failures: string[] = [];
    // Recorded payloads are decrypted with the run's (test) key; older plain ones pass through. The
    // failure converter is left out on purpose: replay writes no history, and with it a replay
    // failure would read "Encoded failure" instead of saying what went wrong.
    const { payloadCodecs } = payloadEncryptionFromEnv().dataConverter;
    for await (const result of Worker.runReplayHistories(
      { workflowBundle: await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundlerLogger }), dataConverter: { payloadCodecs } },
      histories,
    )) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
    expect(histories.length).toBeGreaterThanOrEqual(PROCEDURE_IDS.length);
  });

  // Without this, a replay test that silently passed everything (no histories read, the wrong
  // bundle, errors swallowed) would look the same as one that proves determinism.
  it('fails, naming the non-determinism, when the workflow code changed its commands', async () => {
    const file = 'health-check.json';
    const history = historyFromText(await readFile(path.join(dir, file), 'utf8'));
    const { payloadCodecs } = payloadEncryptionFromEnv().dataConverter;
    const changed = path.resolve('tests/replay/changed/workflows.ts');
    const err = await Worker.runReplayHistory(
      { workflowBundle: await bundleWorkflowCode({ workflowsPath: changed, logger: quietBundlerLogger }), dataConverter: { payloadCodecs } },
      history,
      'health-check',
    ).catch((e: unknown) => e);
    expect((err as Error).name).toBe('DeterminismViolationError');
    expect(String((err as Error).message)).toMatch(/Nondeterminism|TMPRL1100/i);
  });
});

