export { createIncidentActivities } from './incident.js';
export { createServiceCheckActivities } from './service-checks.js';
