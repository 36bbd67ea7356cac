import { createServer, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, type TemporalFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorTypes } from '../../common/errors.js';
import { INPUT_FIELDS, InputError, parseInput } from '../../common/inputs.js';
import { incidentQuery, timelineQuery } from '../../common/incident/messages.js';
import { pendingApprovalQuery, progressQuery } from '../../common/messages.js';
import { PROCEDURE_IDS, type ProcedureId } from '../../common/procedures.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { freePort } from '../fixtures/servers.js';
import { anyInput, conforms } from './arbitraries.js';
import { quietSdkWarnings } from './quiet.js';

/**
 * Every procedure's input validation under fuzzing (fast-check), then a sample of fuzzed
 * inputs run for real: no input may leave a run stuck on a failing workflow task.
 */

const SEED = 20261123;

/** Each problem of an InputError names a field of the spec, an unknown field, or says the input must be an object. */
function problemIsClear(procedure: ProcedureId, problem: string): boolean {
  const fields = Object.keys(INPUT_FIELDS[procedure]);
  return (
    fields.some((f) => problem.startsWith(`${f}: `)) ||
    /^unknown field "(?:[^"\\]|\\.)*(?:…)?": expected one of /.test(problem) ||
    /^\d+ more unknown fields$/.test(problem) ||
    problem === 'expected one JSON object, e.g. {}'
  );
}

describe('parseInput under fuzzing (1000 cases per procedure)', () => {
  for (const procedure of PROCEDURE_IDS) {
    it(procedure, () => {
      const fields = INPUT_FIELDS[procedure];
      fc.assert(
        fc.property(anyInput(procedure), (input) => {
          let value: Record<string, unknown>;
          try {
            value = parseInput(procedure, input);
          } catch (err) {
            if (!(err instanceof InputError)) throw new Error(`not an InputError: ${String(err)}`);
            expect(err.message.startsWith(`invalid input for ${procedure}: `)).toBe(true);
            expect(err.problems.length).toBeGreaterThan(0);
            for (const p of err.problems) {
              if (!problemIsClear(procedure, p)) throw new Error(`problem names no field: ${JSON.stringify(p).slice(0, 300)}`);
            }
            // A refusal is bounded: a thousand unknown keys do not make a megabyte of error.
            expect(err.message.length).toBeLessThan(20_000);
            return;
          }
          expect(value !== null && typeof value === 'object' && !Array.isArray(value)).toBe(true);
          for (const key of Object.keys(value)) {
            if (!Object.hasOwn(fields, key)) throw new Error(`accepted unknown key ${JSON.stringify(key)}`);
          }
          for (const [name, spec] of Object.entries(fields)) {
            const v = Object.hasOwn(value, name) ? value[name] : undefined;
            if (v === undefined) {
              if (spec.required) throw new Error(`accepted without required ${name}`);
            } else if (!conforms(spec, v)) {
              throw new Error(`accepted ${name} = ${JSON.stringify(v)?.slice(0, 200)} (kind ${spec.kind})`);
            }
          }
        }),
        { numRuns: 1000, seed: SEED },
      );
    });
  }
});

// ---------------------------------------------------------------- live runs

/** Failure types that tell the user what to fix; anything else (a TypeError, a raw driver error) is not clear. */
const CLEAR_FAILURES = new Set<string>([
  ErrorTypes.InvalidInput,
  ErrorTypes.InvalidConfig,
  ErrorTypes.UnknownService,
  ErrorTypes.UnsupportedAction,
  ErrorTypes.PreflightFailed,
  ErrorTypes.ApprovalRejected,
  ErrorTypes.ApprovalTimedOut,
  ErrorTypes.HealthTimeout,
]);

/** The innermost failure of a failed run (an activity's error sits under ActivityFailure, a child's under ChildWorkflowFailure). */
function rootFailure(err: unknown): TemporalFailure | Error | undefined {
  let e: unknown = err instanceof WorkflowFailedError ? err.cause : err;
  while (e instanceof Error && (e as { cause?: unknown }).cause instanceof Error) e = (e as { cause?: unknown }).cause;
  return e instanceof Error ? e : undefined;
}

interface Outcome {
  procedure: ProcedureId;
  workflowId: string;
  input: unknown;
  state: 'completed' | 'failed' | 'awaiting-approval' | 'open' | 'stuck';
  detail: string;
}

/** One look at a run: its outcome once it settled in an acceptable state, undefined while it is still getting there. */
async function checkOnce(procedure: ProcedureId, handle: WorkflowHandle, input: unknown, pastDeadline: boolean): Promise<Outcome | undefined> {
  const base = { procedure, workflowId: handle.workflowId, input };
  const d = await handle.describe();
  if (d.status.name === 'COMPLETED') return { ...base, state: 'completed', detail: '' };
  if (d.status.name === 'FAILED') {
    const err = await handle.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    const root = rootFailure(err);
    const type = root instanceof ApplicationFailure ? (root.type ?? 'Error') : (root?.name ?? 'unknown');
    const clear = root instanceof ApplicationFailure && CLEAR_FAILURES.has(type) && root.message.length > 0;
    return { ...base, state: clear ? 'failed' : 'stuck', detail: `${type}: ${root?.message ?? String(err)}` };
  }
  if (d.status.name !== 'RUNNING') return { ...base, state: 'stuck', detail: `status ${d.status.name}` };
  const pending = await handle.query(pendingApprovalQuery).catch(() => null);
  if (pending) return { ...base, state: 'awaiting-approval', detail: pending.step };
  if (procedure === 'incident') {
    // An incident stays open by design (it waits for people); it must have declared itself and paged.
    const timeline = await handle.query(timelineQuery).catch(() => null);
    if (timeline?.some((e) => e.kind === 'declared')) return { ...base, state: 'open', detail: 'declared, waiting for people' };
  }
  if (procedure === 'health-watch') {
    // A watch samples for its window by design (by default the seed's 10 min); it must be sampling.
    const progress = await handle.query(progressQuery).catch(() => null);
    if (progress?.currentStep === 'watch' && progress.steps.find((s) => s.id === 'watch')?.detail) return { ...base, state: 'open', detail: 'watching' };
  }
  return pastDeadline ? { ...base, state: 'stuck', detail: 'still running without a pending approval' } : undefined;
}

