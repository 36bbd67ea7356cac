import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client, type ScheduleDescription, type ScheduleOptions } from '@temporalio/client';
import type { RunbookConfig } from '../../common/config-schema.js';
import type { ScheduleConfig } from '../../common/database/config.js';
import { InputError, parseInput } from '../../common/inputs.js';
import { isProcedureId, workflowIdFor, type ProcedureId } from '../../common/procedures.js';
import { RunbookProcedure } from '../../common/search-attributes.js';
import { runMetadata } from '../../common/summaries.js';
import { UserError } from '../operations.js';

/**
 * `runbook schedules apply|list|trigger|pause|unpause`: the Temporal Schedules declared in databaseOps.schedules
 * (daily backup, monthly vacuum, weekly restore drill, ...) made to exist exactly as declared.
 * Ours are recognised by id prefix and a memo; each carries a hash of its declaration, so a
 * second apply with the same config changes nothing.
 */

const MANAGED_BY = 'durable-runbooks';

export function scheduleId(environment: string, id: string): string {
  return `runbook--${environment}--${id}`;
}

function prefix(environment: string): string {
  return `runbook--${environment}--`;
}

export interface ScheduleChange {
  scheduleId: string;
  change: 'created' | 'updated' | 'unchanged' | 'deleted';
}

/** Checks every declared schedule (procedure id, input) before anything changes. */
export function validateSchedules(config: RunbookConfig): Array<ScheduleConfig & { procedure: ProcedureId }> {
  const schedules = config.databaseOps?.schedules ?? [];
  const problems: string[] = [];
  schedules.forEach((s, i) => {
    if (!isProcedureId(s.procedure)) {
      problems.push(`databaseOps.schedules[${i}].procedure: unknown procedure "${s.procedure}"`);
      return;
    }
    try {
      parseInput(s.procedure, s.input);
    } catch (err) {
      if (err instanceof InputError) problems.push(`databaseOps.schedules[${i}].input: ${err.problems.join('; ')}`);
      else throw err;
    }
  });
  if (problems.length > 0) throw new UserError(`invalid schedules, nothing was changed:\n  - ${problems.join('\n  - ')}`);
  return schedules as Array<ScheduleConfig & { procedure: ProcedureId }>;
}

function optionsFor(config: RunbookConfig, s: ScheduleConfig & { procedure: ProcedureId }, taskQueue: string): ScheduleOptions {
  const timezone = config.databaseOps?.timezone ?? 'UTC';
  // UTC stays out of the hash, so schedules applied before time zones existed are not recreated.
  const declared = {
    procedure: s.procedure,
    cron: s.cron,
    everySeconds: s.everySeconds,
    input: s.input,
    paused: s.paused,
    note: s.note,
    taskQueue,
    ...(s.cron && timezone !== 'UTC' ? { timezone } : {}),
  };
  const hash = createHash('sha256').update(JSON.stringify(declared)).digest('hex').slice(0, 16);
  const input = { ...s.input, requestedBy: (s.input.requestedBy as string | undefined) ?? `schedule:${s.id}` };
  return {
    scheduleId: scheduleId(config.environment, s.id),
    spec: s.cron ? { cronExpressions: s.cron, timezone } : { intervals: [{ every: `${s.everySeconds}s` }] },
    action: {
      type: 'startWorkflow',
      workflowType: s.procedure,
      taskQueue,
      args: [input],
      workflowId: workflowIdFor(s.procedure, { environment: config.environment, unique: `scheduled-${s.id}` }),
      typedSearchAttributes: [{ key: RunbookProcedure, value: s.procedure }],
      ...runMetadata({ procedure: s.procedure, input, environment: config.environment }),
    },
    // A run still going when the next is due (a slow backup) is never doubled.
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
    state: { paused: s.paused, note: s.note ?? `declared in databaseOps.schedules (${s.id})` },
    memo: { managedBy: MANAGED_BY, declaration: hash, spec: s.cron ? `cron ${s.cron.join(' | ')} (${timezone})` : `every ${s.everySeconds}s` },
  };
}

async function describeIfExists(client: Client, id: string): Promise<ScheduleDescription | undefined> {
  try {
    return await client.schedule.getHandle(id).describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return undefined;
    throw err;
  }
}

/**
 * Ids from the visibility store, which lags: a schedule deleted a moment ago can still be
 * listed, so callers treat "not found" on such an id as already gone.
 */
async function managedIds(client: Client, environment: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const s of client.schedule.list()) {
    if (s.scheduleId.startsWith(prefix(environment)) && s.memo?.managedBy === MANAGED_BY) ids.push(s.scheduleId);
  }
  return ids;
}

/**
 * `onChange` hears of each change as it is made (a deletion before it happens), so the output
 * says what was done even when a later call fails.
 */
export async function applySchedules(
  client: Client,
  config: RunbookConfig,
  taskQueue: string,
  opts: { dryRun?: boolean; onChange?: (change: ScheduleChange) => void } = {},
): Promise<ScheduleChange[]> {
  const declared = validateSchedules(config).map((s) => optionsFor(config, s, taskQueue));
  const changes: ScheduleChange[] = [];
  const note = (c: ScheduleChange) => {
    changes.push(c);
    opts.onChange?.(c);
  };
  for (const o of declared) {
    const handle = client.schedule.getHandle(o.scheduleId);
    const current = await describeIfExists(client, o.scheduleId);
    if (!current) {
      if (!opts.dryRun) await client.schedule.create(o);
      note({ scheduleId: o.scheduleId, change: 'created' });
    } else if (current.memo?.declaration === o.memo?.declaration) {
      note({ scheduleId: o.scheduleId, change: 'unchanged' });
    } else {
      if (!opts.dryRun) {
        // Memo is immutable through update: recreate so the new declaration hash is recorded.
        await handle.delete();
        await client.schedule.create(o);
      }
      note({ scheduleId: o.scheduleId, change: 'updated' });
    }
  }
  const wanted = new Set(declared.map((o) => o.scheduleId));
  for (const id of await managedIds(client, config.environment)) {
    if (wanted.has(id)) continue;
    // Listed but gone: deleted a moment ago, the listing lags.
    if (!(await describeIfExists(client, id))) continue;
    note({ scheduleId: id, change: 'deleted' });
    if (!opts.dryRun) {
      try {
        await client.schedule.getHandle(id).delete();
      } catch (err) {
        if (!(err instanceof ScheduleNotFoundError)) throw err;
      }
    }
  }
  return changes;
}

