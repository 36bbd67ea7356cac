import { createWriteStream, existsSync } from 'node:fs';
import { appendFile, cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { Connection, isGrpcServiceError } from '@temporalio/client';
// Not re-exported from the package index; converts a duration to the protobuf Timestamp the API takes.
import { msToTs } from '@temporalio/common/lib/time.js';
import { execa, type ResultPromise } from 'execa';
import pg from 'pg';
import { stringify } from 'yaml';
import { runCommand } from '../exec.js';
import { assertPortFree, freePort } from '../local/ports.js';
import {
  initPostgres,
  postgresOwnedDir,
  postgresRunning,
  postgresServerBinDir,
  startPostgresServer,
  stopPostgresServer,
  type LocalPostgres,
} from '../local/postgres.js';
import { silentLogger, type Logger } from '../logger.js';
import { hostPort, OutputTail, waitUntilReady } from './dev-server.js';
import { findGo, goInstallCached, isExecutableFile, runbookCacheRoot, TemporalCliBuildError } from './install.js';
import { serveJwks, type JwksServer } from './jwt.js';
import { ensureSearchAttributes } from './search-attributes.js';
import { SERVER_DYNAMIC_CONFIG } from './server-settings.js';

/**
 * A Temporal cluster as production runs it: the `temporal-server` release (all four services in
 * one process) on PostgreSQL, its schema set up and upgraded by `temporal-sql-tool`. The same
 * server version the dev server embeds and docker-compose.temporal.yml pins.
 */
export const TEMPORAL_SERVER_VERSION = 'v1.29.1';
const SERVER_MODULE = 'go.temporal.io/server';
/** go.mod of go.temporal.io/server v1.29.1 says `go 1.25.0` (as the CLI's does). */
const SERVER_MIN_GO = '1.25';
/** Fixed for the life of the database; enough for one machine (the compose file uses 64). */
export const CLUSTER_HISTORY_SHARDS = 4;
const DATABASES = [
  { name: 'temporal', schema: 'temporal' },
  { name: 'temporal_visibility', schema: 'visibility' },
] as const;
/** Namespace retention the cluster's namespace is created with (the compose file's temporal-setup uses the same). */
const RETENTION_MS = 30 * 24 * 3600 * 1000;

/** `<cache root>/temporal-server-v1.29.1`: temporal-server, temporal-sql-tool and the PostgreSQL schema. */
export function temporalServerCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(runbookCacheRoot(env), `temporal-server-${TEMPORAL_SERVER_VERSION}`);
}

export interface ServerTools {
  server: string;
  sqlTool: string;
  /** `.../schema/postgresql/v12`, holding temporal/versioned and visibility/versioned. */
  schemaDir: string;
}

/**
 * temporal-server, temporal-sql-tool and the schema from the cache; with `install`, built by
 * `go install` from the module (minutes the first time, progress through onProgress) and the
 * module's schema copied beside them. Undefined when missing and not built.
 */
export async function findTemporalServerTools(
  opts: { install?: boolean; logger?: Logger; onProgress?: (line: string) => void; env?: NodeJS.ProcessEnv } = {},
): Promise<ServerTools | undefined> {
  const env = opts.env ?? process.env;
  const cacheDir = temporalServerCacheDir(env);
  const tools: ServerTools = {
    server: path.join(cacheDir, 'temporal-server'),
    sqlTool: path.join(cacheDir, 'temporal-sql-tool'),
    schemaDir: path.join(cacheDir, 'schema', 'postgresql', 'v12'),
  };
  const complete = async () =>
    (await isExecutableFile(tools.server)) && (await isExecutableFile(tools.sqlTool)) && existsSync(path.join(tools.schemaDir, 'visibility', 'versioned'));
  if (await complete()) return tools;
  if (!opts.install) return undefined;
  const go = await findGo(env);
  if (!go) {
    throw new Error(
      `temporal-server ${TEMPORAL_SERVER_VERSION} is not in ${cacheDir} and Go is not installed to build it: install Go ${SERVER_MIN_GO}+ (https://go.dev/dl/) and run \`runbook temporal cluster\` again`,
    );
  }
  await goInstallCached(
    {
      label: `Temporal server ${TEMPORAL_SERVER_VERSION}`,
      cacheDir,
      packages: [`${SERVER_MODULE}/cmd/server@${TEMPORAL_SERVER_VERSION}`, `${SERVER_MODULE}/cmd/tools/sql@${TEMPORAL_SERVER_VERSION}`],
      binaries: { server: 'temporal-server', sql: 'temporal-sql-tool' },
      minGo: SERVER_MIN_GO,
    },
    { go, env, logger: opts.logger, onProgress: opts.onProgress },
  );
  if (!existsSync(path.join(tools.schemaDir, 'visibility', 'versioned'))) {
    // The schema ships in the module (the build just downloaded it), not in the binaries.
    const r = await execa(go, ['mod', 'download', '-json', `${SERVER_MODULE}@${TEMPORAL_SERVER_VERSION}`], {
      env: { ...env, GOTOOLCHAIN: 'local', GOFLAGS: '' },
      extendEnv: false,
      cwd: cacheDir,
      reject: false,
    });
    const dir = r.exitCode === 0 ? (JSON.parse(r.stdout) as { Dir?: string }).Dir : undefined;
    if (!dir) throw new TemporalCliBuildError(`cannot locate the ${SERVER_MODULE}@${TEMPORAL_SERVER_VERSION} module for its schema:`, `${r.stderr}`);
    await cp(path.join(dir, 'schema', 'postgresql', 'v12'), tools.schemaDir, { recursive: true });
    // The module cache is read-only; the copy must not be, or the cache cannot be deleted.
    await runCommand(['chmod', '-R', 'u+w', path.join(cacheDir, 'schema')]);
    opts.onProgress?.(`copied the PostgreSQL schema of ${SERVER_MODULE}@${TEMPORAL_SERVER_VERSION} to ${tools.schemaDir}`);
  }
  return tools;
}

