/**
 * The worker's single workflowsPath. Workflow types are the kebab-case procedure
 * ids, so the names users type in the UI and CLI are the runbooks' own.
 */
export * from './stack/index.js';
export * from './database/index.js';
export * from './delivery/index.js';
export * from './incident/index.js';
