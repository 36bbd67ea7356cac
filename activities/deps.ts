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
