import path from 'node:path';
import { createLogger } from '../lib/logger.js';
import { findTemporalServerTools, startTemporalCluster, TEMPORAL_SERVER_VERSION, temporalServerCacheDir } from '../lib/temporal/cluster.js';
import { UserError } from './user-error.js';

export interface ClusterCommandOptions {
  dataDir: string;
  postgresUrl?: string;
  ip: string;
  port: string;
  namespace: string;
  logLevel: string;
  buildOnly?: boolean;
  mtls?: boolean;
  jwt?: boolean;
  separateServices?: boolean;
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/**
 * `runbook temporal cluster`: temporal-server on PostgreSQL in the foreground until SIGINT or
 * SIGTERM, which stop the server and then the PostgreSQL it started. Progress on stderr; the
 * frontend address is the one line on stdout, for scripts.
 */
export async function runTemporalCluster(opts: ClusterCommandOptions): Promise<void> {
  if (opts.buildOnly) {
    const started = Date.now();
    console.error(`looking for temporal-server ${TEMPORAL_SERVER_VERSION} in ${temporalServerCacheDir()} ...`);
    const tools = await findTemporalServerTools({ install: true, onProgress: (line) => console.error(line) });
    console.error(`temporal-server, temporal-sql-tool and the schema are in ${path.dirname(tools!.server)} [${((Date.now() - started) / 1000).toFixed(1)} s]`);
    console.log(tools!.server);
    return;
  }
  const port = Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port ${opts.port}: give a TCP port number (0-65535; 0 = a free one)`);
  const logLevel = opts.logLevel as (typeof LOG_LEVELS)[number];
  if (!LOG_LEVELS.includes(logLevel)) throw new UserError(`--log-level ${opts.logLevel}: use one of ${LOG_LEVELS.join(', ')}`);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(opts.namespace)) {
    throw new UserError(`--namespace ${JSON.stringify(opts.namespace)}: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 255`);
  }
  // A URL with a password on the command line is visible to every user of the machine: the variable is the better place.
  const postgresUrl = opts.postgresUrl ?? (process.env.RUNBOOK_TEMPORAL_POSTGRES_URL?.trim() || undefined);
  const dataDir = path.resolve(opts.dataDir);
  const logger = createLogger({ component: 'temporal-cluster' }, process.env.LOG_LEVEL ?? 'warn');
  const started = Date.now();
  const say = (line: string) => console.error(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${line}`);

