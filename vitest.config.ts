import { configDefaults, defineConfig } from 'vitest/config';

const CLUSTER_ONLY = ['tests/temporal/cluster-failures.test.ts', 'tests/temporal/cluster-services.test.ts'];
const CONTAINERS_ONLY = ['tests/database/volume-real.test.ts', 'tests/workflows/stack-compose.test.ts'];

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // The cluster's platform failures take about a minute: `npm run test:cluster` runs them. The
    // files that run whole stacks and databases in real containers (about 3 minutes) are
    // `npm run test:containers`; the container parts of other files stay in npm test.
    exclude: [
      ...configDefaults.exclude,
      ...(process.env.RUNBOOK_TEST_TEMPORAL === 'cluster' ? [] : CLUSTER_ONLY),
      ...(process.env.RUNBOOK_TEST_CONTAINERS === '1' ? [] : CONTAINERS_ONLY),
    ],
    // One Temporal dev server for the run; tests get its address through inject().
    globalSetup: ['tests/global-setup.ts'],
    setupFiles: ['tests/setup-runtime.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two files at a time, each with real servers of its own on free ports and temp dirs: much of a
    // file's time is waiting on those servers, Temporal timers and polls, so a second file fills
    // it (the suite took ~1,450 s one file at a time on two cores, ~1,070 s two at a time).
    // `npm run test:cluster` keeps one file at a time, as it was verified: its files start clusters
    // of their own beside the run's, each a temporal-server and a PostgreSQL.
    fileParallelism: process.env.RUNBOOK_TEST_TEMPORAL !== 'cluster',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
