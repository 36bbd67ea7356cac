import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // The cluster's platform failures take about a minute: `npm run test:cluster` runs them.
    exclude: [...configDefaults.exclude, ...(process.env.RUNBOOK_TEST_TEMPORAL === 'cluster' ? [] : ['tests/temporal/cluster-failures.test.ts', 'tests/temporal/cluster-services.test.ts'])],
    // One Temporal dev server for the run; tests get its address through inject().
    globalSetup: ['tests/global-setup.ts'],
    setupFiles: ['tests/setup-runtime.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: files run one after another, each with real servers of its own.
    fileParallelism: false,
    reporters: ['default'],
  },
});
