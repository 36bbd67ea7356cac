import { readFile } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import { Client, Connection, type TLSConfig } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import type { NativeConnection } from '@temporalio/worker';
import { payloadEncryptionFromEnv } from '../codec/index.js';
import { DEFAULT_TASK_QUEUE } from '../../common/procedures.js';

/**
 * How the CLI and the worker reach Temporal. Both read the same variables (the
 * names the `temporal` CLI uses), so a run started by one is seen by the other.
 */
export interface TemporalSettings {
  address: string;
  namespace: string;
  taskQueue: string;
  /** Present = TLS on. Paths are read when connecting, so a rotated certificate is picked up on restart. */
  tls?: { clientCertPath?: string; clientKeyPath?: string; serverRootCaPath?: string; serverNameOverride?: string };
  apiKey?: string;
}

export const DEFAULT_TEMPORAL_ADDRESS = '127.0.0.1:7233';

export class TemporalSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemporalSettingsError';
  }
}

function nonEmpty(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

function flag(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const v = nonEmpty(env, name)?.toLowerCase();
  if (v === undefined) return undefined;
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new TemporalSettingsError(`${name}=${env[name]} is not a boolean (use true or false)`);
}

/**
 * TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, RUNBOOK_TASK_QUEUE; TLS from TEMPORAL_TLS_CERT /
 * TEMPORAL_TLS_KEY (mTLS, both or neither), TEMPORAL_TLS_CA, TEMPORAL_TLS_SERVER_NAME,
 * TEMPORAL_TLS=true (server TLS with the system roots); TEMPORAL_API_KEY implies TLS.
 */
export function temporalSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): TemporalSettings {
  const settings: TemporalSettings = {
    address: nonEmpty(env, 'TEMPORAL_ADDRESS') ?? DEFAULT_TEMPORAL_ADDRESS,
    namespace: nonEmpty(env, 'TEMPORAL_NAMESPACE') ?? 'default',
    taskQueue: nonEmpty(env, 'RUNBOOK_TASK_QUEUE') ?? DEFAULT_TASK_QUEUE,
  };

  const clientCertPath = nonEmpty(env, 'TEMPORAL_TLS_CERT');
  const clientKeyPath = nonEmpty(env, 'TEMPORAL_TLS_KEY');
  const serverRootCaPath = nonEmpty(env, 'TEMPORAL_TLS_CA');
  const serverNameOverride = nonEmpty(env, 'TEMPORAL_TLS_SERVER_NAME');
  const apiKey = nonEmpty(env, 'TEMPORAL_API_KEY');
  const tlsFlag = flag(env, 'TEMPORAL_TLS');

  if (Boolean(clientCertPath) !== Boolean(clientKeyPath)) {
    const [set, missing] = clientCertPath ? ['TEMPORAL_TLS_CERT', 'TEMPORAL_TLS_KEY'] : ['TEMPORAL_TLS_KEY', 'TEMPORAL_TLS_CERT'];
    throw new TemporalSettingsError(`${set} is set but ${missing} is not: mTLS needs both the client certificate and its key`);
  }
  const anyTls = Boolean(clientCertPath || serverRootCaPath || serverNameOverride || apiKey);
  if (tlsFlag === false && anyTls) {
    const offending = [
      clientCertPath && 'TEMPORAL_TLS_CERT',
      serverRootCaPath && 'TEMPORAL_TLS_CA',
      serverNameOverride && 'TEMPORAL_TLS_SERVER_NAME',
      apiKey && 'TEMPORAL_API_KEY',
    ].filter(Boolean);
    throw new TemporalSettingsError(`TEMPORAL_TLS=false contradicts ${offending.join(', ')} (which need TLS): unset one of them`);
  }
  if (anyTls || tlsFlag) {
    settings.tls = {};
    if (clientCertPath) settings.tls.clientCertPath = clientCertPath;
    if (clientKeyPath) settings.tls.clientKeyPath = clientKeyPath;
    if (serverRootCaPath) settings.tls.serverRootCaPath = serverRootCaPath;
    if (serverNameOverride) settings.tls.serverNameOverride = serverNameOverride;
  }
  if (apiKey) settings.apiKey = apiKey;
  return settings;
}

/** The settings as they may be logged or printed: the API key is replaced, never shown. */
export function describeSettings(settings: TemporalSettings): Record<string, unknown> {
  return {
    address: settings.address,
    namespace: settings.namespace,
    taskQueue: settings.taskQueue,
    tls: settings.tls ? { ...settings.tls } : false,
    apiKey: settings.apiKey ? '***' : undefined,
  };
}

async function readPem(path: string, variable: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new TemporalSettingsError(`${variable}=${path}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** The TLS option both SDK connections take: `false` for plaintext, `true` for system roots. */
async function tlsOption(settings: TemporalSettings): Promise<TLSConfig | boolean> {
  const t = settings.tls;
  if (!t) return false;
  const config: TLSConfig = {};
  if (t.serverNameOverride) config.serverNameOverride = t.serverNameOverride;
  if (t.serverRootCaPath) config.serverRootCACertificate = await readPem(t.serverRootCaPath, 'TEMPORAL_TLS_CA');
  if (t.clientCertPath && t.clientKeyPath) {
    config.clientCertPair = {
      crt: await readPem(t.clientCertPath, 'TEMPORAL_TLS_CERT'),
      key: await readPem(t.clientKeyPath, 'TEMPORAL_TLS_KEY'),
    };
  }
  return Object.keys(config).length > 0 ? config : true;
}

/**
 * A client with the project's data converter: payload encryption from RUNBOOK_CODEC_KEY /
 * RUNBOOK_CODEC_KEY_FILE unless `dataConverter` is given. A key problem throws CodecKeyError
 * before any connection is made.
 */
export async function connectClient(
  settings: TemporalSettings,
  opts: { dataConverter?: DataConverter; identity?: string } = {},
): Promise<{ client: Client; connection: Connection }> {
  const dataConverter = opts.dataConverter ?? payloadEncryptionFromEnv().dataConverter;
  const connection = await Connection.connect({
    address: settings.address,
    tls: await tlsOption(settings),
    ...(settings.apiKey ? { apiKey: settings.apiKey } : {}),
  });
  // Recorded by the server on every start, signal and update this client sends: the history's
  // "identity", which an auditor can set beside an approval's self-declared `by`.
  const identity = opts.identity ?? clientIdentity();
  return { client: new Client({ connection, namespace: settings.namespace, dataConverter, identity }), connection };
}

export async function connectWorker(settings: TemporalSettings): Promise<NativeConnection> {
  // Only workers load the worker package (its native core): the CLI's clients do not pay for it.
  const { NativeConnection } = await import('@temporalio/worker');
  return NativeConnection.connect({
    address: settings.address,
    tls: await tlsOption(settings),
    ...(settings.apiKey ? { apiKey: settings.apiKey } : {}),
  });
}

/** `runbook <os user>@<host> pid <pid>`; the OS account, not $RUNBOOK_USER, which is only a claim. */
export function clientIdentity(): string {
  let user = process.env.USER ?? 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (some containers): keep $USER
  }
  return `runbook ${user}@${hostname()} pid ${process.pid}`;
}
