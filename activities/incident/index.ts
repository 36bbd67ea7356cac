export { createIncidentActivities } from './incident.js';
