import { createHash } from 'node:crypto';
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import type { RunbookConfig } from '../common/config-schema.js';
import type { ScheduleConfig } from '../common/families/database-config.js';
import { InputError, validateInput } from '../common/inputs.js';
import { isProcedureId, workflowIdFor, type ProcedureId } from '../common/procedures.js';
import { RunbookProcedure } from '../common/search-attributes.js';
import { UserError } from './operations.js';

/**
 * `runbook schedules apply|list`: the Temporal Schedules declared in databaseOps.schedules
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
      validateInput(s.procedure, s.input);
    } catch (err) {
      if (err instanceof InputError) problems.push(`databaseOps.schedules[${i}].input: ${err.problems.join('; ')}`);
      else throw err;
    }
  });
  if (problems.length > 0) throw new UserError(`invalid schedules, nothing was changed:\n  - ${problems.join('\n  - ')}`);
  return schedules as Array<ScheduleConfig & { procedure: ProcedureId }>;
}

function optionsFor(config: RunbookConfig, s: ScheduleConfig & { procedure: ProcedureId }, taskQueue: string): ScheduleOptions {
  const declared = { procedure: s.procedure, cron: s.cron, everySeconds: s.everySeconds, input: s.input, paused: s.paused, note: s.note, taskQueue };
  const hash = createHash('sha256').update(JSON.stringify(declared)).digest('hex').slice(0, 16);
  return {
    scheduleId: scheduleId(config.environment, s.id),
    spec: s.cron ? { cronExpressions: s.cron } : { intervals: [{ every: `${s.everySeconds}s` }] },
    action: {
      type: 'startWorkflow',
      workflowType: s.procedure,
      taskQueue,
      args: [{ ...s.input, requestedBy: (s.input.requestedBy as string | undefined) ?? `schedule:${s.id}` }],
      workflowId: workflowIdFor(s.procedure, { environment: config.environment, unique: `scheduled-${s.id}` }),
      typedSearchAttributes: [{ key: RunbookProcedure, value: s.procedure }],
    },
    // A run still going when the next is due (a slow backup) is never doubled.
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
    state: { paused: s.paused, note: s.note ?? `declared in databaseOps.schedules (${s.id})` },
    memo: { managedBy: MANAGED_BY, declaration: hash, spec: s.cron ? `cron ${s.cron.join(' | ')} (UTC)` : `every ${s.everySeconds}s` },
  };
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

export async function applySchedules(client: Client, config: RunbookConfig, taskQueue: string, opts: { dryRun?: boolean } = {}): Promise<ScheduleChange[]> {
  const declared = validateSchedules(config).map((s) => optionsFor(config, s, taskQueue));
  const changes: ScheduleChange[] = [];
  for (const o of declared) {
    const handle = client.schedule.getHandle(o.scheduleId);
    let current: Awaited<ReturnType<typeof handle.describe>> | undefined;
    try {
      current = await handle.describe();
    } catch (err) {
      if (!(err instanceof ScheduleNotFoundError)) throw err;
    }
    if (!current) {
      if (!opts.dryRun) await client.schedule.create(o);
      changes.push({ scheduleId: o.scheduleId, change: 'created' });
    } else if (current.memo?.declaration === o.memo?.declaration) {
      changes.push({ scheduleId: o.scheduleId, change: 'unchanged' });
    } else {
      if (!opts.dryRun) {
        // Memo is immutable through update: recreate so the new declaration hash is recorded.
        await handle.delete();
        await client.schedule.create(o);
      }
      changes.push({ scheduleId: o.scheduleId, change: 'updated' });
    }
  }
  const wanted = new Set(declared.map((o) => o.scheduleId));
  for (const id of await managedIds(client, config.environment)) {
    if (wanted.has(id)) continue;
    if (!opts.dryRun) {
      try {
        await client.schedule.getHandle(id).delete();
      } catch (err) {
        if (err instanceof ScheduleNotFoundError) continue;
        throw err;
      }
    }
    changes.push({ scheduleId: id, change: 'deleted' });
  }
  return changes;
}

export interface ScheduleListing {
  scheduleId: string;
  procedure: string;
  spec: string;
  paused: boolean;
  nextRuns: string[];
  overlap: string;
}

export async function listSchedules(client: Client, environment: string): Promise<ScheduleListing[]> {
  const out: ScheduleListing[] = [];
  for (const id of await managedIds(client, environment)) {
    let d;
    try {
      d = await client.schedule.getHandle(id).describe();
    } catch (err) {
      if (err instanceof ScheduleNotFoundError) continue;
      throw err;
    }
    out.push({
      scheduleId: id,
      procedure: d.action.type === 'startWorkflow' ? d.action.workflowType : '?',
      spec: typeof d.memo?.spec === 'string' ? d.memo.spec : '?',
      paused: d.state.paused,
      nextRuns: d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
      overlap: String(d.policies.overlap),
    });
  }
  return out.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
}
