import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceSchema } from '../../common/config-schema.js';
import { createDriver, type DriverContext } from '../../activities/drivers/index.js';
import { createLogger } from '../../lib/logger.js';
import { freePort } from '../fixtures/servers.js';
import { containerEngineMissing, CONTAINERS_REQUIRED, startContainerEngine, type ContainerEngine } from '../fixtures/containers.js';
import { createRecordingCli, type RecordingCli } from '../fixtures/recording-cli.js';

const fixtures = fileURLToPath(new URL('../fixtures/drivers/', import.meta.url));
const logger = createLogger({ test: 'drivers' }, 'silent');
const node = process.execPath;

async function failureOf(p: Promise<unknown> | (() => unknown)): Promise<ApplicationFailure> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  }
  throw new Error('expected a failure');
}

async function httpPid(port: number): Promise<number | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`);
    return Number(await res.text());
  } catch {
    return undefined;
  }
}

describe('command driver, driving a real process', () => {
  let stateDir: string;
  let port: number;
  const token = 'tok-9f8e7d6c5b4a';
  let ctx: DriverContext;

  beforeAll(async () => {
    stateDir = await mkdtemp(path.join(tmpdir(), 'cmd-driver-'));
    port = await freePort();
    // cwd is relative to configDir, and the scripts are named relative to cwd.
    ctx = { env: { PATH: process.env.PATH, WEB_TOKEN: token }, logger, configDir: path.dirname(fixtures) };
  });
  afterAll(async () => {
    const svc = service();
    await createDriver(svc, ctx).run('stop').catch(() => undefined);
    await rm(stateDir, { recursive: true, force: true });
  });

  const ctl = (action: string, ...rest: string[]) => [node, 'ctl.mjs', action, stateDir, ...rest];
  const service = (extra: Record<string, unknown> = {}) =>
    serviceSchema.parse({
      name: 'web',
      driver: {
        type: 'command',
        cwd: 'drivers',
        start: ctl('start', String(port), '${WEB_TOKEN}'),
        stop: ctl('stop'),
        status: ctl('status'),
        logs: ctl('logs'),
        timeoutSeconds: 20,
        ...extra,
      },
    });

  it('start, status, logs, restart, stop, status', async () => {
    const driver = createDriver(service(), ctx);
    expect(driver.kind).toBe('command');
    // Plans keep the references: safe to show in a dry run.
    expect(driver.plan('start')).toEqual([node, 'ctl.mjs', 'start', stateDir, String(port), '${WEB_TOKEN}']);
    expect(await driver.status()).toEqual({ running: false, detail: 'status command exited 3: not running' });

    const started = await driver.run('start');
    expect(started).toMatchObject({ service: 'web', action: 'start', ok: true });
    expect(started.output).toMatch(new RegExp(`started pid \\d+ on port ${port}`));
    expect(started.command).toBe(`${node} ctl.mjs start ${stateDir} ${port} ***`);
    const pid1 = await httpPid(port);
    expect(pid1).toBeGreaterThan(0);

    expect(await driver.status()).toEqual({ running: true, detail: `running, pid ${pid1}` });

    await httpPid(port);
    const logs = await driver.logs(2);
    expect(logs.split('\n')).toEqual(['request GET /', 'request GET /']);
    const all = await driver.logs(100);
    // The token reached the service, but never the logs a user reads back.
    expect(all).toContain('starting with token=***');
    expect(all).not.toContain(token);

    // No restart command: stop, then start.
    expect(driver.plan('restart')).toEqual([...ctl('stop'), '&&', ...ctl('start', String(port), '${WEB_TOKEN}')]);
    const restarted = await driver.run('restart');
    expect(restarted.command).toContain(' && ');
    expect(restarted.output).toContain(`stopped pid ${pid1}`);
    const pid2 = await httpPid(port);
    expect(pid2).toBeGreaterThan(0);
    expect(pid2).not.toBe(pid1);

    const stopped = await driver.run('stop');
    expect(stopped.output).toBe(`stopped pid ${pid2}`);
    expect(await httpPid(port)).toBeUndefined();
    expect(await driver.status()).toEqual({ running: false, detail: 'status command exited 3: not running' });
  });

  it('an action without a command is refused, naming the field to set', async () => {
    const driver = createDriver(service(), ctx);
    const rebuild = await failureOf(driver.run('rebuild'));
    expect(rebuild.type).toBe('UnsupportedAction');
    expect(rebuild.nonRetryable).toBe(true);
    expect(rebuild.message).toContain('service web cannot rebuild');
    expect(rebuild.message).toContain('services.web.driver.rebuild');
    const recreate = await failureOf(() => driver.plan('force-recreate'));
    expect(recreate.message).toContain('services.web.driver.forceRecreate');
    const clean = await failureOf(() => driver.plan('clean'));
    expect(clean.message).toContain('services.web.driver.clean');

    const bare = createDriver(serviceSchema.parse({ name: 'bare', driver: { type: 'command', start: ['true'] } }), ctx);
    const restart = await failureOf(() => bare.plan('restart'));
    expect(restart.message).toContain('services.bare.driver.restart');
    expect(await bare.status()).toEqual({ running: 'unknown', detail: 'no status command configured (services.bare.driver.status)' });
  });

  it('a failing command is a retryable CommandFailed with the exit code and the stderr tail, redacted', async () => {
    const driver = createDriver(service({ start: [node, '-e', 'console.error("cannot bind, token " + process.argv[1]); process.exit(4)', '${WEB_TOKEN}'] }), ctx);
    const f = await failureOf(driver.run('start'));
    expect(f.type).toBe('CommandFailed');
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toContain('service web start');
    expect(f.message).toContain('exit code 4');
    expect(f.message).toContain('cannot bind, token ***');
    expect(f.message).not.toContain(token);
    expect(f.details?.[0]).toMatchObject({ exitCode: 4, stderrTail: 'cannot bind, token ***', timedOut: false });
  });

  it('a missing environment variable is a config error naming the field', async () => {
    const driver = createDriver(service(), { ...ctx, env: { PATH: process.env.PATH } });
    const f = await failureOf(driver.run('start'));
    expect(f.type).toBe('InvalidConfig');
    expect(f.message).toContain('services.web.driver.start[5]');
    expect(f.message).toContain('WEB_TOKEN');
  });
});

describe('compose driver: commands and plans', () => {
  const configDir = '/etc/runbook';
  const file = path.join(configDir, 'deploy', 'docker-compose.unified.yml');
  const ctx: DriverContext = { env: { PATH: '' }, logger, configDir };
  const compose = (name: string, driver: Record<string, unknown> = {}) =>
    serviceSchema.parse({ name, driver: { type: 'compose', file: 'deploy/docker-compose.unified.yml', ...driver } });

  it('runs the runbook commands with `docker compose` by default, -f resolved against the config dir', () => {
    const driver = createDriver(compose('fulcrum-server'), ctx);
    const base = ['docker', 'compose', '-f', file];
    expect((['start', 'stop', 'restart', 'rebuild', 'force-recreate', 'clean'] as const).map((a) => driver.plan(a))).toEqual([
      [...base, 'up', '-d', 'fulcrum-server'],
      [...base, 'stop', 'fulcrum-server'],
      [...base, 'restart', 'fulcrum-server'],
      [...base, 'up', '-d', '--build', 'fulcrum-server'],
      [...base, 'up', '-d', '--force-recreate', 'fulcrum-server'],
      [...base, 'down', '-v'],
    ]);
  });

  it('uses the configured CLI, -p and the compose service name; clean is one stack-wide command', () => {
    const server = createDriver(compose('server', { service: 'fulcrum-server', project: 'fulcrum', command: ['docker-compose'] }), ctx);
    const redis = createDriver(compose('redis', { project: 'fulcrum', command: ['docker-compose'] }), ctx);
    expect(server.plan('start')).toEqual(['docker-compose', '-f', file, '-p', 'fulcrum', 'up', '-d', 'fulcrum-server']);
    expect(server.plan('clean')).toEqual(['docker-compose', '-f', file, '-p', 'fulcrum', 'down', '-v']);
    expect(redis.plan('clean')).toEqual(server.plan('clean'));
    expect(redis.plan('stop')).not.toEqual(server.plan('stop'));
  });

  it('docker missing from PATH is a non-retryable CommandFailed saying so', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'compose-driver-'));
    try {
      const driver = createDriver(compose('fulcrum-server'), { ...ctx, configDir: dir, env: { PATH: dir } });
      const f = await failureOf(driver.run('start'));
      expect(f.type).toBe('CommandFailed');
      expect(f.nonRetryable).toBe(true);
      expect(f.message).toContain('command not found: docker');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const engineMissing = containerEngineMissing();

describe.skipIf(engineMissing !== undefined && !CONTAINERS_REQUIRED)('compose driver on real containers (Podman API)', () => {
  let engine: ContainerEngine;
  let configDir: string;

  beforeAll(async () => {
    if (engineMissing) throw new Error(engineMissing);
    engine = await startContainerEngine({ images: ['redis'] });
    configDir = await mkdtemp(path.join(tmpdir(), 'compose-driver-'));
  });
  afterAll(async () => {
    await engine?.stop();
    if (configDir) await rm(configDir, { recursive: true, force: true });
  });

  async function composeFile(name: string, port: number): Promise<string> {
    const file = `${name}.yml`;
    const text = [
      'services:',
      '  cache:',
      `    image: ${engine.images.redis}`,
      `    ports: ["127.0.0.1:${port}:6379"]`,
      '    volumes: ["cache-data:/data"]',
      'volumes:',
      '  cache-data:',
      '',
    ].join('\n');
    await writeFile(path.join(configDir, file), text);
    return file;
  }

  // v1 names containers proj_cache_1 and has no `ps --format json`; v2 names them proj-cache-1.
  // Status works on both: `ps -a -q SERVICE` for the ids, `docker inspect` for their state.
  for (const syntax of ['v1', 'v2'] as const) {
    it(`${syntax === 'v1' ? 'docker-compose (v1)' : 'docker compose (v2 syntax, via the shim)'}: start, status, logs, stop, clean`, async () => {
      const project = engine.project(`drv${syntax}`);
      const port = await freePort();
      const file = await composeFile(project, port);
      const ctx: DriverContext = { env: syntax === 'v1' ? engine.env : engine.composeShimEnv, logger, configDir };
      const driver = createDriver(
        serviceSchema.parse({ name: 'cache', driver: { type: 'compose', file, project, command: syntax === 'v1' ? ['docker-compose'] : ['docker', 'compose'] } }),
        ctx,
      );

      expect(await driver.status()).toEqual({ running: false, detail: 'no container for compose service cache' });
      const started = await driver.run('start');
      expect(started.command).toBe(`${syntax === 'v1' ? 'docker-compose' : 'docker compose'} -f ${path.join(configDir, file)} -p ${project} up -d cache`);
      const up = await driver.status();
      expect(up.running).toBe(true);
      expect(up.detail).toMatch(new RegExp(`^${project}[_-]cache[_-]1 [0-9a-f]{12}: running since \\d{4}-`));

      let logs = '';
      for (let i = 0; i < 50 && !/Ready to accept connections/.test(logs); i++) {
        logs = await driver.logs(20);
        if (!/Ready to accept connections/.test(logs)) await new Promise((r) => setTimeout(r, 200));
      }
      expect(logs).toMatch(/Ready to accept connections/);

      await driver.run('stop');
      expect(await driver.status()).toMatchObject({ running: false, detail: expect.stringMatching(/: exited \(exit code \d+\)$/) });
      expect(await engine.docker(['volume', 'ls', '-q', '--filter', `name=${project}_cache-data`])).toMatchObject({ stdout: expect.stringContaining(`${project}_cache-data`) });

      const cleaned = await driver.run('clean');
      expect(cleaned.command).toMatch(/ down -v$/);
      expect(await driver.status()).toEqual({ running: false, detail: 'no container for compose service cache' });
      expect((await engine.docker(['volume', 'ls', '-q', '--filter', `name=${project}_`])).stdout.trim()).toBe('');
    });
  }

  it('a failing compose command is a retryable CommandFailed carrying the engine\'s error', async () => {
    const project = engine.project('drvbusy');
    // The published port is taken: the engine refuses to start the container.
    const busy = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => busy.once('listening', r));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const file = await composeFile(project, port);
      const driver = createDriver(
        serviceSchema.parse({ name: 'cache', driver: { type: 'compose', file, project, command: ['docker-compose'] } }),
        { env: engine.env, logger, configDir },
      );
      const f = await failureOf(driver.run('start'));
      expect(f.type).toBe('CommandFailed');
      expect(f.nonRetryable).toBe(false);
      expect(f.message).toMatch(/exit code 1/);
      expect(f.details?.[0]).toMatchObject({ exitCode: 1, stderrTail: expect.stringMatching(/address already in use/) });
    } finally {
      busy.close();
    }
  });
});

describe('kubernetes driver (recording kubectl stand-in)', () => {
  let kubectl: RecordingCli;
  let ctx: DriverContext;

  beforeAll(async () => {
    kubectl = await createRecordingCli('kubectl');
    ctx = { env: { PATH: kubectl.path }, logger, configDir: '/' };
  });
  afterAll(async () => {
    await kubectl.remove();
  });

  const k8s = (driver: Record<string, unknown> = {}) =>
    serviceSchema.parse({ name: 'fulcrum-server', driver: { type: 'kubernetes', ...driver } });

  it('scales, restarts with rollout status, and deletes the PVCs, with --context and -n', async () => {
    await kubectl.clear();
    const driver = createDriver(k8s({ context: 'prod-eu', namespace: 'fulcrum', replicas: 3, timeoutSeconds: 90 }), ctx);
    const base = ['--context', 'prod-eu', '-n', 'fulcrum'];
    for (const action of ['start', 'stop', 'restart', 'force-recreate', 'clean'] as const) await driver.run(action);
    expect(await kubectl.calls()).toEqual([
      [...base, 'scale', 'deployment/fulcrum-server', '--replicas=3'],
      [...base, 'scale', 'deployment/fulcrum-server', '--replicas=0'],
      [...base, 'rollout', 'restart', 'deployment/fulcrum-server'],
      [...base, 'rollout', 'status', 'deployment/fulcrum-server', '--timeout=90s'],
      [...base, 'rollout', 'restart', 'deployment/fulcrum-server'],
      [...base, 'rollout', 'status', 'deployment/fulcrum-server', '--timeout=90s'],
      [...base, 'delete', 'pvc', '-l', 'app=fulcrum-server'],
    ]);
    expect(driver.plan('restart')).toEqual([
      'kubectl', ...base, 'rollout', 'restart', 'deployment/fulcrum-server',
      '&&', 'kubectl', ...base, 'rollout', 'status', 'deployment/fulcrum-server', '--timeout=90s',
    ]);
  });

  it('without a context: only -n; kind and name from the config', async () => {
    await kubectl.clear();
    await createDriver(k8s({ kind: 'statefulset', name: 'pg' }), ctx).run('start');
    expect(await kubectl.calls()).toEqual([['-n', 'default', 'scale', 'statefulset/pg', '--replicas=1']]);
  });

  it('rebuild is refused with the way to do it instead', async () => {
    const f = await failureOf(createDriver(k8s(), ctx).run('rebuild'));
    expect(f.type).toBe('UnsupportedAction');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('service fulcrum-server cannot rebuild');
    expect(f.message).toContain('build and push a new image');
    expect(f.message).toContain('services.fulcrum-server.driver');
  });

  it('status reads readyReplicas; a missing workload is not running', async () => {
    const driver = createDriver(k8s({ namespace: 'fulcrum' }), ctx);
    await kubectl.respond([{ when: ['get'], stdout: JSON.stringify({ spec: { replicas: 2 }, status: { replicas: 2, readyReplicas: 2 } }) }]);
    await kubectl.clear();
    expect(await driver.status()).toEqual({ running: true, detail: 'deployment/fulcrum-server: 2/2 ready' });
    expect(await kubectl.calls()).toEqual([['-n', 'fulcrum', 'get', 'deployment/fulcrum-server', '-o', 'json']]);

    await kubectl.respond([{ when: ['get'], stdout: JSON.stringify({ spec: { replicas: 0 }, status: { replicas: 0 } }) }]);
    expect(await driver.status()).toEqual({ running: false, detail: 'deployment/fulcrum-server: 0/0 ready' });

    await kubectl.respond([
      { when: ['get'], stderr: 'Error from server (NotFound): deployments.apps "fulcrum-server" not found\n', exitCode: 1 },
    ]);
    expect(await driver.status()).toEqual({ running: false, detail: 'deployment/fulcrum-server not found in namespace fulcrum' });

    // An unreachable cluster says nothing about the workload: a retryable failure, not "stopped".
    await kubectl.respond([
      { when: ['get'], stderr: 'Unable to connect to the server: dial tcp 10.0.0.1:443: i/o timeout\n', exitCode: 1 },
    ]);
    const f = await failureOf(driver.status());
    expect(f.type).toBe('CommandFailed');
    expect(f.message).toContain('Unable to connect to the server');
  });

  it('logs asks kubectl for the tail', async () => {
    await kubectl.respond([{ when: ['logs'], stdout: 'a\nb\nc\n' }]);
    await kubectl.clear();
    expect(await createDriver(k8s(), ctx).logs(50)).toBe('a\nb\nc');
    expect(await kubectl.calls()).toEqual([['-n', 'default', 'logs', 'deployment/fulcrum-server', '--tail=50']]);
  });

  it('a failing kubectl is a retryable CommandFailed with the stderr tail', async () => {
    await kubectl.respond([
      { when: ['scale'], stderr: 'error: You must be logged in to the server (Unauthorized)\n', exitCode: 1 },
    ]);
    const f = await failureOf(createDriver(k8s(), ctx).run('start'));
    expect(f.type).toBe('CommandFailed');
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toContain('Unauthorized');
    expect(f.details?.[0]).toMatchObject({ exitCode: 1, stderrTail: 'error: You must be logged in to the server (Unauthorized)' });
    await kubectl.respond([]);
  });
});
