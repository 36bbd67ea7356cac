import {
  ApplicationFailure,
  CancellationScope,
  condition,
  log,
  ParentClosePolicy,
  setHandler,
  sleep,
  startChild,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { DatabasePlan, DbLockInput } from '../../common/database/types.js';
import { releaseLockSignal } from '../../common/messages.js';
import { note, planning } from '../shared/plan-mode.js';

/**
 * One destructive runbook per database at a time. The lock is a child workflow with a
 * deterministic id per database: Temporal refuses a second one while the first runs, and
 * terminates it when its holder ends however it ends (parent close policy), so a crashed
 * or terminated holder never leaves the database locked.
 */

export const DB_LOCK_WORKFLOW = 'db-lock';
export const DatabaseBusy = 'DatabaseBusy';

export function lockWorkflowId(environment: string, database: string): string {
  return `db-lock--${environment}--${database}`;
}

/** The lock itself: it holds until its holder releases it (or ends). */
export async function dbLock(input: DbLockInput): Promise<{ releasedBy: string }> {
  let released = false;
  setHandler(releaseLockSignal, () => {
    released = true;
  });
  log.info('database lock held', { database: input.database, holder: input.holder.workflowId });
  await condition(() => released);
  return { releasedBy: input.holder.workflowId };
}

/**
 * Runs `body` holding the database's lock. With lock mode `fail` a busy database fails the
 * run at once; with `wait` it retries every pollSeconds until waitTimeoutSeconds.
 */
export async function withDatabaseLock<T>(
  plan: Pick<DatabasePlan, 'environment' | 'database' | 'lock'>,
  holder: DbLockInput['holder'],
  body: () => Promise<T>,
  onWait?: (waitingFor: string) => void,
): Promise<T> {
  const workflowId = lockWorkflowId(plan.environment, plan.database);
  // A plan takes no lock (it changes nothing), and goes on to the approvals and steps the lock guards.
  if (planning()) {
    note(`would take the lock ${workflowId}`);
    return body();
  }
  const deadline = Date.now() + plan.lock.waitTimeoutSeconds * 1000;
  let handle: ChildWorkflowHandle<typeof dbLock> | undefined;
  while (!handle) {
    try {
      handle = await startChild<typeof dbLock>(DB_LOCK_WORKFLOW, {
        workflowId,
        args: [{ database: plan.database, holder }],
        parentClosePolicy: ParentClosePolicy.TERMINATE,
        staticSummary: `lock of database ${plan.database} held by ${holder.procedure} ${holder.workflowId}`,
      });
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      const busy = `database ${plan.database} is busy: another destructive runbook holds its lock (workflow ${workflowId}; the run holding it is that workflow's parent)`;
      if (plan.lock.mode === 'fail') {
        throw ApplicationFailure.create({ type: DatabaseBusy, nonRetryable: true, message: `${busy}; nothing was done. Retry when it has finished, or set databaseOps.lock.mode: wait` });
      }
      if (Date.now() >= deadline) {
        throw ApplicationFailure.create({ type: DatabaseBusy, nonRetryable: true, message: `${busy}; waited ${plan.lock.waitTimeoutSeconds}s (databaseOps.lock.waitTimeoutSeconds), nothing was done` });
      }
      onWait?.(workflowId);
      await sleep(plan.lock.pollSeconds * 1000);
    }
  }
  try {
    return await body();
  } finally {
    const h = handle;
    await CancellationScope.nonCancellable(() => h.signal(releaseLockSignal).catch(() => undefined));
  }
}
