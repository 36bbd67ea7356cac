import { readFile, stat, statfs } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { RunbookConfig } from '../../common/config-schema.js';
import type { PreflightCheck, PreflightResult } from '../../common/types.js';
import { CommandError, runCommand } from '../../lib/exec.js';

/** The Fulcrum preflight script, as checks: ports free, disk, memory, config files, Docker and Compose. */

const GB = 1e9;
const CONNECT_TIMEOUT_MS = 1000;
const DOCKER_TIMEOUT_MS = 15_000;

export interface PreflightOptions {
  configDir: string;
  /** Ports of services already healthy: in use is expected there. */
  tolerantPorts?: number[];
  needsDocker?: boolean;
  /** The compose services' CLIs (`docker compose`, `docker-compose`); each must answer `version`. Default `docker compose`. */
  composeCommands?: string[][];
  /** Environment the docker CLI runs with (PATH, DOCKER_HOST, ...); default process.env. */
  env?: NodeJS.ProcessEnv;
}

export async function runPreflight(cfg: RunbookConfig['preflight'], opts: PreflightOptions): Promise<PreflightResult> {
  const tolerant = new Set(opts.tolerantPorts ?? []);
  const checks = await Promise.all([
    ...[...new Set(cfg.ports)].map((p) => checkPort(p, tolerant.has(p))),
    checkDisk(path.resolve(opts.configDir, cfg.diskPath), cfg.minDiskGb),
    checkMemory(cfg.minMemoryGb),
    ...cfg.files.map((f) => checkFile(f, opts.configDir)),
    ...(opts.needsDocker
      ? [checkDocker(opts.env ?? process.env), ...uniqueCommands(opts.composeCommands ?? [['docker', 'compose']]).map((c) => checkCompose(c, opts.env ?? process.env))]
      : []),
  ]);
  return { ok: checks.every((c) => c.ok), checks };
}

const gb = (bytes: number) => (bytes / GB).toFixed(1);

async function checkPort(port: number, tolerant: boolean): Promise<PreflightCheck> {
  const name = `port ${port}`;
  const busy = (await acceptsConnection(port)) ? 'something accepts connections on 127.0.0.1' : await bindFailure(port);
  if (!busy) return { name, ok: true, detail: 'free' };
  if (tolerant) return { name, ok: true, detail: 'in use by an already healthy service' };
  return { name, ok: false, detail: `in use: ${busy}` };
}

function acceptsConnection(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Binding on every address catches a listener that does not accept on 127.0.0.1 (another interface, a full backlog). */
function bindFailure(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(`cannot bind it (${err.code ?? err.message})`));
    server.listen({ port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

async function checkDisk(dir: string, minGb: number): Promise<PreflightCheck> {
  try {
    const fs = await statfs(dir);
    const free = fs.bavail * fs.bsize;
    return { name: 'disk', ok: free >= minGb * GB, detail: `${gb(free)} GB free at ${dir}, need ${minGb} GB` };
  } catch (err) {
    return { name: 'disk', ok: false, detail: `cannot read free space at ${dir}: ${(err as Error).message}` };
  }
}

/** MemAvailable counts reclaimable cache, which os.freemem() does not on older kernels and Node releases. */
async function availableMemory(): Promise<{ bytes: number; source: string }> {
  try {
    const m = /^MemAvailable:\s+(\d+)\s+kB/m.exec(await readFile('/proc/meminfo', 'utf8'));
    if (m) return { bytes: Number(m[1]) * 1024, source: 'MemAvailable' };
  } catch {
    // not Linux
  }
  return { bytes: os.freemem(), source: 'free memory' };
}

async function checkMemory(minGb: number): Promise<PreflightCheck> {
  const { bytes, source } = await availableMemory();
  return { name: 'memory', ok: bytes >= minGb * GB, detail: `${gb(bytes)} GB available (${source}), need ${minGb} GB` };
}

async function checkFile(file: string, configDir: string): Promise<PreflightCheck> {
  const full = path.resolve(configDir, file);
  const found = await stat(full).then(
    () => true,
    () => false,
  );
  return { name: `file ${file}`, ok: found, detail: found ? `found ${full}` : `missing: ${full} (listed in preflight.files)` };
}

async function dockerCheck(name: string, argv: string[], env: NodeJS.ProcessEnv, okDetail: (out: string) => string): Promise<PreflightCheck> {
  try {
    const { stdout } = await runCommand(argv, { baseEnv: env, timeoutMs: DOCKER_TIMEOUT_MS });
    return { name, ok: true, detail: okDetail(stdout.trim()) };
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    if (err.notFound) return { name, ok: false, detail: `${path.basename(argv[0]!)} is not installed or not on PATH` };
    const why = err.timedOut ? `no answer within ${DOCKER_TIMEOUT_MS / 1000}s` : err.stderrTail.split('\n').filter(Boolean).at(-1) ?? err.message;
    return { name, ok: false, detail: `${argv.join(' ')} failed: ${why}` };
  }
}

function checkDocker(env: NodeJS.ProcessEnv): Promise<PreflightCheck> {
  return dockerCheck('docker daemon', ['docker', 'info', '--format', '{{.ServerVersion}}'], env, (v) => `Docker daemon ${v || 'running'}`);
}

function uniqueCommands(commands: string[][]): string[][] {
  return [...new Map(commands.map((c) => [JSON.stringify(c), c])).values()];
}

/** Named after the command (`docker compose`, `docker-compose`): v1 and v2 both answer `version --short`. */
function checkCompose(command: string[], env: NodeJS.ProcessEnv): Promise<PreflightCheck> {
  const name = command.map((a) => path.basename(a)).join(' ');
  return dockerCheck(name, [...command, 'version', '--short'], env, (v) => `Docker Compose ${v || 'available'}`);
}
