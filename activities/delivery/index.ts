export { createDeliveryActivities } from './delivery.js';
