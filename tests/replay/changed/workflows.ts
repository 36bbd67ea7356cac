import { sleep } from '@temporalio/workflow';
import { healthCheck } from '../../../workflows/shared/health.js';
import type { HealthCheckResult } from '../../../common/types.js';
import type { HealthCheckInput } from '../../../common/stack/types.js';

/**
 * The negative control of the replay test: health-check as someone might "harmlessly" change
 * it, with a pause before its first step. The recorded histories never scheduled that timer,
 * so replaying them against this code must fail with a determinism error.
 */
async function changedHealthCheck(input?: HealthCheckInput): Promise<HealthCheckResult> {
  await sleep(10);
  return healthCheck(input);
}

export { changedHealthCheck as 'health-check' };
