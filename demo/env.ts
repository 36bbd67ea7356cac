import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { runCommand, CommandError } from '../lib/exec.js';
import { initPostgres, pidAlive, postgresOwnedDir, postgresRunning, postgresServerBinDir, startPostgresServer, stopPostgresServer } from '../lib/local/index.js';
import { DEMO_PORTS } from './ports.js';

/**
 * The demo environment: real PostgreSQL, Redis, NATS (JetStream) and the demo API
 * as processes under <stateDir>/demo/<service>. runbooks.example.yaml drives them
 * through the `command` driver, exactly as a user's own start/stop scripts would be.
 * Every action is idempotent: starting a running service or stopping a stopped one succeeds.
 */

export const DEMO_SERVICES = ['postgres', 'redis', 'nats', 'api'] as const;
export type DemoService = (typeof DEMO_SERVICES)[number];


const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
// The demo API runs from the same tree as this module: compiled (dist/demo/service.js) with plain
// node, or from the sources through tsx (tests, which run the sources).
const SELF = fileURLToPath(import.meta.url);
const API_SERVICE = [...(SELF.endsWith('.ts') ? ['--import', 'tsx'] : []), path.join(path.dirname(SELF), `service${path.extname(SELF)}`)];

export interface DemoOptions {
  stateDir: string;
  port?: number;
  port2?: number;
}

export interface DemoActionResult {
  exitCode: number;
  output: string;
}

async function readPid(file: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(file, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 && pidAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function stopPid(file: string, name: string): Promise<DemoActionResult> {
  const pid = await readPid(file);
  if (!pid) return { exitCode: 0, output: `${name} is not running` };
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && pidAlive(pid); i++) await sleep(100);
  if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
  await rm(file, { force: true });
  return { exitCode: 0, output: `${name} stopped (pid ${pid})` };
}

async function tail(file: string, lines = 50): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Starts a long-running process detached from this short-lived CLI call, with its pid in a file. */
async function spawnDetached(argv: string[], opts: { pidFile: string; logFile: string; cwd?: string }): Promise<number> {
  const log = openSync(opts.logFile, 'a');
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log], cwd: opts.cwd });
  child.unref();
  if (!child.pid) throw new Error(`could not start ${argv[0]}`);
  await writeFile(opts.pidFile, `${child.pid}\n`);
  await sleep(200);
  if (!pidAlive(child.pid)) throw new Error(`${path.basename(argv[0]!)} exited at once:\n${await tail(opts.logFile, 20)}`);
  return child.pid;
}

async function postgres(action: string, dir: string, port: number, stateDir: string): Promise<DemoActionResult> {
  const pg = { binDir: postgresServerBinDir(), dataDir: path.join(dir, 'data') };
  const logFile = path.join(dir, 'postgres.log');
  switch (action) {
    case 'start': {
      if (await postgresRunning(pg)) return { exitCode: 0, output: 'postgres is already running' };
      await postgresOwnedDir(dir, stateDir);
      await initPostgres(pg);
      await startPostgresServer({ ...pg, logFile, options: `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1` });
      return { exitCode: 0, output: `postgres started on 127.0.0.1:${port}` };
    }
    case 'stop':
      if (!(await postgresRunning(pg))) return { exitCode: 0, output: 'postgres is not running' };
      await stopPostgresServer(pg);
      return { exitCode: 0, output: 'postgres stopped' };
    case 'status':
      return (await postgresRunning(pg)) ? { exitCode: 0, output: 'postgres is running' } : { exitCode: 3, output: 'postgres is not running' };
    case 'logs':
      return { exitCode: 0, output: await tail(logFile) };
    default:
      throw new Error(`unknown action ${action}`);
  }
}

async function redis(action: string, dir: string, port: number): Promise<DemoActionResult> {
  const pidFile = path.join(dir, 'redis.pid');
  const logFile = path.join(dir, 'redis.log');
  switch (action) {
    case 'start':
      if (await readPid(pidFile)) return { exitCode: 0, output: 'redis is already running' };
      await mkdir(dir, { recursive: true });
      await runCommand([
        'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--daemonize', 'yes', '--pidfile', pidFile,
        '--logfile', logFile, '--dir', dir, '--save', '', '--appendonly', 'no',
      ]);
      for (let i = 0; i < 50 && !(await readPid(pidFile)); i++) await sleep(100);
      return { exitCode: 0, output: `redis started on 127.0.0.1:${port}` };
    case 'stop':
      return stopPid(pidFile, 'redis');
    case 'status':
      return (await readPid(pidFile)) ? { exitCode: 0, output: 'redis is running' } : { exitCode: 3, output: 'redis is not running' };
    case 'logs':
      return { exitCode: 0, output: await tail(logFile) };
    default:
      throw new Error(`unknown action ${action}`);
  }
}