/** Where a cluster's PostgreSQL is: connection settings for the server and the sql tool. */
export interface PostgresTarget {
  host: string;
  port: number;
  user: string;
  password: string;
}

export function parsePostgresUrl(url: string): PostgresTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--postgres-url ${JSON.stringify(url.replace(/:[^:@/]*@/, ':***@'))} is not a URL: use postgres://USER:PASSWORD@HOST:PORT`);
  }
  if (!['postgres:', 'postgresql:'].includes(u.protocol)) throw new Error(`--postgres-url must start with postgres:// (got ${u.protocol}//)`);
  if (u.pathname && u.pathname !== '/') {
    throw new Error(`--postgres-url names database ${u.pathname.slice(1)}: leave the path out; the cluster uses the databases temporal and temporal_visibility`);
  }
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username) || 'postgres',
    password: decodeURIComponent(u.password),
  };
}

/** The ports a cluster listens on, kept in `<dataDir>/cluster.json` so a restart reuses them. */
export interface ClusterPorts {
  frontend: number;
  frontendHttp: number;
  frontendMembership: number;
  history: number;
  historyMembership: number;
  matching: number;
  matchingMembership: number;
  worker: number;
  workerMembership: number;
  metrics: number;
  /** Our own PostgreSQL's (absent with --postgres-url). */
  postgres?: number;
  /** With JWT authorization: the internal frontend (loopback, no token) the cluster's own services use. */
  internalFrontend?: number;
  internalFrontendMembership?: number;
  /** With the services as separate processes: each serves its own metrics (`metrics` is the frontend's). */
  historyMetrics?: number;
  matchingMetrics?: number;
  workerMetrics?: number;
}

export interface ClusterConfigInput {
  ip: string;
  ports: ClusterPorts;
  postgres: PostgresTarget;
  dynamicConfigFile: string;
  logLevel: string;
  /** TLS of the frontend: the server's certificate and key, and the CA client certificates must be signed by. */
  tls?: { certFile: string; keyFile: string; clientCaFile: string };
  /** JWT authorization on the frontend: keys fetched from jwksUrl; the internal frontend serves the cluster's own calls. */
  auth?: { jwksUrl: string };
}

/**
 * The server's configuration: Temporal's own config/development-postgres12.yaml (server
 * v1.29.1) with this cluster's ports, databases and dynamic config file; pprof off.
 */
