/** The incident runbook family. Workflows are exported under their kebab-case procedure ids from workflows/index.ts. */
export {};
