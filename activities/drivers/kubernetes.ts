import type { DriverConfig } from '../../common/config-schema.js';
import type { ServiceAction, ServiceActionResult } from '../../common/types.js';
import { tailLines } from '../../lib/exec.js';
import type { DriverContext, ServiceDriver, ServiceStatus } from './driver.js';
import { invokeForAnswer, invoke, joinSteps, runSteps, unsupportedAction, type Invocation } from './support.js';

type KubernetesConfig = Extract<DriverConfig, { type: 'kubernetes' }>;

const QUERY_TIMEOUT_MS = 60_000;

/** A workload driven with kubectl: scale for start/stop, rollout restart for restarts. */
export class KubernetesDriver implements ServiceDriver {
  readonly kind = 'kubernetes' as const;
  private readonly name: string;
  private readonly ref: string;

  constructor(
    private readonly service: string,
    private readonly cfg: KubernetesConfig,
    private readonly ctx: DriverContext,
  ) {
    this.name = cfg.name ?? service;
    this.ref = `${cfg.kind}/${this.name}`;
  }

  private kubectl(...args: string[]): string[] {
    return ['kubectl', ...(this.cfg.context ? ['--context', this.cfg.context] : []), '-n', this.cfg.namespace, ...args];
  }

  private steps(action: ServiceAction): Invocation[] {
    const timeoutMs = this.cfg.timeoutSeconds * 1000;
    const step = (...args: string[]): Invocation => ({ argv: this.kubectl(...args), timeoutMs });
    switch (action) {
      case 'start':
      case 'stop':
        if (this.cfg.kind === 'daemonset') {
          throw unsupportedAction(
            `service ${this.service} cannot ${action}: a daemonset cannot be scaled; set services.${this.service}.driver.kind to deployment or statefulset, or use a command driver`,
          );
        }
        return [step('scale', this.ref, `--replicas=${action === 'start' ? this.cfg.replicas : 0}`)];
      case 'restart':
      case 'force-recreate':
        // rollout status waits for the new pods, so the action ends when the restart has landed.
        return [
          step('rollout', 'restart', this.ref),
          step('rollout', 'status', this.ref, `--timeout=${this.cfg.timeoutSeconds}s`),
        ];
      case 'rebuild':
        throw unsupportedAction(
          `service ${this.service} cannot rebuild on Kubernetes: build and push a new image, then roll it out with the app rollout procedure (kubectl set image ${this.ref} ...); 'restart' restarts the pods on the current image, or set services.${this.service}.driver to a command driver with a rebuild command`,
        );
      case 'clean':
        return [step('delete', 'pvc', '-l', `app=${this.name}`)];
    }
  }

  plan(action: ServiceAction): string[] {
    return joinSteps(this.steps(action));
  }

  async run(action: ServiceAction): Promise<ServiceActionResult> {
    return runSteps(this.steps(action), this.ctx, { service: this.service, action });
  }

  async status(): Promise<ServiceStatus> {
    const answer = await invokeForAnswer(
      { argv: this.kubectl('get', this.ref, '-o', 'json'), timeoutMs: QUERY_TIMEOUT_MS },
      this.ctx,
      `service ${this.service} status`,
    );
    if ('result' in answer) return parseWorkload(answer.result.stdout, this.ref);
    if (/\(NotFound\)/.test(answer.output)) {
      return { running: false, detail: `${this.ref} not found in namespace ${this.cfg.namespace}` };
    }
    // Anything else (cluster unreachable, no permission) is not an answer about the workload.
    throw answer.failure;
  }

  async logs(lines: number): Promise<string> {
    const { stdout } = await invoke(
      { argv: this.kubectl('logs', this.ref, `--tail=${lines}`), timeoutMs: QUERY_TIMEOUT_MS },
      this.ctx,
      `service ${this.service} logs`,
    );
    return tailLines(stdout, lines);
  }
}

interface Workload {
  spec?: { replicas?: number };
  status?: { readyReplicas?: number; replicas?: number; numberReady?: number; desiredNumberScheduled?: number };
}

export function parseWorkload(stdout: string, ref: string): ServiceStatus {
  let w: Workload;
  try {
    w = JSON.parse(stdout) as Workload;
  } catch {
    return { running: 'unknown', detail: `could not parse kubectl get ${ref} output: ${tailLines(stdout, 3)}` };
  }
  // Deployments and statefulsets count readyReplicas; daemonsets count numberReady.
  const ready = w.status?.readyReplicas ?? w.status?.numberReady ?? 0;
  const desired = w.spec?.replicas ?? w.status?.desiredNumberScheduled ?? w.status?.replicas ?? 0;
  return { running: ready >= 1, detail: `${ref}: ${ready}/${desired} ready` };
}
