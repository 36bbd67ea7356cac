import path from 'node:path';
import type { RouterConfig } from '../../../common/families/delivery-config.js';
import type { RouterType, WeightChange } from '../../../common/families/delivery-types.js';
import type { DriverContext } from '../../drivers/index.js';
import { CommandRouter } from './command.js';
import { IstioRouter } from './istio.js';
import { NginxRouter } from './nginx.js';

/**
 * Moves a percentage of traffic between a stable and a canary backend. Blue/green
 * uses the same interface: blue is the stable backend (weight 0), green the canary
 * backend (weight 100).
 */
export interface TrafficRouter {
  readonly type: RouterType;
  /** Where the two backends are, for display. */
  describe(): { stable: string; canary: string };
  /** What setWeight would run, for dry runs. */
  plan(weight: number): string[];
  /** The canary percentage now in effect, or null when it cannot be told (no file yet, no getWeight command). */
  currentWeight(): Promise<number | null>;
  /** Idempotent: a weight already in effect changes nothing. */
  setWeight(weight: number): Promise<WeightChange>;
}

export function createRouter(name: string, cfg: RouterConfig, ctx: DriverContext): TrafficRouter {
  const resolve = (p: string) => path.resolve(ctx.configDir, p);
  switch (cfg.type) {
    case 'nginx':
      return new NginxRouter(name, { ...cfg, configPath: resolve(cfg.configPath), upstreamFile: resolve(cfg.upstreamFile), prefix: cfg.prefix ? resolve(cfg.prefix) : undefined, pidFile: cfg.pidFile ? resolve(cfg.pidFile) : undefined }, ctx);
    case 'istio':
      return new IstioRouter(name, cfg, ctx);
    case 'command':
      return new CommandRouter(name, { ...cfg, cwd: cfg.cwd ? resolve(cfg.cwd) : ctx.configDir }, ctx);
  }
}

export function checkWeight(weight: number): void {
  if (!Number.isInteger(weight) || weight < 0 || weight > 100) throw new RangeError(`weight must be an integer 0..100, got ${weight}`);
}
