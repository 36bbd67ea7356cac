import type { ActivityDeps } from '../deps.js';

/** Activities of the database runbook family; spread into the worker's activities by activities/index.ts. */
export function createDatabaseActivities(_deps: ActivityDeps) {
  return {};
}
