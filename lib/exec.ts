import { readdir, readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import type { Logger } from './logger.js';
import { redactSecrets } from './redact.js';

/**
 * The one way this project runs an external program: never through a shell, with an
 * allow-listed environment, bounded output, a deadline that takes the whole process
 * tree down, and errors that name the command without leaking secrets.
 */

export interface ExecOptions {
  /** Must exist; checked before spawning so the error says so (spawn would report ENOENT). */
  cwd?: string;
  /** Added on top of the allow-listed variables. */
  env?: Record<string, string>;
  /** Where the allow-listed variables are taken from; default process.env. */
  baseEnv?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Per stream, default 10 MiB; more output fails the command. */
  maxBuffer?: number;
  /** Literal values removed from the command line, error messages and logs. */
  secrets?: string[];
  signal?: AbortSignal;
  input?: string;
  logger?: Logger;
  /**
   * Takes the command's stdout as a stream instead of buffering it (result.stdout is then ''); called
   * once the process is spawned. The consumer must read it (or abort `signal`): a full pipe blocks the command.
   */
  onStdout?: (stdout: Readable) => void;
}

export interface ExecResult {
  /** argv joined and quoted for display, secrets redacted. */
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Variables a child may see from the parent; anything else (tokens, passwords) must be passed explicitly. */
export const ENV_ALLOW_LIST: readonly string[] = [
  'PATH',
  'HOME',
  'LANG',
  'LC_ALL',
  'TZ',
  'TMPDIR',
  'USER',
  'KUBECONFIG',
  'DOCKER_HOST',
  'DOCKER_CONFIG',
  'DOCKER_CONTEXT',
  // Not a secret: where `runbook dev` keeps the demo environment, for the demo's service commands.
  'RUNBOOK_STATE_DIR',
];

const DEFAULT_MAX_BUFFER = 10 * 1024 * 1024;
const STDERR_TAIL_LINES = 20;
/** How long a timed-out or cancelled process tree gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 2000;

export class CommandError extends Error {
  readonly command: string;
  /** Undefined when the program did not start or was killed by a signal. */
  readonly exitCode: number | undefined;
  /** The last lines of stderr (of stdout when stderr was empty), redacted. */
  readonly stderrTail: string;
  readonly timedOut: boolean;
  readonly notFound: boolean;
  readonly cancelled: boolean;

  constructor(
    message: string,
    fields: { command: string; exitCode?: number; stderrTail?: string; timedOut?: boolean; notFound?: boolean; cancelled?: boolean },
  ) {
    super(message);
    this.name = 'CommandError';
    this.command = fields.command;
    this.exitCode = fields.exitCode;
    this.stderrTail = fields.stderrTail ?? '';
    this.timedOut = fields.timedOut ?? false;
    this.notFound = fields.notFound ?? false;
    this.cancelled = fields.cancelled ?? false;
  }
}

/** Quotes an argument the way a POSIX shell user would type it, for display only. */
function quoteArg(arg: string): string {
  if (arg === '') return "''";
  if (/^[A-Za-z0-9_\-.,:/@=+%^]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function formatCommand(argv: readonly string[], secrets: readonly string[] = []): string {
  return redactSecrets(argv.map(quoteArg).join(' '), secrets);
}

export function tailLines(text: string, lines: number): string {
  const trimmed = text.replace(/\s+$/, '');
  if (trimmed === '') return '';
  return trimmed.split('\n').slice(-lines).join('\n');
}

function childEnv(base: NodeJS.ProcessEnv, extra: Record<string, string> | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ENV_ALLOW_LIST) {
    const value = base[name];
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...extra };
}

/** Process groups of commands still running, killed if this process exits under them. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function trackGroup(pgid: number): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const g of liveGroups) killGroup(g, 'SIGKILL');
    });
  }
  liveGroups.add(pgid);
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

/**
 * Whether any process of the group is still running. kill(0) alone is not enough:
 * orphans killed under a PID 1 that does not reap them linger as zombies.
 */
async function groupAlive(pgid: number): Promise<boolean> {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return true;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const statLine = await readFile(`/proc/${entry}/stat`, 'utf8');
      // Fields after the parenthesised command name: state ppid pgrp ...
      const fields = statLine.slice(statLine.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true;
    } catch {
      // exited while we looked
    }
  }
  return false;
}

async function terminateGroup(pgid: number): Promise<void> {
  killGroup(pgid, 'SIGTERM');
  const deadline = Date.now() + KILL_GRACE_MS;
  while (Date.now() < deadline) {
    if (!(await groupAlive(pgid))) return;
    await sleep(50);
  }
  killGroup(pgid, 'SIGKILL');
}

export async function runCommand(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  const secrets = opts.secrets ?? [];
  const command = formatCommand(argv, secrets);
  const redact = (text: string) => redactSecrets(text, secrets);
  const log = opts.logger?.child({ command });
  if (!file) throw new CommandError('empty command: expected [program, arg, ...]', { command });

  if (opts.cwd !== undefined) {
    const dir = await stat(opts.cwd).catch(() => undefined);
    if (!dir?.isDirectory()) {
      throw new CommandError(`working directory does not exist: ${opts.cwd} (for ${command})`, { command });
    }
  }
  if (opts.signal?.aborted) {
    throw new CommandError(`command cancelled before it started: ${command}`, { command, cancelled: true });
  }

  log?.debug('command starting');
  const started = performance.now();
  // A process group of its own, so a timeout or cancellation also stops what the command spawned.
  const subprocess = execa(file, args, {
    cwd: opts.cwd,
    env: childEnv(opts.baseEnv ?? process.env, opts.env),
    extendEnv: false,
    shell: false,
    detached: true,
    cleanup: false,
    reject: false,
    maxBuffer: opts.maxBuffer ?? DEFAULT_MAX_BUFFER,
    ...(opts.onStdout ? { buffer: { stdout: false } } : {}),
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
  });
  const pgid = subprocess.pid;
  if (opts.onStdout && subprocess.stdout) opts.onStdout(subprocess.stdout);

  let stopReason: 'timeout' | 'cancelled' | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (reason: 'timeout' | 'cancelled') => {
    if (stopReason || pgid === undefined) return;
    stopReason = reason;
    stopping = terminateGroup(pgid);
  };
  const timer = opts.timeoutMs !== undefined ? setTimeout(() => stop('timeout'), opts.timeoutMs) : undefined;
  const onAbort = () => stop('cancelled');
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (pgid !== undefined) trackGroup(pgid);

  let result: Awaited<typeof subprocess>;
  try {
    result = await subprocess;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  if (stopReason || result.isMaxBuffer) {
    await (stopping ?? (pgid !== undefined ? terminateGroup(pgid) : undefined));
  }
  if (pgid !== undefined) liveGroups.delete(pgid);

  const durationMs = Math.round(performance.now() - started);
  const stdout = String(result.stdout ?? '');
  const stderr = String(result.stderr ?? '');
  const stderrTail = redact(tailLines(stderr.trim() ? stderr : stdout, STDERR_TAIL_LINES));
  const withTail = (head: string) => (stderrTail ? `${head}\n${stderrTail}` : head);

  let error: CommandError | undefined;
  if (stopReason === 'timeout') {
    error = new CommandError(withTail(`command timed out after ${opts.timeoutMs}ms and was killed: ${command}`), {
      command,
      stderrTail,
      timedOut: true,
    });
  } else if (stopReason === 'cancelled') {
    error = new CommandError(`command cancelled and killed: ${command}`, { command, stderrTail, cancelled: true });
  } else if (result.code === 'ENOENT' && result.exitCode === undefined) {
    error = new CommandError(`command not found: ${redact(file)} (is it installed and on PATH?)`, { command, notFound: true });
  } else if (result.code === 'EACCES' && result.exitCode === undefined) {
    error = new CommandError(`command not executable: ${redact(file)} (permission denied)`, { command });
  } else if (result.isMaxBuffer) {
    error = new CommandError(`command output exceeded maxBuffer (${opts.maxBuffer ?? DEFAULT_MAX_BUFFER} per stream): ${command}`, {
      command,
      exitCode: result.exitCode,
      stderrTail,
    });
  } else if (result.exitCode === undefined || result.exitCode !== 0) {
    const how = result.exitCode !== undefined ? `exit code ${result.exitCode}` : `killed by ${result.signal ?? 'a signal'}`;
    error = new CommandError(withTail(`command failed (${how}): ${command}`), { command, exitCode: result.exitCode, stderrTail });
  }

  if (error) {
    log?.debug({ durationMs, exitCode: error.exitCode, timedOut: error.timedOut, stderrTail }, 'command failed');
    throw error;
  }
  log?.debug({ durationMs, exitCode: 0 }, 'command finished');
  return { command, exitCode: 0, stdout, stderr, durationMs };
}
