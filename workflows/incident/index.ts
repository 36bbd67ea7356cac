/** The incident runbook family; each workflow is exported under its procedure id (workflows/index.ts re-exports them). */
export { incident } from './incident.js';
export {
  redisTriage as 'redis-triage',
  natsLagTriage as 'nats-lag-triage',
  serviceErrorTriage as 'service-error-triage',
  latencyTriage as 'latency-triage',
} from './triage.js';
