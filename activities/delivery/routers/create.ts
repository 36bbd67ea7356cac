import path from 'node:path';
import type { RouterConfig } from '../../../common/delivery/config.js';
import type { DriverContext } from '../../drivers/driver.js';
import { CommandRouter } from './command.js';
import { IstioRouter } from './istio.js';
import { NginxRouter } from './nginx.js';
import type { TrafficRouter } from './router.js';

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