export function clusterServerConfig(c: ClusterConfigInput): Record<string, unknown> {
  const datastore = (databaseName: string, maxConns: number) => ({
    sql: {
      pluginName: 'postgres12',
      databaseName,
      connectAddr: hostPort(c.postgres.host, c.postgres.port),
      connectProtocol: 'tcp',
      user: c.postgres.user,
      password: c.postgres.password,
      maxConns,
      maxIdleConns: maxConns,
      maxConnLifetime: '1h',
    },
  });
  const bind = c.ip === '127.0.0.1' ? { bindOnLocalHost: true } : { bindOnIP: c.ip };
  const service = (grpcPort: number, membershipPort: number, extra: Record<string, unknown> = {}) => ({
    rpc: { grpcPort, membershipPort, ...bind, ...extra },
  });
  const broadcast = c.ip === '0.0.0.0' ? '127.0.0.1' : c.ip;
  return {
    log: { stdout: true, level: c.logLevel },
    persistence: {
      defaultStore: 'postgres-default',
      visibilityStore: 'postgres-visibility',
      numHistoryShards: CLUSTER_HISTORY_SHARDS,
      datastores: { 'postgres-default': datastore('temporal', 20), 'postgres-visibility': datastore('temporal_visibility', 10) },
    },
    global: {
      membership: { maxJoinDuration: '30s', broadcastAddress: broadcast },
      metrics: { prometheus: { framework: 'tally', timerType: 'histogram', listenAddress: hostPort(broadcast, c.ports.metrics) } },
      ...(c.tls
        ? {
            tls: {
              frontend: {
                server: { certFile: c.tls.certFile, keyFile: c.tls.keyFile, requireClientAuth: true, clientCaFiles: [c.tls.clientCaFile] },
                // The worker service (system workflows) and the cluster's own calls go through the frontend too.
                client: { serverName: 'localhost', rootCaFiles: [c.tls.clientCaFile] },
              },
              systemWorker: { certFile: c.tls.certFile, keyFile: c.tls.keyFile, client: { serverName: 'localhost', rootCaFiles: [c.tls.clientCaFile] } },
            },
          }
        : {}),
      ...(c.auth
        ? {
            // The server's default claim mapper and authorizer: a request needs `Authorization: Bearer
            // <JWT>` signed by a key in the JWKS, whose `permissions` grant the role the API needs.
            authorization: {
              jwtKeyProvider: { keySourceURIs: [c.auth.jwksUrl], refreshInterval: '1m' },
              permissionsClaimName: 'permissions',
              authorizer: 'default',
              claimMapper: 'default',
            },
          }
        : {}),
    },
    services: {
      frontend: service(c.ports.frontend, c.ports.frontendMembership, { httpPort: c.ports.frontendHttp }),
      // With an internal-frontend section the history, matching and worker services call it, not
      // the public frontend; it maps every caller to system admin, so it listens on loopback only.
      ...(c.auth
        ? { 'internal-frontend': { rpc: { grpcPort: c.ports.internalFrontend, membershipPort: c.ports.internalFrontendMembership, bindOnLocalHost: true } } }
        : {}),
      matching: service(c.ports.matching, c.ports.matchingMembership),
      history: service(c.ports.history, c.ports.historyMembership),
      worker: service(c.ports.worker, c.ports.workerMembership),
    },
    clusterMetadata: {
      enableGlobalNamespace: false,
      failoverVersionIncrement: 10,
      masterClusterName: 'active',
      currentClusterName: 'active',
      clusterInformation: { active: { enabled: true, initialFailoverVersion: 1, rpcName: 'frontend', rpcAddress: hostPort(broadcast, c.ports.frontend) } },
    },
    dcRedirectionPolicy: { policy: 'noop' },
    dynamicConfigClient: { filepath: c.dynamicConfigFile, pollInterval: '10s' },
  };
}

/**
 * deploy/temporal/dynamicconfig.yaml, the file docker-compose.temporal.yml mounts into its
 * server, when this is a checkout (or a package that ships it); else undefined.
 */
export function composeDynamicConfigFile(): string | undefined {
  // From lib/temporal/ in the sources, from dist/lib/temporal/ in a build.
  for (const up of ['../../', '../../../']) {
    const file = fileURLToPath(new URL(`${up}deploy/temporal/dynamicconfig.yaml`, import.meta.url));
    if (existsSync(file)) return file;
  }
  return undefined;
}

/** SERVER_DYNAMIC_CONFIG in the dynamic config file format, for an install without the deploy/ directory. */
export function dynamicConfigYaml(): string {
  return stringify(Object.fromEntries(Object.entries(SERVER_DYNAMIC_CONFIG).map(([k, v]) => [k, [{ value: v, constraints: {} }]])));
}

export interface ClusterOptions {
  /** Config, logs, ports and (without postgresUrl) PostgreSQL's data live here; kept across runs. */
  dataDir: string;
  /** postgres://USER:PASSWORD@HOST:PORT of an existing server; default: our own initdb in `<dataDir>/postgres`. */
  postgresUrl?: string;
  /** Default 127.0.0.1. */
  ip?: string;
  /** Frontend gRPC port; default 7233; 0 = a free port. The other ports are chosen free on first start and kept. */
  port?: number;
  /** Default 'default'. */
  namespace?: string;
  /** Server log level; default 'warn'. */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Build the server with Go when missing; default true. */
  install?: boolean;
  logger?: Logger;
  /** Progress for a person: building, schema versions, start-up. */
  onProgress?: (line: string) => void;
  /** Default 120000 (the first start creates the system namespace and workflows). */
  readyTimeoutMs?: number;
  /** Speed over durability for PostgreSQL (fsync off): for tests whose data is thrown away. */
  ephemeral?: boolean;
  /** mTLS on the frontend: clients must present a certificate signed by clientCaFile. */
  tls?: { certFile: string; keyFile: string; clientCaFile: string };
  /** The server's output; default `<dataDir>/temporal-server.log`. */
  logFile?: string;
  /**
   * JWT authorization: a JWK Set file (see lib/temporal/jwt.ts) served to the server on a loopback
   * HTTP port for as long as the cluster runs; clients then need a token signed by one of its keys.
   */
  jwksFile?: string;
  /**
   * Run frontend, history, matching and worker as four processes (`start --service X`, each
   * with its own metrics port), as a production deployment scales them, instead of one.
   */
  separateServices?: boolean;
}

