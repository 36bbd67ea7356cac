import type { ActivityOptions, LocalActivityOptions } from '@temporalio/workflow';
import { NON_RETRYABLE_ERROR_TYPES } from '../../common/errors.js';

/** Named activity profiles: every activity call picks one, so timeouts and retries are decided in one place. */
export const quick: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES },
};

/** Commands against services and databases: they heartbeat every 3 s, so a dead worker is noticed within 15 s. */
export const longRunning: ActivityOptions = {
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '15 seconds',
  retry: {
    initialInterval: '2 seconds',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 3,
    nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
  },
};

/**
 * Short in-process reads (the config snapshot, one probe) as local activities: no server
 * dispatch per call, still recorded in history. Anything long or destructive stays a
 * regular activity with heartbeats.
 */
export const localQuick: LocalActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '500 milliseconds', maximumAttempts: 3, nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES },
};

/** A probe's unhealthy answer is a result, not an error; only a crashed worker is worth one more try. */
export const localProbe: LocalActivityOptions = {
  startToCloseTimeout: '60 seconds',
  retry: { initialInterval: '500 milliseconds', maximumAttempts: 2, nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES },
};
