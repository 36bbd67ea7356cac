import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { payloadEncryptionFromEnv } from '../lib/codec/index.js';
import type { Logger } from '../lib/logger.js';
import { startDevServer, type DevServer } from '../lib/temporal/dev-server.js';

export interface BenchTemporal {
  address: string;
  namespace: string;
  client: Client;
  /** For workers. */
  native: NativeConnection;
  close(): Promise<void>;
}

/**
 * TEMPORAL_ADDRESS when set, else a dev server of the benchmark's own: in memory, or with
 * `stateDir` on a SQLite file there, as `runbook dev` runs it (`stateDir` ignores TEMPORAL_ADDRESS).
 */
export async function benchTemporal(logger: Logger, opts: { stateDir?: string } = {}): Promise<BenchTemporal> {
  let server: DevServer | undefined;
  let address = opts.stateDir ? undefined : process.env.TEMPORAL_ADDRESS;
  let namespace = opts.stateDir ? 'default' : (process.env.TEMPORAL_NAMESPACE ?? 'default');
  if (!address) {
    server = await startDevServer({ port: 0, ui: false, logger, stateDir: opts.stateDir });
    address = server.address;
    namespace = server.namespace;
  }
  const connection = await Connection.connect({ address });
  const native = await NativeConnection.connect({ address });
  return {
    address,
    namespace,
    // Encrypted like a real deployment when RUNBOOK_CODEC_KEY(_FILE) is set; workers get the same from createRunbookWorker.
    client: new Client({ connection, namespace, dataConverter: payloadEncryptionFromEnv().dataConverter }),
    native,
    async close() {
      await native.close();
      await connection.close();
      await server?.stop();
    },
  };
}
