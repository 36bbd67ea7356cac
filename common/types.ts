import type { ApprovalPolicy } from './approvals.js';
import type { SignedApproval } from './signed-approvals.js';
import type { ThresholdSettings } from './thresholds.js';
/** Workflow-safe data shapes shared by workflows, activities and the CLI. Plain JSON only. */

export type ProbeType = 'http' | 'grpc' | 'postgres' | 'redis' | 'nats' | 'tcp';
export type ProbeStatus = 'healthy' | 'unhealthy';
export type Severity = 'OK' | 'P0' | 'P1' | 'P2';

export interface ProbeRef {
  service: string;
  /** Index in the service's `probes` list. */
  index: number;
}

export interface ProbeResult extends ProbeRef {
  type: ProbeType;
  /** Where it probed, with any credentials removed. */
  target: string;
  status: ProbeStatus;
  latencyMs: number;
  detail: string;
  /** Extra readings used for classification (redis memory, nats lag, ...). */
  metrics?: Record<string, number>;
}

export interface ClassifiedProbe extends ProbeResult {
  severity: Severity;
  /** The runbook's alert-threshold row that matched, e.g. "Database Down: connection refused". */
  reason: string;
}

export interface PreflightCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface PreflightResult {
  ok: boolean;
  checks: PreflightCheck[];
}

export type ServiceAction = 'start' | 'stop' | 'restart' | 'rebuild' | 'force-recreate' | 'clean';

export interface ServiceActionResult {
  service: string;
  action: ServiceAction;
  /** The command that ran, argv joined, secrets redacted. */
  command: string;
  ok: boolean;
  output: string;
  durationMs: number;
}

export interface MigrationInfo {
  version: string;
  description: string;
}

export interface MigrationRunResult {
  database: string;
  dryRun: boolean;
  applied: MigrationInfo[];
  pending: MigrationInfo[];
}

/** The part of the config a workflow needs, captured once per run so replays are deterministic. */
export interface PlanService {
  name: string;
  group: string;
  dependsOn: string[];
  ports: number[];
  driver: 'command' | 'compose' | 'kubernetes';
  /** Actions its driver can run; a service without `start`/`stop` is observed, not managed. */
  actions: ServiceAction[];
  probes: Array<{ index: number; type: ProbeType; target: string }>;
}

export interface RunbookPlan {
  environment: string;
  services: PlanService[];
  groups: Array<{ name: string; waitTimeoutSeconds: number; runMigrationsAfter: boolean }>;
  pollIntervalSeconds: number;
  databases: Array<{ name: string; hasMigrations: boolean }>;
  approvalPolicy: ApprovalPolicy;
  approvalTimeoutSeconds: number;
  /** The config's `thresholds` (common/thresholds.ts); plans recorded before the table carry only the first three keys. */
  thresholds: ThresholdSettings;
}

/** `interrupted`: the step was running (or waiting for an answer) when the run was cancelled or ended. */
export type StepStatus = 'pending' | 'running' | 'waiting-approval' | 'succeeded' | 'failed' | 'skipped' | 'interrupted';

export interface StepProgress {
  id: string;
  title: string;
  status: StepStatus;
  startedAt?: string;
  endedAt?: string;
  detail?: string;
}

export interface RunProgress {
  procedure: string;
  currentStep?: string;
  steps: StepProgress[];
}

export interface ApprovalInput {
  /** Who answers: a name from the step's approvers (the CLI's --as). */
  by: string;
  comment?: string;
  confirm?: string;
  /**
   * The step this answer is for. Required: an answer naming any other step than the pending
   * one (stale, or meant for another run) is refused and recorded, and changes nothing.
   */
  step: string;
  /**
   * The approver's signature over this answer and the run, step and time it is for (`runbook
   * approve --key FILE`). Checked by the worker against approvals.keys before the answer counts.
   */
  signed?: SignedApproval;
}

/** How an accepted answer was verified: signed with one of the approver's configured keys, or accepted unsigned. */
export type Verification = { keyId: string } | 'unsigned';

/** One approver's `approve` of a step that needs several (quorum). */
export interface ApprovalVote {
  by: string;
  at: string;
  comment?: string;
  /** Absent in runs recorded before answers were verified. */
  verified?: Verification;
}

export interface PendingApproval {
  step: string;
  summary: string;
  destructive: boolean;
  confirmPhrase?: string;
  approvers: string[];
  /** Approvals the step needs; `approvedBy` lists those given so far. */
  quorum: number;
  approvedBy: ApprovalVote[];
  requestedBy: string;
  requestedAt: string;
  deadline: string;
}

export interface ApprovalRecord {
  step: string;
  decision: 'approved' | 'rejected' | 'timed-out';
  /** Who decided: the rejecting approver, or the approvers who made the quorum joined with ", ". */
  by?: string;
  comment?: string;
  at: string;
  /** Every approval given for the step, in order (several when the step has a quorum). */
  votes?: ApprovalVote[];
  /** Approvals the step needed. */
  quorum?: number;
  /**
   * How the deciding answer was verified (for a quorum: `unsigned` if any vote was, else the
   * keys, joined with ", "). Absent for a timeout and in runs recorded before verification.
   */
  verified?: Verification;
}

/** What `approve`/`reject` return to the caller: the decision so far, and whether the step is settled. */
export interface ApprovalAnswer {
  step: string;
  decision: 'approved' | 'rejected';
  by: string;
  at: string;
  comment?: string;
  /** Approvals given and needed; the step proceeds when `approvals >= quorum` (or at once on reject). */
  approvals: number;
  quorum: number;
  settled: boolean;
  verified?: Verification;
}

export interface RefusedApproval {
  step: string;
  by: string;
  /** What was refused: an approve or a reject. */
  answer: 'approve' | 'reject';
  reason: string;
  at: string;
  /** The key id a signed answer named (not proof: the answer was refused). */
  keyId?: string;
}

/** Fields every procedure input accepts. */
export interface CommonInput {
  /** Who started the run (the CLI fills it from --as or $USER). */
  requestedBy?: string;
  /** Override of approvals.timeoutSeconds for this run. */
  approvalTimeoutSeconds?: number;
}

export interface HealthCheckResult {
  ok: boolean;
  worst: Severity;
  results: ClassifiedProbe[];
  table: string;
  durationMs: number;
  /** Present on the health-check runbook's own result. */
  progress?: RunProgress;
}
