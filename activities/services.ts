import { ApplicationFailure } from '@temporalio/common';
import type { ServiceConfig } from '../common/config-schema.js';
import { ErrorTypes } from '../common/errors.js';
import type { ActivityDeps } from './deps.js';

/** The configured service of that name, or a non-retryable error naming the input field and the names there are. */
export function serviceNamed(deps: ActivityDeps, name: string, field = 'service'): ServiceConfig {
  const svc = deps.config.services.find((s) => s.name === name);
  if (!svc) {
    throw ApplicationFailure.nonRetryable(
      `${field}: unknown service "${name}": expected one of ${deps.config.services.map((s) => s.name).join(', ')}`,
      ErrorTypes.UnknownService,
    );
  }
  return svc;
}
