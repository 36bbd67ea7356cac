// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const nodeBuiltins = [
  'assert', 'buffer', 'child_process', 'cluster', 'crypto', 'dgram', 'dns', 'events', 'fs', 'fs/promises',
  'http', 'http2', 'https', 'net', 'os', 'path', 'perf_hooks', 'process', 'readline', 'stream', 'timers',
  'tls', 'url', 'util', 'v8', 'vm', 'worker_threads', 'zlib',
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'dist.*/**', '.runbook/**', 'tests/artifacts/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox: no Node built-ins,
    // no I/O libraries, and activities only as types.
    files: ['workflows/**/*.ts', 'common/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            ...nodeBuiltins.flatMap((name) => [
              { name, message: 'Workflow-safe code must not use Node built-ins.' },
              { name: `node:${name}`, message: 'Workflow-safe code must not use Node built-ins.' },
            ]),
            ...['pg', 'ioredis', 'execa', 'pino', '@temporalio/client', '@temporalio/worker', '@temporalio/activity'].map((name) => ({
              name,
              message: 'I/O libraries belong in activities/, lib/ or worker/, not in workflow-safe code.',
            })),
          ],
          patterns: [
            { group: ['@nats-io/*'], message: 'I/O libraries belong in activities/.' },
            { group: ['**/activities', '**/activities/*', '**/lib/*'], allowTypeImports: true, message: 'Import activities and lib only as types in workflow code.' },
          ],
        },
      ],
    },
  },
  {
    // Plain Node scripts (the CLI entry, test fixture scripts).
    files: ['**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', URL: 'readonly' } },
  },
  {
    files: ['common/**/*.ts', 'lib/**/*.ts', 'activities/**/*.ts', 'workflows/**/*.ts', 'worker/**/*.ts'],
    rules: { 'no-console': 'error' },
  },
);
