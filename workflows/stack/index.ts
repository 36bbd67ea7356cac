/** The stack runbook family; each workflow is exported under its kebab-case procedure id (workflows/index.ts re-exports them). */
export { healthCheck as 'health-check' } from '../shared/health.js';
export { stackStart as 'stack-start', stackStop as 'stack-stop', serviceRestart as 'service-restart' } from './stack.js';
export { healthWatch as 'health-watch' } from './watch.js';