/** The services of a cluster, in the order they are started when they run as separate processes. */
export const CLUSTER_SERVICES = ['history', 'matching', 'frontend', 'worker'] as const;
export type ClusterService = (typeof CLUSTER_SERVICES)[number];

export interface SchemaReport {
  database: string;
  before: string | undefined;
  after: string;
}

export interface TemporalCluster {
  /** host:port of the frontend, what TEMPORAL_ADDRESS takes. */
  address: string;
  namespace: string;
  metricsUrl: string;
  /** Of the temporal-server process running now (with separateServices: the frontend's). */
  pid(): number | undefined;
  /** With separateServices: each service's process id (undefined when it is not running). */
  pids(): Partial<Record<ClusterService, number>>;
  /** Schema versions before and after this start's setup. */
  schema: SchemaReport[];
  /** postgres://... of the cluster's PostgreSQL (password hidden). */
  postgresUrl: string;
  /** Ours, when we run it: pg_ctl can stop and start it. */
  localPostgres?: LocalPostgres & { port: number };
  /** Spawn to namespace ready with search attributes. */
  readyMs: number;
  serverLogFile: string;
  /** With jwksFile: host:port of the internal frontend (loopback, no token needed: admin for whoever reaches it). */
  internalAddress?: string;
  /** With jwksFile: where the server fetches its keys. */
  jwksUrl?: string;
  /** Sends `signal` to the server (SIGKILL: a crash) and waits for it to exit. */
  killServer(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same ports and waits until the namespace answers. */
  startServer(): Promise<number>;
  /** With separateServices: sends `signal` to one service's process and waits for it to exit. */
  killService(service: ClusterService, signal?: NodeJS.Signals): Promise<void>;
  /** With separateServices: starts one service again (frontend: until the namespace answers; others: until their membership port accepts). */
  startService(service: ClusterService): Promise<number>;
  /** Stops our PostgreSQL (mode fast: connections are cut) and starts it again after `downMs`. */
  restartPostgres(downMs?: number): Promise<void>;
  /** Stops the server, then our PostgreSQL. */
  stop(): Promise<void>;
}

async function loadPorts(file: string): Promise<Partial<ClusterPorts>> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Partial<ClusterPorts>;
  } catch {
    return {};
  }
}

async function choosePorts(
  ip: string,
  saved: Partial<ClusterPorts>,
  frontend: number | undefined,
  ownPostgres: boolean,
  auth = false,
  separate = false,
): Promise<ClusterPorts> {
  const taken = new Set<number>();
  const pick = async (keep: number | undefined): Promise<number> => {
    let p = keep && !taken.has(keep) ? keep : await freePort(ip === '0.0.0.0' ? '127.0.0.1' : ip);
    while (taken.has(p)) p = await freePort();
    taken.add(p);
    return p;
  };
  // Membership ports are stored in a smallint column (cluster_membership.rpc_port): below 32768,
  // where the kernel hands out no ephemeral ports.
  const pickLow = async (keep: number | undefined): Promise<number> => {
    if (keep && keep < 32768 && !taken.has(keep)) {
      taken.add(keep);
      return keep;
    }
    const host = ip === '0.0.0.0' ? '127.0.0.1' : ip;
    for (let i = 0; i < 200; i++) {
      const p = 20000 + Math.floor(Math.random() * 12000);
      if (taken.has(p)) continue;
      try {
        await assertPortFree(host, p, 'membership');
      } catch {
        continue;
      }
      taken.add(p);
      return p;
    }
    throw new Error(`no free port between 20000 and 32000 on ${host} for the cluster's membership`);
  };
  const fe = frontend === 0 ? await pick(saved.frontend) : await pick(frontend ?? 7233);
  return {
    frontend: fe,
    frontendHttp: await pick(saved.frontendHttp),
    frontendMembership: await pickLow(saved.frontendMembership),
    history: await pick(saved.history),
    historyMembership: await pickLow(saved.historyMembership),
    matching: await pick(saved.matching),
    matchingMembership: await pickLow(saved.matchingMembership),
    worker: await pick(saved.worker),
    workerMembership: await pickLow(saved.workerMembership),
    metrics: await pick(saved.metrics),
    ...(ownPostgres ? { postgres: await pick(saved.postgres) } : {}),
    ...(auth ? { internalFrontend: await pick(saved.internalFrontend), internalFrontendMembership: await pickLow(saved.internalFrontendMembership) } : {}),
    ...(separate
      ? { historyMetrics: await pick(saved.historyMetrics), matchingMetrics: await pick(saved.matchingMetrics), workerMetrics: await pick(saved.workerMetrics) }
      : {}),
  };
}

