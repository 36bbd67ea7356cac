export { checkWeight, type TrafficRouter } from './router.js';
export { createRouter } from './create.js';