export interface ScheduleListing {
  scheduleId: string;
  procedure: string;
  spec: string;
  paused: boolean;
  /** Why it is paused (or the last note): `schedules pause --reason`, or the declaration's note. */
  note: string;
  nextRuns: string[];
  overlap: string;
}

export async function listSchedules(client: Client, environment: string): Promise<ScheduleListing[]> {
  const out: ScheduleListing[] = [];
  for (const id of await managedIds(client, environment)) {
    const d = await describeIfExists(client, id);
    if (!d) continue;
    out.push({
      scheduleId: id,
      procedure: d.action.type === 'startWorkflow' ? d.action.workflowType : '?',
      spec: typeof d.memo?.spec === 'string' ? d.memo.spec : '?',
      paused: d.state.paused,
      note: d.state.note ?? '',
      // A paused schedule takes no action, whatever its calendar says.
      nextRuns: d.state.paused ? [] : d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
      overlap: String(d.policies.overlap),
    });
  }
  return out.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
}

/**
 * The schedule a user names, by its config id (`daily-backup`) or its full id
 * (`runbook--demo--daily-backup`); an unknown one is refused with the ones that exist.
 */
export async function findSchedule(client: Client, config: RunbookConfig, name: string): Promise<{ scheduleId: string; description: ScheduleDescription }> {
  const id = name.startsWith(prefix(config.environment)) ? name : scheduleId(config.environment, name);
  const description = await describeIfExists(client, id);
  if (description?.memo?.managedBy === MANAGED_BY) return { scheduleId: id, description };
  const short = id.slice(prefix(config.environment).length);
  const known: string[] = [];
  for (const k of await managedIds(client, config.environment)) {
    if (await describeIfExists(client, k)) known.push(k.slice(prefix(config.environment).length));
  }
  known.sort();
  const declared = (config.databaseOps?.schedules ?? []).some((s) => s.id === short);
  const fix = declared
    ? `it is declared in databaseOps.schedules but not applied: run \`runbook schedules apply\``
    : known.length
      ? `known schedules in environment ${config.environment}: ${known.join(', ')}`
      : `no schedules exist in environment ${config.environment}: declare them in databaseOps.schedules and run \`runbook schedules apply\``;
  throw new UserError(`no schedule "${name}" (${id}): ${fix}`);
}

export interface TriggeredRun {
  scheduleId: string;
  /** The run this trigger started, or the one already running when overlap policy skip kept it from starting another. */
  workflowId: string;
  started: boolean;
}

/**
 * Runs a schedule's action now, under its own overlap policy (skip): while a run it started is
 * still going, no second one starts and that run is returned instead.
 */
export async function triggerSchedule(client: Client, config: RunbookConfig, name: string, opts: { waitMs?: number } = {}): Promise<TriggeredRun> {
  const { scheduleId: id, description } = await findSchedule(client, config, name);
  const running = description.info.runningActions[0];
  if (running) return { scheduleId: id, workflowId: running.workflow.workflowId, started: false };
  const seen = new Set(description.info.recentActions.map((a) => a.action.workflow.workflowId));
  const handle = client.schedule.getHandle(id);
  await handle.trigger(ScheduleOverlapPolicy.SKIP);
  // The server records the action asynchronously; describe until it shows up.
  const deadline = Date.now() + (opts.waitMs ?? 10_000);
  for (;;) {
    const d = await handle.describe();
    const fresh = [...d.info.recentActions, ...d.info.runningActions.map((action) => ({ action }))].find((a) => !seen.has(a.action.workflow.workflowId));
    if (fresh) return { scheduleId: id, workflowId: fresh.action.workflow.workflowId, started: true };
    if (Date.now() > deadline) {
      throw new UserError(`schedule ${id} was triggered, but no run appeared within ${Math.round((opts.waitMs ?? 10_000) / 1000)}s: see \`runbook schedules list\` and the UI's Schedules page`);
    }
    await sleep(200);
  }
}

/** Pauses (with the reason as the schedule's note) or unpauses; says so when there was nothing to do. */
export async function setSchedulePaused(
  client: Client,
  config: RunbookConfig,
  name: string,
  paused: boolean,
  opts: { reason?: string; by: string },
): Promise<{ scheduleId: string; changed: boolean }> {
  const { scheduleId: id, description } = await findSchedule(client, config, name);
  if (description.state.paused === paused) return { scheduleId: id, changed: false };
  const handle = client.schedule.getHandle(id);
  const note = `${paused ? 'paused' : 'unpaused'} by ${opts.by}${opts.reason ? `: ${opts.reason}` : ''}`;
  if (paused) await handle.pause(note);
  else await handle.unpause(note);
  return { scheduleId: id, changed: true };
}

/** The Temporal UI page of one schedule, or of them all. */
export function schedulesUiUrl(uiUrl: string, namespace: string, id?: string): string {
  return `${uiUrl}/namespaces/${namespace}/schedules${id ? `/${encodeURIComponent(id)}` : ''}`;
}
