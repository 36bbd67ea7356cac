import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PORTS } from '../../demo/ports.js';
import { createKeyFile, keyringFromEnv } from '../../lib/codec/index.js';
import { pidAlive } from '../../lib/local/index.js';
import { freeDemoPorts, freePort } from '../fixtures/servers.js';

/**
 * `runbook dev --state-dir DIR`: everything it starts lives under DIR (the demo services'
 * data and pid files, the key), the CLI finds that key with RUNBOOK_STATE_DIR=DIR, a CLI with
 * another key gets a refusal instead of a run that never starts, and Ctrl-C stops it all.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'runbook.mjs');

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'runbook-dev-state-'));
  // As root the demo's PostgreSQL runs as the postgres user, who must be let through to the state dir.
  await chmod(scratch, 0o711);
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** The shipped example config with free ports and absolute paths: still "runbooks.example.yaml", so dev runs the demo. */
async function exampleOnFreePorts(dir: string): Promise<void> {
  const ports = await freeDemoPorts();
  let text = await readFile(path.join(ROOT, 'runbooks.example.yaml'), 'utf8');
  for (const key of Object.keys(DEMO_PORTS) as Array<keyof typeof DEMO_PORTS>) text = text.replaceAll(String(DEMO_PORTS[key]), String(ports[key]));
  text = text
    .replaceAll('bin/runbook.mjs', BIN)
    .replaceAll('demo/migrations', path.join(ROOT, 'demo', 'migrations'))
    .replace(/minDiskGb: \d+/, 'minDiskGb: 1')
    .replace(/minMemoryGb: \d+/, 'minMemoryGb: 1')
    // A loaded test machine must not turn a slow probe into a finding.
    .replace(/slowProbeMs: \d+/, 'slowProbeMs: 5000');
  await writeFile(path.join(dir, 'runbooks.example.yaml'), text);
}

/** The environment a user's shell would have: no key variables (the tests' own key is not theirs). */
function userEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.RUNBOOK_CODEC_KEY_FILE;
  delete env.RUNBOOK_CODEC_KEY;
  return env;
}

describe('the key the CLI chooses', () => {
  it('is $RUNBOOK_STATE_DIR/codec-keys.json when set, else .runbook/codec-keys.json under the working directory', async () => {
    const project = path.join(scratch, 'project');
    const other = path.join(scratch, 'other-state');
    await createKeyFile(path.join(project, '.runbook', 'codec-keys.json'), 'project-key');
    await createKeyFile(path.join(other, 'codec-keys.json'), 'other-key');
    expect(keyringFromEnv({}, { cwd: project })!.currentId).toBe('project-key');
    expect(keyringFromEnv({ RUNBOOK_STATE_DIR: other }, { cwd: project })!.currentId).toBe('other-key');
    expect(keyringFromEnv({ RUNBOOK_STATE_DIR: path.relative(project, other) }, { cwd: project })!.source).toContain(path.join(other, 'codec-keys.json'));
  });
});

