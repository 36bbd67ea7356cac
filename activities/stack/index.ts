export { createStackActivities, type WaitHealthyRequest } from './stack.js';
