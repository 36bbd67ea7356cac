import { z } from 'zod';
import { field, procedureInput } from '../input-fields.js';
import { ANALYSIS_WINDOW, analysisQuerySchema } from './config.js';
import type { DeliveryProcedureId } from './procedures.js';

/** The delivery family's inputs: one schema per procedure, the types are inferred from them. */

/** A run's overrides of delivery.analysis: any of its settings, checked as the config checks them. */
const analysisOverrides = z.strictObject({
  intervalSeconds: z.number().positive().optional(),
  count: z.int().positive().optional(),
  failureLimit: z.int().min(0).optional(),
  onMissingData: z.enum(['fail', 'pass']).optional(),
  window: z.string().regex(ANALYSIS_WINDOW, 'expected a Prometheus duration like 30s, 1m or 5m').optional(),
  queries: z.array(analysisQuerySchema).min(1).max(20).optional(),
});

const canaryFields = {
  router: field.name('the traffic router (delivery.routers.<name>) in front of stable and canary'),
  steps: field.integerList('canary percentages in order, each 1..100, default delivery.canary.steps ([5, 25, 50, 100])').optional(),
  bakeSeconds: field.nonNegativeInteger('seconds to wait at each step before the analysis (default delivery.canary.bakeSeconds, 300)').optional(),
  approveEachStep: field.boolean('ask an approver before every step after the first').optional(),
  analysis: field
    .shaped(
      'overrides of delivery.analysis: intervalSeconds, count, failureLimit, onMissingData (fail|pass), window, queries [{name, query, max|min}]',
      analysisOverrides,
    )
    .optional(),
  skipAnalysis: field.boolean('no metric gate (bake only)').optional(),
};

const canaryDeploy = procedureInput(canaryFields);

const blueGreenSwitch = procedureInput({
  router: field.name('the traffic router (delivery.routers.<name>); blue is its stable backend, green its canary backend'),
  to: field.enum(['blue', 'green'], 'the color to make active'),
  dryRun: field.boolean('show what would change and change nothing').optional(),
  scaleDownDelaySeconds: field.nonNegativeInteger('keep the old color this long (rollback window) before stopping it (default 600)').optional(),
  skipAnalysis: field.boolean("skip the preview color's metric check (its health is still checked)").optional(),
});

const appRollback = procedureInput({
  service: field.name('the service to roll back (services[].name; kubernetes or compose driver)', { ref: 'service' }),
  revision: field.positiveInteger('kubernetes: the rollout revision to go back to (default: the previous one)').optional(),
  image: field.image('compose: the previous image, e.g. ghcr.io/org/api:v1.0.0 (required for compose)').optional(),
  verifyUrl: field.url('HTTP endpoint answering JSON with "version", checked after the rollback').optional(),
  expectVersion: field.text('the version verifyUrl must report').optional(),
  waitTimeoutSeconds: field.positiveInteger('seconds to wait for health and the expected version (default 180)').optional(),
});

const configRollback = procedureInput({
  kind: field.enum(['env-file', 'feature-flag', 'configmap'], 'what to roll back'),
  service: field.name('env-file/configmap: the service to restart afterwards', { ref: 'service' }).optional(),
  envFile: field.relativePath('env-file: the env file to restore (relative to the config file)').optional(),
  backupFile: field.relativePath('env-file: its backup (default <envFile>.backup)').optional(),
  database: field.name('feature-flag: the database (databases[].name) with the feature_flags table', { ref: 'database' }).optional(),
  flag: field.text('feature-flag: the flag to disable').optional(),
  manifest: field.relativePath('configmap: the previous ConfigMap manifest to apply (relative to the config file)').optional(),
  waitTimeoutSeconds: field.positiveInteger('seconds to wait for the service to be healthy after the restart').optional(),
});

const release = procedureInput({
  ...canaryFields,
  database: field.name('the database (databases[].name) whose migrations ship with this release', { ref: 'database' }),
});

export const DELIVERY_INPUTS = {
  'canary-deploy': canaryDeploy,
  'blue-green-switch': blueGreenSwitch,
  'app-rollback': appRollback,
  'config-rollback': configRollback,
  release,
} satisfies Record<DeliveryProcedureId, z.ZodType>;

export type CanaryDeployInput = z.output<typeof canaryDeploy>;
export type BlueGreenInput = z.output<typeof blueGreenSwitch>;
export type AppRollbackInput = z.output<typeof appRollback>;
export type ConfigRollbackInput = z.output<typeof configRollback>;
export type ReleaseInput = z.output<typeof release>;