describe('runbook dev --state-dir', () => {
  it('keeps the demo and its key under the state dir, the CLI uses that key, a mismatched key is refused, Ctrl-C stops everything', async () => {
    const dir = path.join(scratch, 'dev');
    const stateDir = path.join(dir, 'state');
    await mkdir(dir, { recursive: true });
    await exampleOnFreePorts(dir);
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    let stderr = '';
    const dev: ResultPromise = execa(
      process.execPath,
      [BIN, 'dev', '--state-dir', stateDir, '--port', String(port), '--ui-port', String(await freePort()), '--codec-port', '0', '--metrics', `127.0.0.1:${await freePort()}`],
      { cwd: dir, reject: false, env: userEnv({ RUNBOOK_CONFIG: path.join(dir, 'runbooks.example.yaml') }), extendEnv: false },
    );
    dev.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const pids: number[] = [];
    try {
      for (let i = 0; i < 600 && !/demo environment is up|stack-start failed/.test(stderr); i++) await new Promise((r) => setTimeout(r, 500));
      expect(stderr).toMatch(/demo environment is up/);
      expect(stderr).toContain(`export RUNBOOK_STATE_DIR=${stateDir}`);

      // Everything under the state dir; nothing in the config's directory's default .runbook.
      expect(existsSync(path.join(stateDir, 'codec-keys.json'))).toBe(true);
      expect(existsSync(path.join(stateDir, 'demo', 'postgres', 'data', 'PG_VERSION'))).toBe(true);
      expect(existsSync(path.join(dir, '.runbook'))).toBe(false);
      for (const file of ['redis/redis.pid', 'nats/nats.pid', 'api/api.pid']) pids.push(Number((await readFile(path.join(stateDir, 'demo', file), 'utf8')).trim()));
      pids.push(Number((await readFile(path.join(stateDir, 'demo', 'postgres', 'data', 'postmaster.pid'), 'utf8')).split('\n')[0]));
      expect(pids.every(pidAlive)).toBe(true);

      // The CLI with RUNBOOK_STATE_DIR: dev's key, so the worker reads the run.
      const cli = (cwd: string, extra: Record<string, string>, ...args: string[]) =>
        execa(process.execPath, [BIN, ...args], { cwd, reject: false, extendEnv: false, env: userEnv({ TEMPORAL_ADDRESS: address, RUNBOOK_CONFIG: path.join(dir, 'runbooks.example.yaml'), RUNBOOK_USER: 'alice', ...extra }) });
      const ok = await cli(dir, { RUNBOOK_STATE_DIR: stateDir }, 'run', 'health-check', '--wait');
      expect(ok.stderr).toMatch(/health-check succeeded/);
      expect(ok.exitCode).toBe(0);

      // The demo's schedules were applied, and dev said where to see them.
      expect(stderr).toMatch(/demo schedules \(databaseOps\.schedules: daily-backup, monthly-vacuum, weekly-restore-drill\): created runbook--demo--daily-backup, /);
      expect(stderr).toMatch(/see them: {2}http:\/\/\S+\/namespaces\/default\/schedules /);
      const schedules = await cli(dir, { RUNBOOK_STATE_DIR: stateDir }, 'schedules', 'list');
      expect(schedules.exitCode).toBe(0);
      expect(schedules.stdout.split('\n').map((l) => /^(\S+) {2}(\S+) {2}cron .* \(UTC\) {2}next: \d{4}-/.exec(l)?.slice(1, 3))).toEqual([
        ['runbook--demo--daily-backup', 'db-backup'],
        ['runbook--demo--monthly-vacuum', 'db-vacuum'],
        ['runbook--demo--weekly-restore-drill', 'restore-drill'],
      ]);

      // From a project folder with a key of its own (same id, another key, as two dev keys made on one day are):
      // refused with the key to use, and no run left behind that looks started.
      const project = path.join(dir, 'project');
      await createKeyFile(path.join(project, '.runbook', 'codec-keys.json'), JSON.parse(await readFile(path.join(stateDir, 'codec-keys.json'), 'utf8')).current);
      const wrong = await cli(project, {}, 'run', 'health-check', '--json');
      expect(wrong.exitCode).toBe(1);
      expect(wrong.stdout).toBe('');
      const line = wrong.stderr.trim();
      expect(line.split('\n')).toHaveLength(1);
      expect(line).toMatch(/^runbook: run (health-check--demo--\S+) (was terminated|ended)/);
      expect(line).toContain(`this CLI encrypts with key id`);
      expect(line).toContain(path.join(project, '.runbook', 'codec-keys.json'));
      expect(line).toContain('set RUNBOOK_STATE_DIR=DIR');
      const workflowId = /run (\S+)/.exec(line)![1]!;
      const connection = await Connection.connect({ address });
      try {
        const desc = await new Client({ connection }).workflow.getHandle(workflowId).describe();
        expect(desc.status.name).not.toBe('RUNNING');
      } finally {
        await connection.close();
      }
    } finally {
      dev.kill('SIGINT');
      await dev;
    }
    expect(stderr).toMatch(/SIGINT: stopping worker, demo services and Temporal/);
    expect(stderr).toMatch(/stopped\n/);
    // dev has stopped them before it exits; on a loaded machine the kernel may take a moment to reap.
    for (let i = 0; i < 50 && pids.some(pidAlive); i++) await sleep(100);
    expect(pids.filter(pidAlive)).toEqual([]);
  }, 600_000);
});
