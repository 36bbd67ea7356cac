import { performance } from 'node:perf_hooks';
import type { RouterConfig } from '../../../common/delivery/config.js';
import type { WeightChange } from '../../../common/delivery/types.js';
import { formatCommand } from '../../../lib/exec.js';
import { resolveEnvRefs } from '../../../lib/env.js';
import type { DriverContext } from '../../drivers/driver.js';
import { configFailure, invoke } from '../../drivers/support.js';
import { checkWeight, type TrafficRouter } from './router.js';

type CommandConfig = Extract<RouterConfig, { type: 'command' }>;

/** The user's own script: setWeight argv with {weight}, optional getWeight printing the percentage. */
export class CommandRouter implements TrafficRouter {
  readonly type = 'command' as const;

  constructor(
    private readonly name: string,
    private readonly cfg: CommandConfig,
    private readonly ctx: DriverContext,
  ) {}

  describe() {
    return { stable: `${this.cfg.setWeight[0]} (stable)`, canary: `${this.cfg.setWeight[0]} (canary)` };
  }

  private argvFor(weight: number): string[] {
    return this.cfg.setWeight.map((a) => a.split('{weight}').join(String(weight)));
  }

  private env(): { env: Record<string, string>; secrets: string[] } {
    const env: Record<string, string> = {};
    const secrets: string[] = [];
    try {
      for (const [k, v] of Object.entries(this.cfg.env)) {
        env[k] = resolveEnvRefs(v, this.ctx.env, `delivery.routers.${this.name}.env.${k}`);
        if (v.includes('${')) secrets.push(env[k]);
      }
    } catch (err) {
      configFailure(err);
    }
    return { env, secrets };
  }

  plan(weight: number): string[] {
    checkWeight(weight);
    return [formatCommand(this.argvFor(weight))];
  }

  async currentWeight(): Promise<number | null> {
    if (!this.cfg.getWeight) return null;
    const { stdout } = await invoke(
      { argv: this.cfg.getWeight, cwd: this.cfg.cwd, ...this.env(), timeoutMs: this.cfg.timeoutSeconds * 1000 },
      this.ctx,
      `router ${this.name}: getWeight`,
    );
    const n = Number(stdout.trim());
    return Number.isInteger(n) && n >= 0 && n <= 100 ? n : null;
  }

  async setWeight(weight: number): Promise<WeightChange> {
    checkWeight(weight);
    const started = performance.now();
    const previousWeight = await this.currentWeight();
    const base = { router: this.name, weight, previousWeight };
    if (previousWeight === weight) return { ...base, changed: false, commands: [], durationMs: Math.round(performance.now() - started) };
    const argv = this.argvFor(weight);
    await invoke({ argv, cwd: this.cfg.cwd, ...this.env(), timeoutMs: this.cfg.timeoutSeconds * 1000 }, this.ctx, `router ${this.name}: setWeight ${weight}`);
    return { ...base, changed: true, commands: [formatCommand(argv)], durationMs: Math.round(performance.now() - started) };
  }
}
