/**
 * The worker's single workflowsPath. Workflow types are the kebab-case procedure
 * ids, so the names users type in the UI and CLI are the runbooks' own.
 */
export { healthCheck as 'health-check' } from './health.js';
export { stackStart as 'stack-start', stackStop as 'stack-stop', serviceRestart as 'service-restart' } from './stack.js';
export * from './database.js';
export * from './delivery.js';
export * from './incident.js';