  let cluster: Awaited<ReturnType<typeof startTemporalCluster>> | undefined;
  let starting: Promise<unknown> | undefined;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      // A second Ctrl-C while start-up is still under way: the user does not want to wait.
      if (!cluster) process.exit(130);
      return;
    }
    stopping = true;
    if (!cluster && starting) {
      console.error(`\n${signal}: stopping as soon as start-up is done (Ctrl-C again to quit at once, leaving what was started running) ...`);
      await starting.catch(() => undefined);
    }
    console.error(`\n${signal}: stopping temporal-server${postgresUrl ? '' : ' and its PostgreSQL'} ...`);
    await cluster?.stop();
    console.error('stopped');
    process.exit(0);
  };
  // Registered before start-up: a Ctrl-C during the schema setup must not leave PostgreSQL running.
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));

  let tlsEnv: Record<string, string> | undefined;
  let tls: { certFile: string; keyFile: string; clientCaFile: string } | undefined;
  if (opts.mtls) {
    const { clusterTlsEnv, ensureClusterCerts } = await import('../lib/temporal/cluster-tls.js');
    const certs = await ensureClusterCerts(path.join(dataDir, 'tls'));
    say(`mTLS: clients need a certificate signed by ${certs.caFile}`);
    tls = { certFile: certs.serverCertFile, keyFile: certs.serverKeyFile, clientCaFile: certs.caFile };
    tlsEnv = clusterTlsEnv(certs);
  }
  let jwksFile: string | undefined;
  if (opts.jwt) {
    // The SDK sends a token only over TLS (TEMPORAL_API_KEY implies it): without mTLS no client could use one.
    if (!tls) throw new UserError('--jwt needs --mtls: clients send their token over TLS only');
    if (opts.separateServices) throw new UserError('--jwt with --separate-services is not supported (the internal frontend runs only in the one-process mode): leave one out');
    const { ensureSigningKey } = await import('../lib/temporal/jwt.js');
    const key = await ensureSigningKey(path.join(dataDir, 'jwt'));
    jwksFile = key.jwksFile;
    say(`JWT authorization: tokens signed by ${key.privateKeyFile} (make one with \`runbook temporal token --data-dir ${dataDir}\`)`);
  }
  try {
    const start = startTemporalCluster({
      dataDir,
      postgresUrl,
      ip: opts.ip,
      port,
      namespace: opts.namespace,
      logLevel,
      logger,
      onProgress: say,
      tls,
      jwksFile,
      separateServices: opts.separateServices,
    });
    starting = start.then((started) => (cluster = started));
    await starting;
  } catch (err) {
    throw new UserError(`the Temporal cluster did not start: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (stopping || !cluster) return new Promise(() => undefined); // the signal handler stops it and exits
  say(`ready in ${(cluster.readyMs / 1000).toFixed(1)} s after the server was started`);
  console.error(
    [
      '',
      `Temporal server:  ${TEMPORAL_SERVER_VERSION} on PostgreSQL ${cluster.postgresUrl} (databases temporal, temporal_visibility)`,
      ...(opts.separateServices
        ? [`Processes:        ${Object.entries(cluster.pids()).map(([service, pid]) => `${service} ${pid}`).join(', ')} (configs ${path.join(dataDir, 'config', 'runbook-<service>.yaml')})`]
        : []),
      `Temporal address: ${cluster.address} (namespace ${cluster.namespace}, runbook search attributes registered)`,
      `Server metrics:   ${cluster.metricsUrl}`,
      `Data and logs:    ${dataDir} (server log ${cluster.serverLogFile})`,
      ...(tlsEnv ? [`mTLS:             on; a client without a certificate from ${tlsEnv.TEMPORAL_TLS_CA} is refused`] : []),
      ...(jwksFile
        ? [
            `JWT:              on; a client needs TEMPORAL_API_KEY=$(runbook temporal token --data-dir ${dataDir} --subject <who> --permission ${cluster.namespace}:write) (read: query only)`,
            `Internal frontend: ${cluster.internalAddress} (loopback, no token: the cluster's own services; keep the host's other users off it)`,
          ]
        : []),
      `In other terminals: export TEMPORAL_ADDRESS=${cluster.address} TEMPORAL_NAMESPACE=${cluster.namespace}${
        tlsEnv
          ? ` ${Object.entries(tlsEnv)
              .map(([k, v]) => `${k}=${v}`)
              .join(' ')}`
          : ''
      }; then \`runbook worker\``,
      'Ctrl-C stops it.',
      '',
    ].join('\n'),
  );
  console.log(cluster.address);
  // Stays up until a signal; the server's exit on its own is reported and ends the command.
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const down = opts.separateServices ? (['frontend', 'history', 'matching', 'worker'] as const).filter((s) => cluster!.pids()[s] === undefined) : [];
    if (!stopping && (cluster.pid() === undefined || down.length > 0)) {
      await cluster.stop();
      throw new UserError(`temporal-server${down.length ? ` (${down.join(', ')})` : ''} exited on its own: see ${cluster.serverLogFile}`);
    }
  }
}

/** `runbook temporal token`: a JWT signed with `<data-dir>/jwt/jwt-signing-key.pem`, on stdout. */
export async function printTemporalToken(opts: { dataDir: string; subject: string; permission?: string[]; ttl: string }): Promise<void> {
  const { signToken, TokenError } = await import('../lib/temporal/jwt.js');
  const keyFile = path.join(path.resolve(opts.dataDir), 'jwt', 'jwt-signing-key.pem');
  const { existsSync } = await import('node:fs');
  if (!existsSync(keyFile)) throw new UserError(`${keyFile} does not exist: start the cluster once with \`runbook temporal cluster --mtls --jwt --data-dir ${opts.dataDir}\``);
  try {
    console.log(await signToken(keyFile, { subject: opts.subject, permissions: opts.permission ?? [], ttlSeconds: Number(opts.ttl) }));
  } catch (err) {
    if (err instanceof TokenError) throw new UserError(`runbook temporal token: ${err.message}`);
    throw err;
  }
}
