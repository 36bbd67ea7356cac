import type { ApprovalRecord, CommonInput, HealthCheckResult, MigrationRunResult, PreflightResult, RefusedApproval, RunProgress, ServiceActionResult } from '../types.js';

/** The stack family's run inputs and results (health-check, stack-start, stack-stop, service-restart). */

export interface HealthCheckInput extends CommonInput {
  services?: string[];
}

export interface StackStartInput extends CommonInput {
  skipPreflight?: boolean;
  skipMigrations?: boolean;
  /** Override of each group's wait timeout, mostly for tests. */
  waitTimeoutSeconds?: number;
}

export interface StackStartResult {
  ok: boolean;
  preflight?: PreflightResult;
  started: ServiceActionResult[];
  migrations: MigrationRunResult[];
  health: HealthCheckResult;
  progress: RunProgress;
}

export interface StackStopInput extends CommonInput {
  clean?: boolean;
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

export interface ServiceRestartInput extends CommonInput {
  service: string;
  mode?: 'restart' | 'rebuild' | 'force-recreate';
  waitTimeoutSeconds?: number;
}

export interface ServiceRestartResult {
  ok: boolean;
  action: ServiceActionResult;
  health: HealthCheckResult;
  progress: RunProgress;
}
