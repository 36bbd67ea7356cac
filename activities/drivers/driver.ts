import type { ServiceAction, ServiceActionResult } from '../../common/types.js';
import type { Logger } from '../../lib/logger.js';

export interface DriverContext {
  /** The worker's environment: `${VAR}` references resolve from it and children inherit its allow-listed part. */
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** Relative cwd/file paths in the config resolve against it. */
  configDir: string;
  signal?: AbortSignal;
}

export interface ServiceStatus {
  running: boolean | 'unknown';
  detail: string;
}

export interface ServiceDriver {
  readonly kind: 'command' | 'compose' | 'kubernetes';
  /**
   * The argv an action would run, for dry runs and for de-duplicating stack-wide commands.
   * `${VAR}` references stay unresolved so a plan can be shown and logged. An action of two
   * commands is shown as `first... && second...` (they run one after the other, never in a shell).
   * Throws an UnsupportedAction failure if the action is not available.
   */
  plan(action: ServiceAction): string[];
  /** Throws a CommandFailed failure (retryable) when a command fails, UnsupportedAction when it cannot be done. */
  run(action: ServiceAction): Promise<ServiceActionResult>;
  status(): Promise<ServiceStatus>;
  logs(lines: number): Promise<string>;
}
