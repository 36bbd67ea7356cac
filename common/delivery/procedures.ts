/** The delivery runbook family: procedure ids, which are the workflow types (their inputs: inputs.ts). */
export const DELIVERY_PROCEDURES = {
  canaryDeploy: 'canary-deploy',
  blueGreenSwitch: 'blue-green-switch',
  appRollback: 'app-rollback',
  configRollback: 'config-rollback',
  release: 'release',
} as const;

export type DeliveryProcedureId = (typeof DELIVERY_PROCEDURES)[keyof typeof DELIVERY_PROCEDURES];

