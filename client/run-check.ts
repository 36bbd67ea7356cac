import { setTimeout as sleep } from 'node:timers/promises';
import { status } from '@grpc/grpc-js';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { decodeOptionalFailureToOptionalError } from '@temporalio/common/lib/internal-non-workflow/index.js';
// CommonJS without named exports Node can detect: the default import is the module object.
import proto from '@temporalio/proto';
import { PayloadDecryptionError } from '../lib/codec/index.js';

const { EventType, TaskQueueType } = proto.temporal.api.enums.v1;

const CLOSED = new Set<number>([
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
]);

/** What became of a run's first workflow task: the first moment a worker has read its input. */
export type FirstTask =
  | { kind: 'completed' }
  /** The run ended in its first task (an input the workflow refused, for one), or before any: see its result. */
  | { kind: 'closed' }
  | { kind: 'no-worker' }
  | { kind: 'not-taken'; seconds: number }
  /** `undecryptable`: the worker could not decrypt the input, or this CLI cannot decrypt the worker's error. */
  | { kind: 'failed'; message: string; undecryptable: boolean };

/** The run's input check, its first activity (activities/inputs.ts). */
function schedulesInputCheck(e: proto.temporal.api.history.v1.IHistoryEvent): boolean {
  return e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED && e.activityTaskScheduledEventAttributes?.activityType?.name === 'checkInput';
}

async function hasWorkflowPoller(client: Client, taskQueue: string): Promise<boolean> {
  const { pollers } = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue },
    taskQueueType: TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  return (pollers ?? []).length > 0;
}

async function taskFailure(client: Client, failure: proto.temporal.api.failure.v1.IFailure | null | undefined): Promise<{ message: string; undecryptable: boolean }> {
  const type = failure?.applicationFailureInfo?.type ?? '';
  try {
    const err = await decodeOptionalFailureToOptionalError(client.options.loadedDataConverter, failure);
    const message = err?.message || 'no message';
    // A worker either fails the task with the codec's error, or says so in its own words.
    return { message, undecryptable: type === PayloadDecryptionError.name || /cannot be decrypted|decrypt/i.test(message) };
  } catch (err) {
    // The worker encrypts its error with its own key: one this CLI cannot read is a key mismatch too.
    if (err instanceof PayloadDecryptionError) return { message: `its error cannot be read here either: ${err.message}`, undecryptable: true };
    throw err;
  }
}

/**
 * Waits until a worker has run the first workflow task of a run this CLI just started (and, when
 * that task only scheduled the input check, the task after it), so that
 * a run no worker can decrypt (another payload key) never looks started and fine. Returns at
 * once when no worker polls the task queue: the run then simply waits for one. Reads the history
 * as a long poll (the server answers as soon as the task's events are written), so a healthy run
 * costs no polling delay.
 */
export async function firstWorkflowTask(client: Client, handle: WorkflowHandle, taskQueue: string, timeoutMs = 10_000): Promise<FirstTask> {
  if (!(await hasWorkflowPoller(client, taskQueue))) return { kind: 'no-worker' };
  const deadline = Date.now() + timeoutMs;
  const notTaken: FirstTask = { kind: 'not-taken', seconds: Math.round(timeoutMs / 1000) };
  const events: proto.temporal.api.history.v1.IHistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  for (;;) {
    let page: proto.temporal.api.workflowservice.v1.IGetWorkflowExecutionHistoryResponse;
    try {
      page = await client.connection.withDeadline(deadline, () =>
        client.workflowService.getWorkflowExecutionHistory({
          namespace: client.options.namespace,
          execution: { workflowId: handle.workflowId },
          waitNewEvent: true,
          nextPageToken,
        }),
      );
    } catch (err) {
      if ((err as { code?: unknown }).code === status.DEADLINE_EXCEEDED) return notTaken;
      throw err;
    }
    events.push(...(page.history?.events ?? []));
    for (const [i, event] of events.entries()) {
      if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) {
        // The events the first task's commands wrote, up to the next task: did one of them end the run?
        const next = events.slice(i + 1).findIndex((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
        const written = events.slice(i + 1, next < 0 ? undefined : i + 1 + next);
        if (written.some((e) => CLOSED.has(e.eventType ?? 0))) return { kind: 'closed' };
        // A task that only scheduled the input check is not the end of the first steps: the task
        // after the check is where a refused input or an unknown service ends the run.
        if (!written.some(schedulesInputCheck)) return { kind: 'completed' };
        continue;
      }
      if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) {
        return { kind: 'failed', ...(await taskFailure(client, event.workflowTaskFailedEventAttributes?.failure)) };
      }
      if (CLOSED.has(event.eventType ?? 0)) return { kind: 'closed' };
    }
    if (Date.now() >= deadline) return notTaken;
    if (page.nextPageToken?.length) {
      nextPageToken = page.nextPageToken;
    } else {
      // The server gives a token to wait on while a run is open; without one, read the history anew.
      events.length = 0;
      nextPageToken = undefined;
      await sleep(200);
    }
  }
}