async function inBatches<T, R>(items: readonly T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

describe('fuzzed runs never leave a workflow task failing', () => {
  let tcp: Server;
  let tcpPort: number;
  let closedPort: number;

  beforeAll(async () => {
    tcp = createServer((s) => s.end());
    tcpPort = await freePort();
    await new Promise<void>((resolve) => tcp.listen(tcpPort, '127.0.0.1', resolve));
    closedPort = await freePort();
  });

  afterAll(async () => {
    await new Promise((resolve) => tcp?.close(resolve));
  });

  it('runs a sample of valid and invalid inputs of every procedure', { timeout: 180_000 }, async () => {
    const harmless = (name: string, group: string) => ({
      name,
      group,
      driver: {
        type: 'command',
        start: ['true'],
        stop: ['true'],
        restart: ['true'],
        rebuild: ['true'],
        forceRecreate: ['true'],
        status: ['true'],
        logs: ['true'],
        clean: ['true'],
      },
      probes: [{ type: 'tcp', host: '127.0.0.1', port: tcpPort, timeoutMs: 1000 }],
    });
    // No databases, routers, Prometheus or webhooks: a run that needs one fails early on config.
    const loaded = await writeConfig({
      environment: 'fuzz',
      services: [harmless('api', 'apps'), harmless('cache', 'infra')],
      stack: {
        groups: [
          { name: 'infra', waitTimeoutSeconds: 5, runMigrationsAfter: false },
          { name: 'apps', waitTimeoutSeconds: 5, runMigrationsAfter: false },
        ],
        pollIntervalSeconds: 0.2,
      },
      preflight: { ports: [], minDiskGb: 0, minMemoryGb: 0, files: [] },
      approvals: { timeoutSeconds: 1, approvers: { default: ['alice', 'bob'] } },
    });

    const perProcedure = 15;
    const samples = PROCEDURE_IDS.flatMap((procedure, i) =>
      fc.sample(anyInput(procedure, `127.0.0.1:${closedPort}`), { numRuns: perProcedure, seed: SEED + i }).map((input) => ({ procedure, input })),
    );

    const restoreLogs = quietSdkWarnings();
    const outcomes = await withWorker(loaded, async ({ client, taskQueue }) => {
      const handles = await Promise.all(
        samples.map(({ procedure, input }, n) =>
          client.workflow.start(procedure, {
            taskQueue,
            workflowId: `fuzz-${procedure}-${n}-${Date.now().toString(36)}`,
            args: input === undefined ? [] : [input],
            workflowExecutionTimeout: '5 minutes',
          }),
        ),
      );
      // A hang guard, not a speed target: hundreds of runs share two cores with the dev server.
      const deadline = Date.now() + 60_000;
      const settled = new Map<number, Outcome>();
      for (;;) {
        const open = samples.map((_, i) => i).filter((i) => !settled.has(i));
        if (open.length === 0) break;
        const past = Date.now() > deadline;
        await inBatches(open, 20, async (i) => {
          const o = await checkOnce(samples[i]!.procedure, handles[i]!, samples[i]!.input, past);
          if (o) settled.set(i, o);
        });
        await sleep(500);
      }
      // Triage runs an incident started are runs too.
      const children: WorkflowHandle[] = [];
      for (const o of [...settled.values()].filter((x) => x.procedure === 'incident')) {
        const state = await client.workflow.getHandle(o.workflowId).query(incidentQuery).catch(() => null);
        for (const id of state?.triageRuns ?? []) children.push(client.workflow.getHandle(id));
      }
      const all = [...handles, ...children];
      const taskFailures: string[] = [];
      await inBatches(all, 20, async (h) => {
        const history = await h.fetchHistory();
        // UnhandledCommand is the server asking for one more task (an activity finished while the run
        // was failing); the next task goes on. Any other task failure is a run stuck on its input.
        const bad = (history.events ?? []).find(
          (e) => e.workflowTaskFailedEventAttributes && e.workflowTaskFailedEventAttributes.cause !== temporal.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
        );
        if (bad) taskFailures.push(`${h.workflowId}: ${bad.workflowTaskFailedEventAttributes?.failure?.message ?? 'workflow task failed'}`);
      });
      await inBatches(all, 20, async (h) => {
        if ((await h.describe()).status.name === 'RUNNING') await h.terminate('fuzz test done');
      });
      expect(taskFailures).toEqual([]);
      return [...settled.values()];
    }).finally(restoreLogs);

    const stuck = outcomes.filter((o) => o.state === 'stuck');
    expect(stuck.map((o) => `${o.procedure} ${JSON.stringify(o.input)?.slice(0, 200)} -> ${o.detail}`)).toEqual([]);
    expect(outcomes).toHaveLength(PROCEDURE_IDS.length * perProcedure);
    // The sample exercised both sides: runs refused for their input, and runs that went further.
    expect(outcomes.some((o) => o.state === 'failed' && /^InvalidInput: invalid input for /.test(o.detail))).toBe(true);
    expect(outcomes.some((o) => o.state === 'completed')).toBe(true);
    expect(outcomes.some((o) => o.state === 'awaiting-approval' || o.detail.startsWith(ErrorTypes.ApprovalTimedOut))).toBe(true);
  });
});
