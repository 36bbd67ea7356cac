/**
 * Performance settings of every Temporal server the project starts or ships: the dev server
 * (`startDevServer`, hence `runbook dev`, the tests and the benchmarks) and the production
 * compose file's dynamic config (deploy/temporal/dynamicconfig.yaml, which a test keeps equal
 * to SERVER_DYNAMIC_CONFIG). Keys as named by Temporal server 1.29.1.
 */

export const SERVER_DYNAMIC_CONFIG = {
  // The history service reads its transfer queue (the hand-off of each new workflow or
  // activity task to matching) at most this many times a second per shard; the default of
  // 20, burst 20, made every sequential step of a run wait ~50 ms for a token once the burst
  // was spent. A reader polls only when tasks are waiting, so an idle server costs nothing more.
  'history.transferProcessorMaxPollRPS': 1000,
  // Off by default in 1.29: hands an activity to the worker that scheduled it in the reply to
  // its workflow task, skipping the transfer queue and the matching round trip.
  'system.enableActivityEagerExecution': true,
} as const satisfies Record<string, number | boolean>;

/**
 * SQLite pragmas of a file-backed dev server (`runbook dev`). In the default rollback-journal
 * mode every commit waits for an fsync (~46 ms a step); with WAL and synchronous=normal a
 * commit is an append, and a crash of the process loses nothing (a power cut may lose the
 * last transactions, acceptable for a development server).
 */
export const DEV_SERVER_SQLITE_PRAGMAS = {
  journal_mode: 'wal',
  synchronous: 'normal',
} as const satisfies Record<string, string>;

/** `--dynamic-config-value` and (with a database file) `--sqlite-pragma` flags of `temporal server start-dev`. */
export function devServerSettingArgs(opts: { dbFile?: string }): string[] {
  return [
    ...Object.entries(SERVER_DYNAMIC_CONFIG).flatMap(([key, value]) => ['--dynamic-config-value', `${key}=${JSON.stringify(value)}`]),
    ...(opts.dbFile ? Object.entries(DEV_SERVER_SQLITE_PRAGMAS).flatMap(([pragma, value]) => ['--sqlite-pragma', `${pragma}=${value}`]) : []),
  ];
}
