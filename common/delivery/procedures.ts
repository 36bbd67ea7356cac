import type { FieldSpec } from '../field-spec.js';
import { COMMON_FIELDS } from '../field-spec.js';

/** The delivery runbook family: procedure ids (the workflow types) and their input fields. */
export const DELIVERY_PROCEDURES = {
  canaryDeploy: 'canary-deploy',
  blueGreenSwitch: 'blue-green-switch',
  appRollback: 'app-rollback',
  configRollback: 'config-rollback',
  release: 'release',
} as const;

export type DeliveryProcedureId = (typeof DELIVERY_PROCEDURES)[keyof typeof DELIVERY_PROCEDURES];

const canaryFields: Record<string, FieldSpec> = {
  router: { kind: 'name', required: true, help: 'the traffic router (delivery.routers.<name>) in front of stable and canary' },
  steps: { kind: 'integer-list', help: 'canary percentages in order, each 1..100, default delivery.canary.steps ([5, 25, 50, 100])' },
  bakeSeconds: { kind: 'non-negative-integer', help: 'seconds to wait at each step before the analysis (default delivery.canary.bakeSeconds, 300)' },
  approveEachStep: { kind: 'boolean', help: 'ask an approver before every step after the first' },
  analysis: {
    kind: 'object',
    help: 'overrides of delivery.analysis: intervalSeconds, count, failureLimit, onMissingData (fail|pass), window, queries [{name, query, max|min}]',
  },
  skipAnalysis: { kind: 'boolean', help: 'no metric gate (bake only)' },
};

export const DELIVERY_INPUTS: Record<DeliveryProcedureId, Record<string, FieldSpec>> = {
  'canary-deploy': { ...COMMON_FIELDS, ...canaryFields },
  'blue-green-switch': {
    ...COMMON_FIELDS,
    router: { kind: 'name', required: true, help: 'the traffic router (delivery.routers.<name>); blue is its stable backend, green its canary backend' },
    to: { kind: 'enum', values: ['blue', 'green'], required: true, help: 'the color to make active' },
    dryRun: { kind: 'boolean', help: 'show what would change and change nothing' },
    scaleDownDelaySeconds: { kind: 'non-negative-integer', help: 'keep the old color this long (rollback window) before stopping it (default 600)' },
    skipAnalysis: { kind: 'boolean', help: "skip the preview color's metric check (its health is still checked)" },
  },
  'app-rollback': {
    ...COMMON_FIELDS,
    service: { kind: 'name', required: true, ref: 'service', help: 'the service to roll back (services[].name; kubernetes or compose driver)' },
    revision: { kind: 'positive-integer', help: 'kubernetes: the rollout revision to go back to (default: the previous one)' },
    image: { kind: 'image', help: 'compose: the previous image, e.g. ghcr.io/org/api:v1.0.0 (required for compose)' },
    verifyUrl: { kind: 'url', help: 'HTTP endpoint answering JSON with "version", checked after the rollback' },
    expectVersion: { kind: 'string', help: 'the version verifyUrl must report' },
    waitTimeoutSeconds: { kind: 'positive-integer', help: 'seconds to wait for health and the expected version (default 180)' },
  },
  'config-rollback': {
    ...COMMON_FIELDS,
    kind: { kind: 'enum', values: ['env-file', 'feature-flag', 'configmap'], required: true, help: 'what to roll back' },
    service: { kind: 'name', ref: 'service', help: 'env-file/configmap: the service to restart afterwards' },
    envFile: { kind: 'relative-path', help: 'env-file: the env file to restore (relative to the config file)' },
    backupFile: { kind: 'relative-path', help: 'env-file: its backup (default <envFile>.backup)' },
    database: { kind: 'name', ref: 'database', help: 'feature-flag: the database (databases[].name) with the feature_flags table' },
    flag: { kind: 'string', help: 'feature-flag: the flag to disable' },
    manifest: { kind: 'relative-path', help: 'configmap: the previous ConfigMap manifest to apply (relative to the config file)' },
    waitTimeoutSeconds: { kind: 'positive-integer', help: 'seconds to wait for the service to be healthy after the restart' },
  },
  release: {
    ...COMMON_FIELDS,
    ...canaryFields,
    database: { kind: 'name', required: true, ref: 'database', help: 'the database (databases[].name) whose migrations ship with this release' },
  },
};
