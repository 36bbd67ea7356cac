import type { ThresholdId } from '../thresholds.js';
import type { ApprovalRecord, HealthCheckResult, MigrationRunResult, PreflightResult, RefusedApproval, RunProgress, ServiceActionResult, Severity } from '../types.js';
export type { HealthCheckInput, HealthWatchInput, StackStartInput, StackStopInput, ServiceRestartInput } from './inputs.js';

/** The stack family's run inputs and results (health-check, stack-start, stack-stop, service-restart). */

export interface StackStartResult {
  ok: boolean;
  preflight?: PreflightResult;
  started: ServiceActionResult[];
  migrations: MigrationRunResult[];
  health: HealthCheckResult;
  progress: RunProgress;
}

export interface StackStopResult {
  ok: boolean;
  clean: boolean;
  dataDeleted: boolean;
  stopped: ServiceActionResult[];
  cleaned: ServiceActionResult[];
  approvals: ApprovalRecord[];
  refusals: RefusedApproval[];
  /** Refused answers beyond those kept in `refusals`. */
  refusalsDropped?: number;
  progress: RunProgress;
}

export interface ServiceRestartResult {
  ok: boolean;
  action: ServiceActionResult;
  health: HealthCheckResult;
  progress: RunProgress;
}

/** One threshold row one probe was over during a `health-watch`, and for how long. */
export interface WatchedCondition {
  service: string;
  probe: string;
  threshold: ThresholdId;
  /** The row's severity when it held long enough, else OK. */
  severity: Severity;
  /** Held without a break for `requiredSeconds` (the row's duration, at most the window). */
  sustained: boolean;
  /** The longest unbroken stretch it held, from the first to the last sample that saw it. */
  heldSeconds: number;
  requiredSeconds: number;
  /** Samples that saw it, of all samples. */
  seenIn: number;
  /** The reason of the last sample that saw it, e.g. "Memory Usage >80% (91.0%)". */
  reason: string;
  seed: string;
}

export interface HealthWatchResult {
  ok: boolean;
  /** The worst severity among the sustained conditions. */
  worst: Severity;
  windowSeconds: number;
  sampleEverySeconds: number;
  samples: number;
  /** Every condition seen, sustained ones first. */
  conditions: WatchedCondition[];
  table: string;
  /** The last sample, as health-check shows it. */
  last: HealthCheckResult;
  progress: RunProgress;
}
