export type { DriverContext, ServiceDriver, ServiceStatus } from './driver.js';
export { createDriver } from './create.js';
