import { UserError } from './user-error.js';

/**
 * A Temporal client for one CLI command. The SDK and the payload codec load here, when a command
 * first needs them, so `runbook --help` and the commands that never call Temporal do not pay for them.
 */
export async function connectCli(hint = ' (start it with `npm start` or set TEMPORAL_ADDRESS)') {
  const [{ connectClient, temporalSettingsFromEnv }, { CodecKeyError }] = await Promise.all([
    import('../lib/temporal/connection.js'),
    import('../lib/codec/index.js'),
  ]);
  const settings = temporalSettingsFromEnv();
  const { client, connection } = await connectClient(settings).catch((err: Error) => {
    if (err instanceof CodecKeyError) throw err;
    throw new UserError(`cannot reach Temporal at ${settings.address}: ${err.message}${hint}`);
  });
  return { client, connection, settings };
}
