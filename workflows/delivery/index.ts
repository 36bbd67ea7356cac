/** The delivery runbook family. Workflows are exported under their kebab-case procedure ids (workflows/index.ts re-exports them). */
export { canaryDeploy as 'canary-deploy' } from './canary.js';
export { blueGreenSwitch as 'blue-green-switch' } from './switch.js';
export { appRollback as 'app-rollback', configRollback as 'config-rollback' } from './rollback.js';
export { release } from './release.js';
