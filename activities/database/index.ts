export { createDatabaseActivities } from './database.js';
