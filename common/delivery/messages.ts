import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { messageProblem, textProblem } from '../bounds.js';
import type { CanaryStatus, DeliveryControlInput } from './types.js';

/**
 * Controls of a running canary or blue/green switch. Each is both a signal (the UI's
 * "Send a Signal") and an update of the same name (the CLI: refused at once when it
 * cannot apply), checked alike: a refused signal is logged and changes nothing.
 * One JSON object each: {"by": "alice", "reason": "..."}.
 */
export const promoteSignal = defineSignal<[DeliveryControlInput]>('promote');
export const pauseSignal = defineSignal<[DeliveryControlInput]>('pause');
export const resumeSignal = defineSignal<[DeliveryControlInput]>('resume');
export const abortSignal = defineSignal<[DeliveryControlInput]>('abort');
export const rollbackSignal = defineSignal<[DeliveryControlInput]>('rollback');

export const promoteUpdate = defineUpdate<CanaryStatus, [DeliveryControlInput]>('promote');
export const pauseUpdate = defineUpdate<CanaryStatus, [DeliveryControlInput]>('pause');
export const resumeUpdate = defineUpdate<CanaryStatus, [DeliveryControlInput]>('resume');
export const abortUpdate = defineUpdate<CanaryStatus, [DeliveryControlInput]>('abort');
export const rollbackUpdate = defineUpdate<{ accepted: boolean; detail: string }, [DeliveryControlInput]>('rollback');

/** Current weight, phase and last analysis of a canary (also in the UI's current details). */
export const canaryStatusQuery = defineQuery<CanaryStatus>('canaryStatus');

export const DELIVERY_CONTROLS = ['promote', 'pause', 'resume', 'abort', 'rollback'] as const;
export type DeliveryControl = (typeof DELIVERY_CONTROLS)[number];

/**
 * Why a promote/pause/resume/abort/rollback message is refused before it is read, or undefined.
 * Controls may come without a body (the UI's empty signal); a body is one small object with a
 * bounded `by` and `reason`, so nothing a stranger sends grows the run's state or result.
 */
export function controlProblem(i: DeliveryControlInput | undefined): string | undefined {
  if (i === undefined || i === null) return undefined;
  return messageProblem(i, '{"by": "alice", "reason": "..."}') ?? textProblem('by', i.by, { name: true }) ?? textProblem('reason', i.reason);
}
