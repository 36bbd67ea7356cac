import type { ActivityDeps } from '../deps.js';

/** Activities of the delivery runbook family; spread into the worker's activities by activities/index.ts. */
export function createDeliveryActivities(_deps: ActivityDeps) {
  return {};
}
