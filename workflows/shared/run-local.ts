/**
 * State of one run for modules the worker shares between runs. The worker evaluates the workflow
 * modules once (worker/main.ts, preloadModules) instead of once per run, so a module-level `let`
 * would be seen by every run in the worker. The SDK's reusable context gives each run its own
 * globals (it swaps them on every activation), so a value kept there belongs to the run that
 * set it and goes away with it.
 */
const PREFIX = '__runbook_run_local_';

export function runLocal<T>(key: string, init: () => T): T {
  const globals = globalThis as unknown as Record<string, unknown>;
  const name = PREFIX + key;
  if (!(name in globals)) globals[name] = init();
  return globals[name] as T;
}
