import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandError, runCommand } from '../../lib/exec.js';

const node = process.execPath;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'exec-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A killed orphan can linger as a zombie when PID 1 does not reap: that is gone too. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] !== 'Z';
  } catch {
    return false;
  }
}

async function failureOf(p: Promise<unknown>): Promise<CommandError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(CommandError);
    return err as CommandError;
  }
  throw new Error('expected the command to fail');
}

describe('runCommand', () => {
  it('returns stdout, stderr, exit code 0, duration and a quoted display command', async () => {
    const r = await runCommand([node, '-e', 'process.stdout.write("out\\n"); process.stderr.write("err")', 'two words']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('out');
    expect(r.stderr).toBe('err');
    expect(r.durationMs).toBeGreaterThan(0);
    expect(r.command).toBe(`${node} -e 'process.stdout.write("out\\n"); process.stderr.write("err")' 'two words'`);
  });

  it('passes input on stdin and runs in cwd', async () => {
    const r = await runCommand([node, '-e', 'process.stdin.pipe(process.stdout); process.stdin.on("end", () => console.log(process.cwd()))'], {
      input: 'hello ',
      cwd: dir,
    });
    expect(r.stdout).toBe(`hello ${dir}`);
  });

  it('a non-zero exit throws with the command, the exit code and the last 20 lines of stderr', async () => {
    const script = 'for (let i = 1; i <= 30; i++) console.error("line " + i); process.exit(3)';
    const err = await failureOf(runCommand([node, '-e', script]));
    expect(err.exitCode).toBe(3);
    expect(err.timedOut).toBe(false);
    expect(err.notFound).toBe(false);
    expect(err.command).toContain(node);
    expect(err.message).toContain('exit code 3');
    expect(err.message).toContain(node);
    const tail = err.stderrTail.split('\n');
    expect(tail).toHaveLength(20);
    expect(tail[0]).toBe('line 11');
    expect(tail[19]).toBe('line 30');
    expect(err.message).toContain('line 30');
    expect(err.message).not.toContain('line 10\n');
  });

  it('a missing program says so, with notFound', async () => {
    const err = await failureOf(runCommand(['no-such-program-xyz', '--version']));
    expect(err.notFound).toBe(true);
    expect(err.exitCode).toBeUndefined();
    expect(err.message).toBe('command not found: no-such-program-xyz (is it installed and on PATH?)');
  });

  it('a missing working directory is named', async () => {
    const err = await failureOf(runCommand([node, '-v'], { cwd: path.join(dir, 'nope') }));
    expect(err.message).toContain(`working directory does not exist: ${path.join(dir, 'nope')}`);
  });

  it('a timeout kills the command and what it spawned', async () => {
    const pids = path.join(dir, 'tree.pids');
    // The child starts a grandchild, records both pids, and both ignore nothing: a plain hang.
    const script = `
      const { spawn } = require('node:child_process');
      const gc = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
      require('node:fs').writeFileSync(${JSON.stringify(pids)}, process.pid + ' ' + gc.pid);
      console.error('working...');
      setInterval(() => {}, 1000);
    `;
    const started = Date.now();
    const err = await failureOf(runCommand([node, '-e', script], { timeoutMs: 1500 }));
    expect(Date.now() - started).toBeLessThan(6000);
    expect(err.timedOut).toBe(true);
    expect(err.message).toContain('timed out after 1500ms');
    expect(err.stderrTail).toBe('working...');
    const [child, grandchild] = (await readFile(pids, 'utf8')).split(' ').map(Number);
    expect(child).toBeGreaterThan(0);
    expect(grandchild).toBeGreaterThan(0);
    expect(running(child!)).toBe(false);
    expect(running(grandchild!)).toBe(false);
  });

  it('a child ignoring SIGTERM is killed after the grace period', async () => {
    const pidFile = path.join(dir, 'stubborn.pid');
    const script = `process.on('SIGTERM', () => {}); require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000)`;
    const err = await failureOf(runCommand([node, '-e', script], { timeoutMs: 500 }));
    expect(err.timedOut).toBe(true);
    expect(running(Number(await readFile(pidFile, 'utf8')))).toBe(false);
  });

  it('an abort signal kills the command', async () => {
    const controller = new AbortController();
    const pidFile = path.join(dir, 'aborted.pid');
    setTimeout(() => controller.abort(), 300);
    const err = await failureOf(
      runCommand([node, '-e', `require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000)`], {
        signal: controller.signal,
      }),
    );
    expect(err.cancelled).toBe(true);
    expect(running(Number(await readFile(pidFile, 'utf8')))).toBe(false);
  });

  it('the child sees only the allow-listed environment plus opts.env', async () => {
    process.env.RUNBOOK_TEST_PARENT_SECRET = 'parent-value';
    try {
      const r = await runCommand(
        [node, '-e', 'console.log(JSON.stringify({ parent: process.env.RUNBOOK_TEST_PARENT_SECRET ?? null, extra: process.env.EXTRA, path: Boolean(process.env.PATH) }))'],
        { env: { EXTRA: 'given' } },
      );
      expect(JSON.parse(r.stdout)).toEqual({ parent: null, extra: 'given', path: true });
      // baseEnv replaces process.env as the source of allow-listed variables.
      const r2 = await runCommand([node, '-e', 'console.log(process.env.TZ + " " + (process.env.RUNBOOK_X ?? "unset"))'], {
        baseEnv: { PATH: process.env.PATH, TZ: 'Europe/Paris', RUNBOOK_X: 'no' },
      });
      expect(r2.stdout).toBe('Europe/Paris unset');
    } finally {
      delete process.env.RUNBOOK_TEST_PARENT_SECRET;
    }
  });

  it('redacts secrets and URL passwords from the command and the error message', async () => {
    const secret = 's3cr3t-token-value';
    const err = await failureOf(
      runCommand([node, '-e', 'console.error("auth failed for " + process.argv[1] + " at postgres://app:hunter22@db/x"); process.exit(2)', secret], {
        secrets: [secret],
      }),
    );
    expect(err.message).not.toContain(secret);
    expect(err.message).not.toContain('hunter22');
    expect(err.command).not.toContain(secret);
    expect(err.stderrTail).toBe('auth failed for *** at postgres://app:***@db/x');
    expect(err.message).toContain(`auth failed for ***`);
  });

  it('never uses a shell: metacharacters arrive literally', async () => {
    const marker = path.join(dir, 'pwned');
    const arg = `$(touch ${marker}); rm -rf ${dir} && echo \`id\` | cat > ${marker}`;
    const r = await runCommand([node, '-e', 'console.log(process.argv[1])', arg]);
    expect(r.stdout).toBe(arg);
    await sleep(50);
    expect(existsSync(marker)).toBe(false);
    expect(existsSync(dir)).toBe(true);
  });

  it('output beyond maxBuffer fails the command', async () => {
    const err = await failureOf(runCommand([node, '-e', 'process.stdout.write("x".repeat(5000))'], { maxBuffer: 1000 }));
    expect(err.message).toContain('exceeded maxBuffer (1000 per stream)');
  });
});
