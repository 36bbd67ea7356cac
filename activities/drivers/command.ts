import path from 'node:path';
import type { DriverConfig } from '../../common/config-schema.js';
import type { ServiceAction, ServiceActionResult } from '../../common/types.js';
import { envRefs, resolveEnvRefs } from '../../lib/env.js';
import { tailLines } from '../../lib/exec.js';
import { redactSecrets } from '../../lib/redact.js';
import type { DriverContext, ServiceDriver, ServiceStatus } from './driver.js';
import { configFailure, invoke, invokeForAnswer, joinSteps, runSteps, unsupportedAction, type Invocation } from './support.js';

type CommandConfig = Extract<DriverConfig, { type: 'command' }>;
type CommandField = 'start' | 'stop' | 'restart' | 'rebuild' | 'forceRecreate' | 'clean' | 'status' | 'logs' | 'rollback';

const FIELD_OF: Record<ServiceAction, CommandField> = {
  start: 'start',
  stop: 'stop',
  restart: 'restart',
  rebuild: 'rebuild',
  'force-recreate': 'forceRecreate',
  clean: 'clean',
};

/** Runs the user's own commands, one argv per action, without a shell. */
export class CommandDriver implements ServiceDriver {
  readonly kind = 'command' as const;

  constructor(
    private readonly service: string,
    private readonly cfg: CommandConfig,
    private readonly ctx: DriverContext,
  ) {}

  private field(name: string): string {
    return `services.${this.service}.driver.${name}`;
  }

  private unsupported(action: string, field: CommandField): Error {
    return unsupportedAction(
      `service ${this.service} cannot ${action}: no ${field} command is configured; set ${this.field(field)} to a command list ([program, arg, ...])`,
    );
  }

  /** The configured fields an action runs, in order. */
  private fieldsFor(action: ServiceAction): CommandField[] {
    const field = FIELD_OF[action];
    if (this.cfg[field]) return [field];
    if (action === 'restart' && this.cfg.stop && this.cfg.start) return ['stop', 'start'];
    if (action === 'restart') {
      throw unsupportedAction(
        `service ${this.service} cannot restart: set ${this.field('restart')}, or both ${this.field('stop')} and ${this.field('start')}`,
      );
    }
    throw this.unsupported(action, field);
  }

  plan(action: ServiceAction): string[] {
    return joinSteps(this.fieldsFor(action).map((f) => ({ argv: [...this.cfg[f]!], timeoutMs: 0 })));
  }

  /**
   * Every value the service's config takes from the environment is treated as a secret,
   * for all its commands: a token handed to `start` may well show up in `logs`.
   */
  private secrets(): string[] {
    const fields: CommandField[] = ['start', 'stop', 'restart', 'rebuild', 'forceRecreate', 'clean', 'status', 'logs', 'rollback'];
    const values = [...fields.flatMap((f) => this.cfg[f] ?? []), ...Object.values(this.cfg.env), this.cfg.cwd ?? ''];
    return values.flatMap((v) => envRefs(v).flatMap((name) => this.ctx.env[name] ?? []));
  }

  private invocation(field: CommandField): Invocation {
    try {
      const argv = this.cfg[field]!.map((arg, i) => resolveEnvRefs(arg, this.ctx.env, `${this.field(field)}[${i}]`));
      const env = Object.fromEntries(
        Object.entries(this.cfg.env).map(([k, v]) => [k, resolveEnvRefs(v, this.ctx.env, `${this.field('env')}.${k}`)]),
      );
      const cwd = path.resolve(this.ctx.configDir, this.cfg.cwd ? resolveEnvRefs(this.cfg.cwd, this.ctx.env, this.field('cwd')) : '.');
      return { argv, env, cwd, secrets: this.secrets(), timeoutMs: this.cfg.timeoutSeconds * 1000 };
    } catch (err) {
      return configFailure(err);
    }
  }

  async run(action: ServiceAction): Promise<ServiceActionResult> {
    const steps = this.fieldsFor(action).map((f) => this.invocation(f));
    return runSteps(steps, this.ctx, { service: this.service, action });
  }

  /**
   * Runs the configured `rollback` command, which starts the service at its previous version
   * (reported as a start); null when none is configured.
   */
  async runRollback(): Promise<ServiceActionResult | null> {
    if (!this.cfg.rollback) return null;
    return runSteps([this.invocation('rollback')], this.ctx, { service: this.service, action: 'start' });
  }

  /** Exit 0 of the status command means running, any other exit code means not running. */
  async status(): Promise<ServiceStatus> {
    if (!this.cfg.status) {
      return { running: 'unknown', detail: `no status command configured (${this.field('status')})` };
    }
    const inv = this.invocation('status');
    const answer = await invokeForAnswer(inv, this.ctx, `service ${this.service} status`);
    if ('result' in answer) {
      const out = lastLine(answer.result.stdout || answer.result.stderr);
      return { running: true, detail: redactSecrets(out || 'status command exited 0', inv.secrets ?? []) };
    }
    const out = lastLine(answer.output);
    return { running: false, detail: `status command exited ${answer.exitCode}${out ? `: ${out}` : ''}` };
  }

  /**
   * The configured log file, resolved against the config directory, and the values to
   * redact from what is read of it (the same as from the `logs` command's output).
   */
  logSource(): { file: string; secrets: string[] } | undefined {
    if (!this.cfg.logFile) return undefined;
    try {
      return { file: path.resolve(this.ctx.configDir, resolveEnvRefs(this.cfg.logFile, this.ctx.env, this.field('logFile'))), secrets: this.secrets() };
    } catch (err) {
      return configFailure(err);
    }
  }

  async logs(lines: number): Promise<string> {
    if (!this.cfg.logs) throw this.unsupported('show logs', 'logs');
    const inv = this.invocation('logs');
    const { stdout } = await invoke(inv, this.ctx, `service ${this.service} logs`);
    return redactSecrets(tailLines(stdout, lines), inv.secrets ?? []);
  }
}

function lastLine(text: string): string {
  return tailLines(text, 1).trim();
}
