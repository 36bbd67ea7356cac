import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../common/errors.js';
import type { ServiceActionResult } from '../../common/types.js';
import { heartbeating } from '../context.js';
import type { ActivityDeps } from '../deps.js';
import { CommandDriver } from '../drivers/command.js';
import { configFailure } from '../drivers/support.js';

/**
 * Fulcrum 8.2 step 5, "restart services with previous code version", for services driven by
 * their own commands: the driver's `rollback` command when configured, else a plain start.
 * (Kubernetes and compose services go back with the delivery family's rollbackAppRevision.)
 */
export function createAppVersionActivities(deps: ActivityDeps) {
  return {
    startAtPreviousVersion: (req: { service: string }) => startAtPreviousVersion(deps, req),
  };
}

export async function startAtPreviousVersion(
  deps: ActivityDeps,
  req: { service: string },
): Promise<{ how: 'rollback-command' | 'start'; result: ServiceActionResult | null }> {
  const svc = deps.config.services.find((s) => s.name === req.service);
  if (svc?.driver.type !== 'command') {
    throw ApplicationFailure.nonRetryable(`service ${req.service} does not use the command driver`, ErrorTypes.InvalidInput);
  }
  const driver = new CommandDriver(svc.name, svc.driver, {
    env: deps.env,
    logger: deps.logger.child({ service: svc.name }),
    configDir: deps.configDir,
    signal: Context.current().cancellationSignal,
  });
  try {
    return await heartbeating(
      () => ({ service: svc.name, action: 'start at previous version' }),
      async () => {
        const rolledBack = await driver.runRollback();
        if (rolledBack) return { how: 'rollback-command' as const, result: rolledBack };
        if ((await driver.status()).running === true) return { how: 'start' as const, result: null };
        return { how: 'start' as const, result: await driver.run('start') };
      },
    );
  } catch (err) {
    return configFailure(err);
  }
}
