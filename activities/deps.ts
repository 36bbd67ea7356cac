import type { RunbookConfig } from '../common/config-schema.js';
import type { Logger } from '../lib/logger.js';

/** What every activity gets: built once by worker/, never by activities themselves. */
export interface ActivityDeps {
  config: RunbookConfig;
  /** Relative paths in the config resolve against this. */
  configDir: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}

/** ActivityDeps plus the logger a family's module functions write with (a child carrying the family's bindings). */
export interface LoggingDeps extends ActivityDeps {
  log: Logger;
}