function redactUrl(t: PostgresTarget): string {
  return `postgres://${encodeURIComponent(t.user)}${t.password ? ':***' : ''}@${hostPort(t.host, t.port)}`;
}

async function schemaVersion(t: PostgresTarget, database: string): Promise<string | undefined> {
  const client = new pg.Client({ host: t.host, port: t.port, user: t.user, password: t.password || undefined, database, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch {
    return undefined; // no such database yet
  }
  try {
    const r = await client.query<{ curr_version: string }>('SELECT curr_version FROM schema_version LIMIT 1');
    return r.rows[0]?.curr_version;
  } catch {
    return undefined; // no schema yet
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Creates both databases if missing, sets up the base schema if there is none and applies the
 * newer versions under `schemaDir`: every step leaves what is already there alone, so a second
 * run changes nothing. Returns each database's version before and after.
 */
export async function setupClusterSchema(tools: ServerTools, t: PostgresTarget, logger: Logger = silentLogger): Promise<SchemaReport[]> {
  const report: SchemaReport[] = [];
  for (const db of DATABASES) {
    const before = await schemaVersion(t, db.name);
    const sql = (...args: string[]) =>
      runCommand([tools.sqlTool, '--plugin', 'postgres12', '--ep', t.host, '-p', String(t.port), '-u', t.user, '--db', db.name, ...args], {
        // temporal-sql-tool reads the password from SQL_PASSWORD: it stays off the command line.
        env: t.password ? { SQL_PASSWORD: t.password } : {},
        secrets: t.password ? [t.password] : [],
        timeoutMs: 120_000,
        logger,
      });
    if (before === undefined) {
      await sql('create-database').catch((err: Error) => {
        if (!/already exists/.test(err.message)) throw err;
      });
      await sql('setup-schema', '-v', '0.0');
    }
    await sql('update-schema', '-d', path.join(tools.schemaDir, db.schema, 'versioned'));
    const after = await schemaVersion(t, db.name);
    if (!after) throw new Error(`database ${db.name} has no schema version after update-schema`);
    report.push({ database: db.name, before, after });
  }
  return report;
}

/** Our own PostgreSQL in `<dataDir>/postgres`: initdb the first time, started on its saved port. */
async function startOwnPostgres(dataDir: string, port: number, ephemeral: boolean, logger: Logger): Promise<LocalPostgres & { port: number; logFile: string }> {
  const pgHome = path.join(dataDir, 'postgres');
  const local = { binDir: postgresServerBinDir(), dataDir: path.join(pgHome, 'data'), port, logFile: path.join(pgHome, 'postgres.log') };
  await postgresOwnedDir(pgHome, path.dirname(dataDir));
  const fresh = !existsSync(path.join(local.dataDir, 'PG_VERSION'));
  if (fresh) {
    await initPostgres({ ...local, noSync: ephemeral });
    const settings = [
      "listen_addresses = '127.0.0.1'",
      // TCP only: a socket path under a deep data dir can exceed the 107-byte limit.
      "unix_socket_directories = ''",
      // The server's four services keep ~50 connections open; the sql tool and workers need a few more.
      'max_connections = 200',
      ...(ephemeral ? ['fsync = off', 'synchronous_commit = off', 'full_page_writes = off'] : []),
    ];
    await appendFile(path.join(local.dataDir, 'postgresql.conf'), `\n# runbook temporal cluster\n${settings.join('\n')}\n`);
  }
  if (await postgresRunning(local)) {
    logger.info({ dataDir: local.dataDir }, 'PostgreSQL of the cluster is already running');
    return local;
  }
  await assertPortFree('127.0.0.1', port, 'PostgreSQL', 'another server on it? stop it, or delete cluster.json in the data dir to choose another port');
  await startPostgresServer({ ...local, options: `-p ${port}` });
  return local;
}

/**
 * Starts a Temporal cluster on PostgreSQL: tools found or built, PostgreSQL prepared (ours or
 * `postgresUrl`), schema set up or upgraded, server started with the project's dynamic config,
 * namespace and search attributes created. Stop it with stop(); nothing else is left running.
 */
export async function startTemporalCluster(opts: ClusterOptions): Promise<TemporalCluster> {
  const logger = opts.logger ?? silentLogger;
  const progress = opts.onProgress ?? ((line: string) => logger.info(line));
  const ip = opts.ip ?? '127.0.0.1';
  const namespace = opts.namespace ?? 'default';
  const dataDir = path.resolve(opts.dataDir);
  await mkdir(dataDir, { recursive: true });

  const tools = await findTemporalServerTools({ install: opts.install ?? true, logger, onProgress: progress });
  if (!tools) throw new Error(`temporal-server ${TEMPORAL_SERVER_VERSION} is not in ${temporalServerCacheDir()}: run \`runbook temporal cluster\` with Go installed to build it`);

  const portsFile = path.join(dataDir, 'cluster.json');
  const separate = opts.separateServices === true;
  if (separate && opts.jwksFile) throw new Error('separate service processes with JWT authorization (an internal frontend) are not supported: leave one of them out');
  const ports = await choosePorts(ip, await loadPorts(portsFile), opts.port, !opts.postgresUrl, Boolean(opts.jwksFile), separate);
  await writeFile(portsFile, `${JSON.stringify(ports, null, 2)}\n`);

  let localPostgres: (LocalPostgres & { port: number; logFile: string }) | undefined;
  let target: PostgresTarget;
  if (opts.postgresUrl) {
    target = parsePostgresUrl(opts.postgresUrl);
  } else {
    progress(`starting PostgreSQL (${path.join(dataDir, 'postgres', 'data')}) on 127.0.0.1:${ports.postgres}`);
    localPostgres = await startOwnPostgres(dataDir, ports.postgres!, opts.ephemeral ?? false, logger);
    target = { host: '127.0.0.1', port: ports.postgres!, user: 'postgres', password: '' };
  }
  const stopPostgres = async () => {
    if (localPostgres) await stopPostgresServer(localPostgres).catch((err: Error) => logger.warn({ err: err.message }, 'stopping PostgreSQL failed'));
  };

  type Exit = { code?: number; signal?: string; failure?: string };
  /** One temporal-server process: 'server' (all services) or one service. */
  interface ServerProcess {
    child: ResultPromise;
    exit?: Exit;
    exited: Promise<void>;
  }
  const procs = new Map<'server' | ClusterService, ServerProcess>();
  const running = (key: 'server' | ClusterService) => {
    const p = procs.get(key);
    return p && !p.exit ? p : undefined;
  };
  const serverLogFile = opts.logFile ? path.resolve(opts.logFile) : path.join(dataDir, 'temporal-server.log');
  await mkdir(path.dirname(serverLogFile), { recursive: true });
  const output = new OutputTail(200, createWriteStream(serverLogFile, { flags: 'a' }));
  const address = hostPort(ip, ports.frontend);
  // With authorization the cluster's own calls (readiness, namespace setup) go to the internal
  // frontend, plaintext on loopback: the public one would want a token this process cannot mint.
  const internalAddress = opts.jwksFile ? hostPort('127.0.0.1', ports.internalFrontend!) : undefined;
  let jwks: JwksServer | undefined;
  // temporal-server 1.29 reads `<root>/<config dir>/<env>.yaml`: --root dataDir --config config --env runbook
  // (separate services: --env runbook-<service>, which differ in the metrics port only).
  const configFile = path.join(dataDir, 'config', 'runbook.yaml');

  const spawnProcess = (key: 'server' | ClusterService): ServerProcess => {
    // internal-frontend is not among the services `start` runs by default: with auth all five are named.
    const startArgs =
      key !== 'server'
        ? ['--env', `runbook-${key}`, '--allow-no-auth', 'start', '--service', key]
        : internalAddress
          ? ['--env', 'runbook', 'start', ...['frontend', 'internal-frontend', 'history', 'matching', 'worker'].flatMap((s) => ['--service', s])]
          : ['--env', 'runbook', '--allow-no-auth', 'start'];
    const child = execa(tools.server, ['--root', dataDir, '--config', 'config', ...startArgs], {
      // The server reads no secrets from the environment here; TEMPORAL_* client settings do not concern it.
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_'))),
      extendEnv: false,
      cwd: dataDir,
      stdin: 'ignore',
      buffer: false,
      reject: false,
      cleanup: true,
      forceKillAfterDelay: 15_000,
    });
    child.stdout?.on('data', (c: Buffer) => output.push(c));
    child.stderr?.on('data', (c: Buffer) => output.push(c));
    const proc: ServerProcess = { child, exited: Promise.resolve() };
    proc.exited = child.then((res) => {
      proc.exit = { code: res.exitCode, signal: res.signal, failure: res.failed && res.exitCode === undefined ? res.shortMessage : undefined };
    });
    procs.set(key, proc);
    return proc;
  };

  const frontendReady = async (spawned: ServerProcess[]) => {
    try {
      await waitUntilReady({
        address: internalAddress ?? address,
        namespace: 'temporal-system',
        timeoutMs: opts.readyTimeoutMs ?? 120_000,
        exited: () => spawned.find((p) => p.exit)?.exit,
        tls: internalAddress ? undefined : await clientTls(opts.tls),
      });
    } catch (err) {
      for (const p of spawned) if (!p.exit) p.child.kill('SIGTERM');
      await Promise.all(spawned.map((p) => p.exited));
      throw new Error(`temporal-server at ${address} ${(err as Error).message}. Server output (${serverLogFile}):\n${briefOutput(output.text(8))}`, { cause: err });
    }
  };

  const assertFrontendPortsFree = async () => {
    for (const [what, port] of [
      ['Temporal frontend', ports.frontend],
      ['Temporal frontend HTTP', ports.frontendHttp],
    ] as const) {
      await assertPortFree(ip === '0.0.0.0' ? '0.0.0.0' : ip, port, what, 'another Temporal server? stop it or choose another port');
    }
  };

  const spawnServer = async (): Promise<number> => {
    await assertFrontendPortsFree();
    const started = Date.now();
    if (!separate) {
      await frontendReady([spawnProcess('server')]);
    } else {
      // One after the other, each listening before the next starts: started at once, the worker
      // service's system workflows and matching's caches give up when history has no hosts yet.
      try {
        for (const service of CLUSTER_SERVICES) await startService(service);
      } catch (err) {
        await killAll('SIGTERM');
        throw err;
      }
    }
    return Date.now() - started;
  };

  // The worker service has no gRPC server of its own; every service listens on its membership port once it runs.
  const servicePort: Record<ClusterService, number> = { frontend: ports.frontend, history: ports.historyMembership, matching: ports.matchingMembership, worker: ports.workerMembership };
  const startService = async (service: ClusterService): Promise<number> => {
    if (!separate) throw new Error('startService: the cluster runs its services in one process (separateServices is off): use startServer');
    if (running(service)) throw new Error(`startService: ${service} is running (pid ${running(service)!.child.pid})`);
    if (service === 'frontend') await assertFrontendPortsFree();
    const started = Date.now();
    const proc = spawnProcess(service);
    if (service === 'frontend') {
      await frontendReady([proc]);
    } else {
      const deadline = started + (opts.readyTimeoutMs ?? 120_000);
      const host = ip === '0.0.0.0' ? '127.0.0.1' : ip;
      for (;;) {
        if (proc.exit) throw new Error(`temporal-server ${service} exited (code ${proc.exit.code ?? '-'}, signal ${proc.exit.signal ?? '-'}) before it listened. Server output (${serverLogFile}):\n${briefOutput(output.text(8))}`);
        if (await portAccepts(host, servicePort[service])) break;
        if (Date.now() > deadline) {
          proc.child.kill('SIGTERM');
          await proc.exited;
          throw new Error(`temporal-server ${service} did not listen on ${hostPort(host, servicePort[service])} within ${opts.readyTimeoutMs ?? 120_000} ms`);
        }
        await sleep(100);
      }
    }
    return Date.now() - started;
  };

  const killAll = async (signal: NodeJS.Signals) => {
    const all = [...procs.values()];
    for (const p of all) if (!p.exit) p.child.kill(signal);
    await Promise.all(all.map((p) => p.exited));
  };

  try {
    const schema = await setupClusterSchema(tools, target, logger);
    for (const s of schema) {
      progress(
        s.before === s.after
          ? `schema of ${s.database}: version ${s.after}, up to date`
          : `schema of ${s.database}: ${s.before === undefined ? 'created at' : `upgraded from ${s.before} to`} version ${s.after}`,
      );
    }
    const composeFile = composeDynamicConfigFile();
    const dynamicConfigFile = composeFile ?? path.join(dataDir, 'config', 'dynamicconfig.yaml');
    await mkdir(path.dirname(configFile), { recursive: true });
    if (!composeFile) await writeFile(dynamicConfigFile, dynamicConfigYaml());
    if (opts.jwksFile) {
      jwks = await serveJwks(path.resolve(opts.jwksFile));
      progress(`JWT authorization: the server fetches its keys from ${jwks.url} (${path.resolve(opts.jwksFile)})`);
    }
    const config = clusterServerConfig({
      ip,
      ports,
      postgres: target,
      dynamicConfigFile,
      logLevel: opts.logLevel ?? 'warn',
      tls: opts.tls,
      ...(jwks ? { auth: { jwksUrl: jwks.url } } : {}),
    });
    const header = '# Written by `runbook temporal cluster` on every start; edits are overwritten.\n';
    await writeFile(configFile, `${header}${stringify(config)}`, { mode: 0o600 });
    if (separate) {
      const metricsPort: Record<ClusterService, number> = { frontend: ports.metrics, history: ports.historyMetrics!, matching: ports.matchingMetrics!, worker: ports.workerMetrics! };
      for (const service of CLUSTER_SERVICES) {
        await writeFile(path.join(dataDir, 'config', `runbook-${service}.yaml`), `${header}${stringify(withMetricsPort(config, metricsPort[service]))}`, { mode: 0o600 });
      }
    }

    progress(
      `starting temporal-server ${TEMPORAL_SERVER_VERSION}${separate ? ` as four processes (${CLUSTER_SERVICES.join(', ')}; config/runbook-<service>.yaml)` : ''} (config ${configFile}, dynamic config ${dynamicConfigFile}, log ${serverLogFile})`,
    );
    const started = Date.now();
    await spawnServer();
    await ensureNamespace(internalAddress ?? address, namespace, internalAddress ? undefined : opts.tls, opts.readyTimeoutMs ?? 120_000);
    const readyMs = Date.now() - started;

    const killServer = (signal: NodeJS.Signals = 'SIGTERM') => killAll(signal);
    let stopping: Promise<void> | undefined;
    return {
      address,
      namespace,
      metricsUrl: `http://${hostPort(ip === '0.0.0.0' ? '127.0.0.1' : ip, ports.metrics)}/metrics`,
      pid: () => running(separate ? 'frontend' : 'server')?.child.pid,
      pids: () => Object.fromEntries(CLUSTER_SERVICES.flatMap((s) => (running(s) ? [[s, running(s)!.child.pid]] : []))) as Partial<Record<ClusterService, number>>,
      schema,
      postgresUrl: redactUrl(target),
      localPostgres,
      readyMs,
      serverLogFile,
      ...(internalAddress ? { internalAddress, jwksUrl: jwks?.url } : {}),
      killServer,
      startServer: spawnServer,
      async killService(service: ClusterService, signal: NodeJS.Signals = 'SIGTERM') {
        if (!separate) throw new Error('killService: the cluster runs its services in one process (separateServices is off): use killServer');
        const p = running(service);
        if (p) p.child.kill(signal);
        await procs.get(service)?.exited;
      },
      startService,
      async restartPostgres(downMs = 0) {
        if (!localPostgres) throw new Error('restartPostgres: the cluster uses an external PostgreSQL (--postgres-url)');
        await stopPostgresServer(localPostgres, 'fast');
        if (downMs > 0) await sleep(downMs);
        await startPostgresServer({ ...localPostgres, options: `-p ${localPostgres.port}` });
      },
      stop: () =>
        (stopping ??= (async () => {
          await killServer('SIGTERM');
          await output.close();
          await jwks?.close();
          await stopPostgres();
        })()),
    };
  } catch (err) {
    await killAll('SIGTERM');
    await output.close();
    await jwks?.close();
    await stopPostgres();
    throw err;
  }
}

/** The server config of one service process: the same, with its own metrics port. */
function withMetricsPort(config: Record<string, unknown>, port: number): Record<string, unknown> {
  const global = config.global as { metrics: { prometheus: { listenAddress: string } } } & Record<string, unknown>;
  const host = global.metrics.prometheus.listenAddress.replace(/:\d+$/, '');
  return { ...config, global: { ...global, metrics: { prometheus: { ...global.metrics.prometheus, listenAddress: `${host}:${port}` } } } };
}

/** Whether something accepts TCP connections on host:port. */
function portAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The server logs JSON lines with stack traces: keep an error message readable. */
function briefOutput(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      try {
        const j = JSON.parse(line) as { level?: string; msg?: string; error?: string };
        return `${j.level ?? ''} ${j.msg ?? ''}${j.error ? `: ${j.error}` : ''}`;
      } catch {
        return line.length > 400 ? `${line.slice(0, 400)}...` : line;
      }
    })
    .join('\n');
}

async function clientTls(tls: ClusterOptions['tls']) {
  if (!tls) return undefined;
  // The server's own certificate and key double as a client pair: both are signed by the cluster's CA.
  const [ca, crt, key] = await Promise.all([readFile(tls.clientCaFile), readFile(tls.certFile), readFile(tls.keyFile)]);
  return { serverRootCACertificate: ca, clientCertPair: { crt, key }, serverNameOverride: 'localhost' };
}

/**
 * Registers `namespace` if missing and the runbooks' search attributes in it. A namespace just
 * registered takes a few seconds to reach the frontend's cache: both steps retry until the deadline.
 */
async function ensureNamespace(address: string, namespace: string, tls: ClusterOptions['tls'], timeoutMs: number): Promise<void> {
  const connection = await Connection.connect({ address, tls: (await clientTls(tls)) ?? false });
  const deadline = Date.now() + timeoutMs;
  try {
    try {
      await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs(RETENTION_MS) });
    } catch (err) {
      if (!(isGrpcServiceError(err) && err.code === GrpcStatus.ALREADY_EXISTS)) throw err;
    }
    for (;;) {
      try {
        await connection.workflowService.describeNamespace({ namespace });
        await ensureSearchAttributes(connection, namespace);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`namespace ${namespace} was not usable after ${timeoutMs} ms: ${(err as Error).message}`, { cause: err });
        await sleep(500);
      }
    }
  } finally {
    await connection.close();
  }
}

/** For `rm -rf`-style cleanup of a throwaway cluster's directory. */
export async function removeClusterDir(dataDir: string): Promise<void> {
  await rm(dataDir, { recursive: true, force: true });
}
