import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPreflight } from '../../activities/stack/preflight.js';
import type { PreflightResult } from '../../common/types.js';
import { freePort } from '../fixtures/servers.js';
import { containerEngineMissing, CONTAINERS_REQUIRED, startContainerEngine, type ContainerEngine } from '../fixtures/containers.js';

const engineMissing = containerEngineMissing();
const nothing = { ports: [], minDiskGb: 0, diskPath: '.', minMemoryGb: 0, files: [] };

function check(result: PreflightResult, name: string) {
  const c = result.checks.find((x) => x.name === name);
  if (!c) throw new Error(`no check named ${name}: ${result.checks.map((x) => x.name).join(', ')}`);
  return c;
}

describe('preflight', () => {
  let dir: string;
  let listener: net.Server;
  let busyPort: number;
  let tolerantPort: number;
  let tolerantListener: net.Server;

  const listen = (port: number) =>
    new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer((sock) => sock.end());
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve(s));
    });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'preflight-'));
    busyPort = await freePort();
    listener = await listen(busyPort);
    tolerantPort = await freePort();
    tolerantListener = await listen(tolerantPort);
  });
  afterAll(async () => {
    await new Promise((r) => listener.close(r));
    await new Promise((r) => tolerantListener.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('a port held by a listener is busy, a tolerated one passes, a free one passes', async () => {
    const freeP = await freePort();
    const r = await runPreflight({ ...nothing, ports: [busyPort, tolerantPort, freeP] }, { configDir: dir, tolerantPorts: [tolerantPort] });
    expect(r.ok).toBe(false);
    expect(check(r, `port ${busyPort}`)).toMatchObject({ ok: false });
    expect(check(r, `port ${busyPort}`).detail).toContain('in use');
    expect(check(r, `port ${tolerantPort}`)).toEqual({ name: `port ${tolerantPort}`, ok: true, detail: 'in use by an already healthy service' });
    expect(check(r, `port ${freeP}`)).toEqual({ name: `port ${freeP}`, ok: true, detail: 'free' });
  });

  it('a port bound on another address than 127.0.0.1 is busy too', async () => {
    const port = await freePort();
    const s = net.createServer();
    // Listening but never accepting on 127.0.0.1: only the bind attempt can see it.
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '::1', () => resolve());
    }).catch(async () => {
      await new Promise<void>((resolve) => s.listen(port, '127.0.0.2', () => resolve()));
    });
    try {
      const r = await runPreflight({ ...nothing, ports: [port] }, { configDir: dir });
      expect(check(r, `port ${port}`).ok).toBe(false);
      expect(check(r, `port ${port}`).detail).toMatch(/cannot bind it \(EADDRINUSE\)/);
    } finally {
      await new Promise((r) => s.close(r));
    }
  });

  it('disk and memory pass with 0 and fail with an absurd minimum, showing both figures', async () => {
    const pass = await runPreflight({ ...nothing }, { configDir: dir });
    expect(pass.ok).toBe(true);
    expect(check(pass, 'disk').detail).toMatch(new RegExp(`^\\d+\\.\\d GB free at ${dir}, need 0 GB$`));
    expect(check(pass, 'memory').detail).toMatch(/^\d+\.\d GB available \(MemAvailable\), need 0 GB$/);

    const fail = await runPreflight({ ...nothing, minDiskGb: 1e9, minMemoryGb: 1e9 }, { configDir: dir });
    expect(fail.ok).toBe(false);
    expect(check(fail, 'disk')).toMatchObject({ ok: false });
    expect(check(fail, 'disk').detail).toMatch(/^\d+\.\d GB free at .*, need 1000000000 GB$/);
    expect(check(fail, 'memory')).toMatchObject({ ok: false });
    expect(check(fail, 'memory').detail).toMatch(/need 1000000000 GB$/);
  });

  it('diskPath resolves against the config dir; a missing one fails', async () => {
    await mkdir(path.join(dir, 'data'));
    const r = await runPreflight({ ...nothing, diskPath: 'data' }, { configDir: dir });
    expect(check(r, 'disk').detail).toContain(`free at ${path.join(dir, 'data')}`);
    const missing = await runPreflight({ ...nothing, diskPath: 'nope' }, { configDir: dir });
    expect(check(missing, 'disk')).toMatchObject({ ok: false });
    expect(check(missing, 'disk').detail).toContain(`cannot read free space at ${path.join(dir, 'nope')}`);
  });

  it('config files must exist, relative to the config dir', async () => {
    await writeFile(path.join(dir, 'docker-compose.unified.yml'), 'services: {}\n');
    const r = await runPreflight({ ...nothing, files: ['docker-compose.unified.yml', 'config/fulcrum.yaml'] }, { configDir: dir });
    expect(r.ok).toBe(false);
    expect(check(r, 'file docker-compose.unified.yml')).toMatchObject({ ok: true });
    expect(check(r, 'file config/fulcrum.yaml')).toEqual({
      name: 'file config/fulcrum.yaml',
      ok: false,
      detail: `missing: ${path.join(dir, 'config/fulcrum.yaml')} (listed in preflight.files)`,
    });
  });

  it('Docker is checked only when needed, and fails here with a clear detail (no engine)', async () => {
    const without = await runPreflight({ ...nothing }, { configDir: dir });
    expect(without.checks.some((c) => c.name.startsWith('docker'))).toBe(false);

    const r = await runPreflight({ ...nothing }, { configDir: dir, needsDocker: true });
    expect(r.ok).toBe(false);
    const daemon = check(r, 'docker daemon');
    expect(daemon.ok).toBe(false);
    // Either the CLI is absent, or it is there and cannot reach a daemon.
    expect(daemon.detail).toMatch(/docker is not installed or not on PATH|docker info .*failed: .*(daemon|connect)/i);
  });

  describe.skipIf(engineMissing !== undefined && !CONTAINERS_REQUIRED)('against a real engine (Podman\'s Docker API)', () => {
    let engine: ContainerEngine;
    beforeAll(async () => {
      if (engineMissing) throw new Error(engineMissing);
      engine = await startContainerEngine({ images: [] });
    });
    afterAll(async () => {
      await engine?.stop();
    });

    it('passes when the daemon and each configured Compose CLI answer: v1 and the v2 syntax', async () => {
      const r = await runPreflight(
        { ...nothing },
        { configDir: dir, needsDocker: true, composeCommands: [['docker-compose'], ['docker', 'compose'], ['docker-compose']], env: engine.composeShimEnv },
      );
      expect(check(r, 'docker daemon')).toEqual({ name: 'docker daemon', ok: true, detail: expect.stringMatching(/^Docker daemon \d+\.\d+/) });
      expect(check(r, 'docker-compose')).toEqual({ name: 'docker-compose', ok: true, detail: expect.stringMatching(/^Docker Compose 1\.\d+/) });
      expect(check(r, 'docker compose')).toMatchObject({ ok: true, detail: expect.stringMatching(/^Docker Compose /) });
      expect(r.checks.filter((c) => c.name === 'docker-compose')).toHaveLength(1);
      expect(r.ok).toBe(true);
    });

    it('reports the daemon error line when docker info cannot reach it, and a missing compose plugin', async () => {
      const socket = path.join(dir, 'no-daemon.sock');
      // The machine's docker CLI has no compose plugin of its own: `docker compose` is an unknown command there.
      const r = await runPreflight({ ...nothing }, { configDir: dir, needsDocker: true, env: { ...engine.env, DOCKER_HOST: `unix://${socket}` } });
      expect(check(r, 'docker daemon').detail).toBe(
        `docker info --format {{.ServerVersion}} failed: Cannot connect to the Docker daemon at unix://${socket}. Is the docker daemon running?`,
      );
      expect(check(r, 'docker compose')).toMatchObject({ ok: false, detail: expect.stringMatching(/^docker compose version --short failed: /) });
      expect(r.ok).toBe(false);
    });

    it('says so when docker is not on PATH', async () => {
      const r = await runPreflight({ ...nothing }, { configDir: dir, needsDocker: true, env: { PATH: dir } });
      expect(check(r, 'docker daemon')).toEqual({ name: 'docker daemon', ok: false, detail: 'docker is not installed or not on PATH' });
    });
  });
});
