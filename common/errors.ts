/**
 * ApplicationFailure types. Activities throw these as non-retryable when a retry
 * cannot help (bad input, bad config, a refused approval); the workflow profiles
 * list them so nothing retries forever on a user error.
 */
export const ErrorTypes = {
  InvalidInput: 'InvalidInput',
  InvalidConfig: 'InvalidConfig',
  UnknownService: 'UnknownService',
  UnsupportedAction: 'UnsupportedAction',
  PreflightFailed: 'PreflightFailed',
  HealthTimeout: 'HealthTimeout',
  ApprovalRejected: 'ApprovalRejected',
  ApprovalTimedOut: 'ApprovalTimedOut',
  /** An approve/reject that was not accepted (wrong person, stale step, ...): the update's failure. */
  ApprovalRefused: 'ApprovalRefused',
  MigrationFailed: 'MigrationFailed',
  CommandFailed: 'CommandFailed',
  /** A cancelled run: its cleanup ran, and its message is the account of what it did and left. */
  RunCancelled: 'RunCancelled',
} as const;

export type ErrorType = (typeof ErrorTypes)[keyof typeof ErrorTypes];

export const NON_RETRYABLE_ERROR_TYPES: string[] = [
  ErrorTypes.InvalidInput,
  ErrorTypes.InvalidConfig,
  ErrorTypes.UnknownService,
  ErrorTypes.UnsupportedAction,
  ErrorTypes.PreflightFailed,
  ErrorTypes.MigrationFailed,
];
