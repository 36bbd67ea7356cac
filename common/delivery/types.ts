import type { ApprovalPolicy } from '../approvals.js';
import type { RunProgress, ApprovalRecord, MigrationRunResult, ServiceActionResult } from '../types.js';
import type { ConfigRollbackInput } from './inputs.js';
export type { CanaryDeployInput, BlueGreenInput, AppRollbackInput, ConfigRollbackInput, ReleaseInput } from './inputs.js';

/** Workflow-safe shapes of the delivery runbooks: plain JSON only. */

export type RouterType = 'nginx' | 'istio' | 'command';
export type Backend = 'stable' | 'canary';
export type Color = 'blue' | 'green';

export interface ResolvedQuery {
  name: string;
  /** PromQL with {selector} and {window} already substituted. */
  query: string;
  max?: number;
  min?: number;
}

export interface AnalysisSettings {
  intervalSeconds: number;
  count: number;
  failureLimit: number;
  onMissingData: 'fail' | 'pass';
  window: string;
  /** Templates: {selector} and {window} are substituted by the workflow. */
  queries: Array<{ name: string; query: string; max?: number; min?: number }>;
}

/** What a delivery run needs from the config, captured once so the run replays the same plan. */
export interface DeliveryPlan {
  environment: string;
  router: {
    name: string;
    type: RouterType;
    /** Where the stable and canary traffic goes, for display (host:port, subsets, a script). */
    stable: string;
    canary: string;
    stableSelector: string;
    canarySelector: string;
    stableService?: string;
    canaryService?: string;
    hasHealthUrls: boolean;
  };
  analysis: AnalysisSettings;
  canary: { steps: number[]; bakeSeconds: number };
  scaleDownDelaySeconds: number;
  prometheusConfigured: boolean;
  notifyConfigured: boolean;
  approvalPolicy: ApprovalPolicy;
  approvalTimeoutSeconds: number;
}

export interface WeightChange {
  router: string;
  /** Percentage of traffic on the canary (green) backend. */
  weight: number;
  previousWeight: number | null;
  changed: boolean;
  /** What ran, argv joined (no secrets). */
  commands: string[];
  durationMs: number;
}

export interface QueryResult {
  name: string;
  query: string;
  value: number | null;
  max?: number;
  min?: number;
  ok: boolean;
  /** Why it failed: "0.48 > max 0.005", "no data". */
  detail: string;
}

export interface Measurement {
  at: string;
  ok: boolean;
  results: QueryResult[];
}

export interface StepAnalysis {
  weight: number;
  ok: boolean;
  measurements: Measurement[];
  failures: number;
  /** The first failed query of the deciding measurement. */
  failed?: QueryResult;
}

export type CanaryPhase =
  | 'planning'
  | 'setting-weight'
  | 'baking'
  | 'analysing'
  | 'awaiting-approval'
  | 'paused'
  | 'rolling-back'
  | 'rolled-back'
  | 'promoted';

export interface CanaryStatus {
  router: string;
  phase: CanaryPhase;
  weight: number;
  steps: number[];
  stepIndex: number;
  paused: boolean;
  lastAnalysis?: Measurement;
  abortRequested?: { by: string; reason?: string };
}

export interface DeliveryControlInput {
  by?: string;
  reason?: string;
}

export interface CanaryDeployResult {
  ok: boolean;
  outcome: 'promoted' | 'rolled-back';
  router: string;
  finalWeight: number;
  steps: StepAnalysis[];
  /** Set when rolled back: which query failed with which value, or the abort. */
  reason?: string;
  failedQuery?: QueryResult;
  /** When the deciding measurement was taken and when traffic was back at 0 % (activity clocks). */
  failedMeasurementAt?: string;
  trafficZeroAt?: string;
  canaryStopped?: ServiceActionResult;
  notified: boolean;
  approvals: ApprovalRecord[];
  progress: RunProgress;
}

export interface BlueGreenResult {
  ok: boolean;
  dryRun: boolean;
  from: Color | 'mixed';
  to: Color;
  /** What the switch runs (dry run: would run). */
  plan: string[];
  switched: boolean;
  rolledBack: boolean;
  scaledDown?: ServiceActionResult;
  previewCheck?: { health: string; analysis?: Measurement };
  approvals: ApprovalRecord[];
  progress: RunProgress;
}

export interface AppRollbackResult {
  ok: boolean;
  service: string;
  commands: string[];
  servingVersion?: string;
  progress: RunProgress;
}

export interface ConfigRollbackResult {
  ok: boolean;
  kind: ConfigRollbackInput['kind'];
  detail: string;
  restarted?: ServiceActionResult;
  progress: RunProgress;
}

export interface ReleaseResult {
  ok: boolean;
  migration: MigrationRunResult;
  canary: CanaryDeployResult;
  migrationRolledBack?: MigrationRunResult;
  progress: RunProgress;
}

/** Failure types of the delivery runbooks (non-retryable: the decision is made). */
export const DeliveryErrors = {
  CanaryRolledBack: 'CanaryRolledBack',
  SwitchRolledBack: 'SwitchRolledBack',
  PreviewUnhealthy: 'PreviewUnhealthy',
  ReleaseRolledBack: 'ReleaseRolledBack',
} as const;
