import type { ApprovalRecord, HealthCheckResult, MigrationRunResult, PreflightResult, RefusedApproval, RunProgress, ServiceActionResult } from '../types.js';
export type { HealthCheckInput, StackStartInput, StackStopInput, ServiceRestartInput } from './inputs.js';

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
