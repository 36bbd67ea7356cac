import type { ActivityDeps } from '../deps.js';

/** Activities of the incident runbook family; spread into the worker's activities by activities/index.ts. */
export function createIncidentActivities(_deps: ActivityDeps) {
  return {};
}