async function nats(action: string, dir: string, port: number, monitorPort: number): Promise<DemoActionResult> {
  const pidFile = path.join(dir, 'nats.pid');
  const logFile = path.join(dir, 'nats.log');
  switch (action) {
    case 'start':
      if (await readPid(pidFile)) return { exitCode: 0, output: 'nats is already running' };
      await mkdir(path.join(dir, 'jetstream'), { recursive: true });
      await spawnDetached(
        ['nats-server', '-a', '127.0.0.1', '-p', String(port), '-m', String(monitorPort), '-js', '-sd', path.join(dir, 'jetstream')],
        { pidFile, logFile },
      );
      return { exitCode: 0, output: `nats started on 127.0.0.1:${port} (monitor ${monitorPort})` };
    case 'stop':
      return stopPid(pidFile, 'nats');
    case 'status':
      return (await readPid(pidFile)) ? { exitCode: 0, output: 'nats is running' } : { exitCode: 3, output: 'nats is not running' };
    case 'logs':
      return { exitCode: 0, output: await tail(logFile) };
    default:
      throw new Error(`unknown action ${action}`);
  }
}

async function api(action: string, dir: string, httpPort: number, grpcPort: number): Promise<DemoActionResult> {
  const pidFile = path.join(dir, 'api.pid');
  const logFile = path.join(dir, 'api.log');
  switch (action) {
    case 'start':
      if (await readPid(pidFile)) return { exitCode: 0, output: 'api is already running' };
      await mkdir(dir, { recursive: true });
      await spawnDetached(
        [process.execPath, ...API_SERVICE, '--http-port', String(httpPort), '--grpc-port', String(grpcPort)],
        { pidFile, logFile, cwd: PROJECT_ROOT },
      );
      return { exitCode: 0, output: `api started: http 127.0.0.1:${httpPort}, grpc 127.0.0.1:${grpcPort}` };
    case 'stop':
      return stopPid(pidFile, 'api');
    case 'status':
      return (await readPid(pidFile)) ? { exitCode: 0, output: 'api is running' } : { exitCode: 3, output: 'api is not running' };
    case 'logs':
      return { exitCode: 0, output: await tail(logFile) };
    default:
      throw new Error(`unknown action ${action}`);
  }
}

export async function demoServiceAction(action: string, service: string, opts: DemoOptions): Promise<DemoActionResult> {
  if (!(DEMO_SERVICES as readonly string[]).includes(service)) {
    return { exitCode: 2, output: `unknown demo service "${service}": expected one of ${DEMO_SERVICES.join(', ')}` };
  }
  if (!['start', 'stop', 'status', 'logs', 'clean'].includes(action)) {
    return { exitCode: 2, output: `unknown action "${action}": expected start, stop, status, logs or clean` };
  }
  const dir = path.resolve(opts.stateDir, 'demo', service);
  try {
    if (action === 'clean') {
      const status = await demoServiceAction('status', service, opts);
      if (status.exitCode === 0) return { exitCode: 1, output: `${service} is running: stop it before deleting its data` };
      await rm(dir, { recursive: true, force: true });
      return { exitCode: 0, output: `${service} data deleted (${dir})` };
    }
    switch (service as DemoService) {
      case 'postgres':
        return await postgres(action, dir, opts.port ?? DEMO_PORTS.postgres, path.resolve(opts.stateDir));
      case 'redis':
        return await redis(action, dir, opts.port ?? DEMO_PORTS.redis);
      case 'nats':
        return await nats(action, dir, opts.port ?? DEMO_PORTS.nats, opts.port2 ?? DEMO_PORTS.natsMonitor);
      case 'api':
        return await api(action, dir, opts.port ?? DEMO_PORTS.apiHttp, opts.port2 ?? DEMO_PORTS.apiGrpc);
    }
  } catch (err) {
    const message = err instanceof CommandError ? err.message : err instanceof Error ? err.message : String(err);
    return { exitCode: 1, output: `${service} ${action} failed: ${message}` };
  }
}
