import type { ServiceConfig } from '../../common/config-schema.js';
import { CommandDriver } from './command.js';
import { ComposeDriver } from './compose.js';
import { KubernetesDriver } from './kubernetes.js';
import type { DriverContext, ServiceDriver } from './driver.js';

export function createDriver(service: ServiceConfig, ctx: DriverContext): ServiceDriver {
  const driver = service.driver;
  switch (driver.type) {
    case 'command':
      return new CommandDriver(service.name, driver, ctx);
    case 'compose':
      return new ComposeDriver(service.name, driver, ctx);
    case 'kubernetes':
      return new KubernetesDriver(service.name, driver, ctx);
  }
}
