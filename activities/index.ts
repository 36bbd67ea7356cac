import { createApprovalActivities } from './approvals.js';
import { createDatabaseActivities } from './database/index.js';
import { createDeliveryActivities } from './delivery/index.js';
import type { ActivityDeps } from './deps.js';
import { createIncidentActivities, createServiceCheckActivities } from './incident/index.js';
import { createInputActivities } from './inputs.js';
import { createStackActivities } from './stack/index.js';

export type { ActivityDeps } from './deps.js';
export type { WaitHealthyRequest } from './stack/index.js';

/** Every activity the worker registers, one family after another; dependencies come in through `deps`. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createInputActivities(),
    ...createApprovalActivities(deps),
    ...createDatabaseActivities(deps),
    ...createDeliveryActivities(deps),
    ...createIncidentActivities(deps),
    ...createServiceCheckActivities(deps),
    ...createStackActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
