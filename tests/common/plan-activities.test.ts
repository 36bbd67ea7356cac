import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { ACTING_ACTIVITIES, READ_ONLY_ACTIVITIES, readsOnly } from '../../common/plan.js';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';

/**
 * `runbook plan` runs the read-only activities and stops at any other: every activity the worker
 * registers must be classified, so that a new one cannot slip into a plan unclassified.
 */
describe('plan: every activity is classified', () => {
  it('each registered activity is read-only or acting, never both', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'runbook-plan-acts-'));
    try {
      const loaded = await loadConfig(path.resolve('runbooks.example.yaml'));
      const activities = createActivities({ config: loaded.config, configDir: loaded.dir, env: { RUNBOOK_STATE_DIR: dir }, logger: createLogger({ component: 'test' }, 'warn') });
      const names = Object.keys(activities).sort();
      expect(names.length).toBeGreaterThan(50);
      expect(names.filter((n) => !READ_ONLY_ACTIVITIES.has(n) && !ACTING_ACTIVITIES.has(n))).toEqual([]);
      expect([...READ_ONLY_ACTIVITIES].filter((n) => ACTING_ACTIVITIES.has(n))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a retention or migration preview (dryRun) reads only; the same call without it acts', () => {
    expect(readsOnly('applyRetention', [{ database: 'app', keep: 1, dryRun: true }])).toBe(true);
    expect(readsOnly('applyRetention', [{ database: 'app', keep: 1 }])).toBe(false);
    expect(readsOnly('migrate', [{ database: 'app', dryRun: true }])).toBe(true);
    expect(readsOnly('serviceAction', [{ service: 'api', action: 'stop', dryRun: true }])).toBe(false);
  });
});
