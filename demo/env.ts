import { spawn } from 'node:child_process';
import { existsSync, openSync, readdirSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { runCommand, CommandError } from '../lib/exec.js';
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

export interface DemoOptions {
  stateDir: string;
  port?: number;
  port2?: number;
}

export interface DemoActionResult {
  exitCode: number;
  output: string;
}

export function postgresBinDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.PG_BIN_DIR) return env.PG_BIN_DIR;
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(path.join(base, v, 'bin', 'postgres')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error('PostgreSQL server binaries not found: install the postgresql package or set PG_BIN_DIR');
  return path.join(base, versions[0]!, 'bin');
}

/** PostgreSQL refuses to run as root: run its tools as the postgres user then. */
function asPostgres(argv: string[]): string[] {
  return process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', ...argv] : argv;
}

/** The data dir belongs to the postgres user, and every directory above it up to the state dir must let it through. */
async function postgresOwnedDir(dir: string, stateDir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (process.getuid?.() === 0) {
    for (let d = path.dirname(dir); d.startsWith(stateDir) && d !== path.dirname(d); d = path.dirname(d)) {
      const mode = (await stat(d)).mode & 0o777;
      if ((mode & 0o001) === 0) await chmod(d, mode | 0o001);
    }
    const { stdout } = await runCommand(['id', '-u', 'postgres']);
    const { stdout: gid } = await runCommand(['id', '-g', 'postgres']);
    await chown(dir, Number(stdout.trim()), Number(gid.trim()));
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
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
  const bin = postgresBinDir();
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const ctl = (...args: string[]) => asPostgres([path.join(bin, 'pg_ctl'), '-D', data, ...args]);
  // Run from a directory the postgres user may enter (runuser keeps the caller's cwd).
  const pgOpts = { cwd: '/', timeoutMs: 90_000 };
  const running = async () => existsSync(data) && (await runCommand(ctl('status'), pgOpts).then(() => true, () => false));
  switch (action) {
    case 'start': {
      if (await running()) return { exitCode: 0, output: 'postgres is already running' };
      await postgresOwnedDir(dir, stateDir);
      if (!existsSync(path.join(data, 'PG_VERSION'))) {
        await runCommand(asPostgres([path.join(bin, 'initdb'), '-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8']), { ...pgOpts, timeoutMs: 120_000 });
      }
      await runCommand(
        ctl('-l', logFile, '-w', '-t', '60', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, 'start'),
        pgOpts,
      );
      return { exitCode: 0, output: `postgres started on 127.0.0.1:${port}` };
    }
    case 'stop':
      if (!(await running())) return { exitCode: 0, output: 'postgres is not running' };
      await runCommand(ctl('-m', 'fast', '-w', 'stop'), pgOpts);
      return { exitCode: 0, output: 'postgres stopped' };
    case 'status':
      return (await running()) ? { exitCode: 0, output: 'postgres is running' } : { exitCode: 3, output: 'postgres is not running' };
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
        [process.execPath, '--import', 'tsx', path.join(PROJECT_ROOT, 'demo', 'service.ts'), '--http-port', String(httpPort), '--grpc-port', String(grpcPort)],
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
