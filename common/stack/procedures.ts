/** The stack runbook family: procedure ids, which are the workflow types (their inputs: inputs.ts). */
export const STACK_PROCEDURES = {
  healthCheck: 'health-check',
  healthWatch: 'health-watch',
  stackStart: 'stack-start',
  stackStop: 'stack-stop',
  serviceRestart: 'service-restart',
} as const;

export type StackProcedureId = (typeof STACK_PROCEDURES)[keyof typeof STACK_PROCEDURES];

