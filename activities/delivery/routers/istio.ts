import { performance } from 'node:perf_hooks';
import type { RouterConfig } from '../../../common/delivery/config.js';
import type { WeightChange } from '../../../common/delivery/types.js';
import { formatCommand } from '../../../lib/exec.js';
import type { DriverContext } from '../../drivers/driver.js';
import { invoke } from '../../drivers/support.js';
import { checkWeight, type TrafficRouter } from './router.js';

type IstioConfig = Extract<RouterConfig, { type: 'istio' }>;

/** Weights of an Istio VirtualService route, through kubectl (JSON patch of the two destinations). */
export class IstioRouter implements TrafficRouter {
  readonly type = 'istio' as const;

  constructor(
    private readonly name: string,
    private readonly cfg: IstioConfig,
    private readonly ctx: DriverContext,
  ) {}

  private kubectl(...args: string[]): string[] {
    return ['kubectl', ...(this.cfg.context ? ['--context', this.cfg.context] : []), '-n', this.cfg.namespace, ...args];
  }

  private routePath(index: number): string {
    return `/spec/http/${this.cfg.httpRouteIndex}/route/${index}/weight`;
  }

  describe() {
    const vs = `virtualservice/${this.cfg.virtualService}`;
    return { stable: `${vs} route ${this.cfg.stableRouteIndex}`, canary: `${vs} route ${this.cfg.canaryRouteIndex}` };
  }

  patchArgv(weight: number): string[] {
    checkWeight(weight);
    const patch = [
      { op: 'replace', path: this.routePath(this.cfg.stableRouteIndex), value: 100 - weight },
      { op: 'replace', path: this.routePath(this.cfg.canaryRouteIndex), value: weight },
    ];
    return this.kubectl('patch', 'virtualservice', this.cfg.virtualService, '--type', 'json', '-p', JSON.stringify(patch));
  }

  plan(weight: number): string[] {
    return [formatCommand(this.patchArgv(weight))];
  }

  async currentWeight(): Promise<number | null> {
    const argv = this.kubectl('get', 'virtualservice', this.cfg.virtualService, '-o', 'json');
    const { stdout } = await invoke({ argv, timeoutMs: this.cfg.timeoutSeconds * 1000 }, this.ctx, `router ${this.name}: read weights`);
    try {
      const vs = JSON.parse(stdout) as { spec?: { http?: Array<{ route?: Array<{ weight?: number }> }> } };
      const w = vs.spec?.http?.[this.cfg.httpRouteIndex]?.route?.[this.cfg.canaryRouteIndex]?.weight;
      return typeof w === 'number' ? w : null;
    } catch {
      return null;
    }
  }

  async setWeight(weight: number): Promise<WeightChange> {
    const started = performance.now();
    const previousWeight = await this.currentWeight();
    const base = { router: this.name, weight, previousWeight };
    if (previousWeight === weight) return { ...base, changed: false, commands: [], durationMs: Math.round(performance.now() - started) };
    const argv = this.patchArgv(weight);
    await invoke({ argv, timeoutMs: this.cfg.timeoutSeconds * 1000 }, this.ctx, `router ${this.name}: set canary weight ${weight}`);
    return { ...base, changed: true, commands: [formatCommand(argv)], durationMs: Math.round(performance.now() - started) };
  }
}
