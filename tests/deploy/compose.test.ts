import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SEARCH_ATTRIBUTES } from '../../common/search-attributes.js';

/**
 * docker-compose.temporal.yml cannot run here: its images come from Docker Hub, which this machine
 * cannot reach (containers do run, on Podman: tests/fixtures/containers.ts). These tests check what
 * an operator would check by reading it, and `docker compose config` when the CLI plugin exists.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COMPOSE_FILE = path.join(ROOT, 'docker-compose.temporal.yml');
const raw = readFileSync(COMPOSE_FILE, 'utf8');

interface Healthcheck {
  test?: string | string[];
  disable?: boolean;
}
interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: Array<string | { target: number; published?: string | number }>;
  expose?: Array<string | number>;
  volumes?: Array<string | { type: string; source?: string; target: string; read_only?: boolean }>;
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: Healthcheck;
  restart?: string;
  secrets?: string[];
}

const compose = parse(raw) as { services: Record<string, Service>; volumes?: Record<string, unknown>; secrets?: Record<string, { file?: string }> };
const services = compose.services;

function service(name: string): Service {
  const s = services[name];
  if (!s) throw new Error(`docker-compose.temporal.yml has no service "${name}"`);
  return s;
}

function env(s: Service): Record<string, string> {
  const e = s.environment ?? {};
  if (Array.isArray(e)) {
    return Object.fromEntries(e.map((kv) => [kv.split('=')[0]!, kv.includes('=') ? kv.slice(kv.indexOf('=') + 1) : '']));
  }
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

function dependencies(s: Service): Record<string, string> {
  const d = s.depends_on ?? {};
  if (Array.isArray(d)) return Object.fromEntries(d.map((n) => [n, 'service_started']));
  return Object.fromEntries(Object.entries(d).map(([n, v]) => [n, v.condition ?? 'service_started']));
}

function script(s: Service): string {
  return [s.entrypoint, s.command].flat().filter(Boolean).join(' ');
}

/** "HOST:CONTAINER" or "IP:HOST:CONTAINER" (long syntax too) → [{ published, target }]. */
function published(s: Service): Array<{ published: number; target: number }> {
  return (s.ports ?? []).map((p) => {
    if (typeof p === 'object') return { published: Number(p.published ?? p.target), target: p.target };
    const parts = p.split('/')[0]!.split(':');
    const target = Number(parts.at(-1));
    return { published: parts.length > 1 ? Number(parts.at(-2)) : target, target };
  });
}

const SERVICES = ['postgresql', 'temporal-schema', 'temporal', 'temporal-setup', 'temporal-ui', 'runbook-worker', 'codec-server'];

describe('docker-compose.temporal.yml', () => {
  it('has the stack: database, schema job, server, setup job, UI, worker, codec server', () => {
    expect(Object.keys(services).sort()).toEqual([...SERVICES].sort());
  });

  it('pins every image to an exact tag and does not use the deprecated auto-setup image', () => {
    const images = Object.entries(services).filter(([, s]) => s.image !== undefined);
    expect(images.length).toBeGreaterThanOrEqual(5);
    for (const [name, s] of images) {
      const image = s.image!;
      expect(image, `${name}: image is interpolated; pin it in the file`).not.toContain('$');
      const m = /^([a-z0-9][a-z0-9._/-]*)(?::([\w][\w.-]*))?(@sha256:[a-f0-9]{64})?$/.exec(image);
      expect(m, `${name}: "${image}" is not repo:tag`).not.toBeNull();
      const tag = m![2];
      expect(tag, `${name}: "${image}" has no tag`).toBeDefined();
      expect(tag, `${name}: "${image}" uses latest`).not.toBe('latest');
      // An exact release: at least major.minor.patch (or a digest), not a moving "16" or "1.29".
      expect(m![3] !== undefined || /^\d+\.\d+(\.\d+)?(-[\w.-]+)?$/.test(tag!), `${name}: "${image}" is not an exact version`).toBe(true);
      expect(image).not.toMatch(/auto-setup/);
    }
    expect(raw).not.toMatch(/temporalio\/auto-setup/);
    expect(service('temporal').image).toMatch(/^temporalio\/server:1\.29\.\d+$/);
    expect(service('temporal-schema').image).toMatch(/^temporalio\/admin-tools:1\.29\.\d+/);
    expect(service('temporal-setup').image).toBe(service('temporal-schema').image);
    expect(service('temporal-ui').image).toMatch(/^temporalio\/ui:\d+\.\d+\.\d+$/);
    expect(service('postgresql').image).toMatch(/^postgres:\d+\.\d+/);
  });

  it('publishes the Temporal frontend on 7233 and the UI on 8233', () => {
    expect(published(service('temporal'))).toContainEqual({ published: 7233, target: 7233 });
    expect(published(service('temporal-ui'))).toContainEqual({ published: 8233, target: 8080 });
    // Temporal's database is reachable inside the stack only.
    expect(service('postgresql').ports ?? []).toEqual([]);
  });

  it('has a health check on every long-running service', () => {
    for (const name of ['postgresql', 'temporal', 'temporal-ui', 'runbook-worker']) {
      const hc = service(name).healthcheck;
      expect(hc, `${name} has no healthcheck`).toBeDefined();
      expect(hc!.disable ?? false).toBe(false);
      const test = [hc!.test ?? []].flat();
      expect(test.length, `${name}: empty healthcheck test`).toBeGreaterThan(1);
      expect(test[0]).toMatch(/^CMD(-SHELL)?$/);
    }
    expect(script({ command: [service('postgresql').healthcheck!.test!].flat() })).toContain('pg_isready');
    expect([service('temporal').healthcheck!.test!].flat()).toEqual(expect.arrayContaining(['cluster', 'health']));
  });

  it('orders startup: postgresql → schema → temporal → setup, UI and worker', () => {
    expect(dependencies(service('temporal-schema'))).toEqual({ postgresql: 'service_healthy' });
    expect(dependencies(service('temporal'))).toMatchObject({ 'temporal-schema': 'service_completed_successfully' });
    expect(dependencies(service('temporal-setup'))).toEqual({ temporal: 'service_healthy' });
    expect(dependencies(service('temporal-ui'))).toEqual({ temporal: 'service_healthy' });
    // The worker upserts the search attributes, so it waits for the job that registers them.
    expect(dependencies(service('runbook-worker'))).toEqual({ temporal: 'service_healthy', 'temporal-setup': 'service_completed_successfully' });

    for (const [name, s] of Object.entries(services)) {
      for (const [dep, condition] of Object.entries(dependencies(s))) {
        expect(services[dep], `${name} depends on unknown ${dep}`).toBeDefined();
        if (condition === 'service_healthy') expect(service(dep).healthcheck, `${name} waits for ${dep} to be healthy, but it has no healthcheck`).toBeDefined();
        if (condition === 'service_completed_successfully') {
          // A job restarted "always" never completes, and everything waiting on it hangs.
          expect(service(dep).restart ?? 'no', `${dep} is a one-shot job`).toMatch(/^(no|on-failure(:\d+)?)$/);
        }
      }
    }

    // Follow the waits: each service starts strictly after everything it depends on.
    const depth = (name: string, seen: string[] = []): number => {
      expect(seen, `depends_on cycle through ${name}`).not.toContain(name);
      const deps = Object.keys(dependencies(service(name)));
      return deps.length === 0 ? 0 : 1 + Math.max(...deps.map((d) => depth(d, [...seen, name])));
    };
    expect(depth('postgresql')).toBe(0);
    expect(depth('temporal-schema')).toBeGreaterThan(depth('postgresql'));
    expect(depth('temporal')).toBeGreaterThan(depth('temporal-schema'));
    for (const after of ['temporal-setup', 'temporal-ui', 'runbook-worker']) expect(depth(after)).toBeGreaterThan(depth('temporal'));
  });

  it('sets up both Temporal schemas with temporal-sql-tool for PostgreSQL', () => {
    const s = script(service('temporal-schema'));
    expect(s).toContain('temporal-sql-tool --plugin postgres12');
    for (const step of ['create', 'setup-schema', 'update-schema']) expect(s).toContain(step);
    expect(s).toMatch(/for db in temporal temporal_visibility/);
    expect(s).toContain('/etc/temporal/schema/postgresql/v12/');

    const t = env(service('temporal'));
    expect(t).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql', DBNAME: 'temporal', VISIBILITY_DBNAME: 'temporal_visibility' });
  });

  it('registers exactly the search attributes the workflows use, in the namespace the worker uses', () => {
    const setup = service('temporal-setup');
    const s = script(setup);
    expect(s).toContain('temporal operator search-attribute create');
    expect(s).toContain('temporal operator namespace create');
    for (const sa of SEARCH_ATTRIBUTES) expect(s).toContain(`--name ${sa.name} --type ${sa.type}`);
    expect(env(setup).TEMPORAL_NAMESPACE).toBe(env(service('runbook-worker')).TEMPORAL_NAMESPACE);
    expect(env(setup).TEMPORAL_ADDRESS).toBe('temporal:7233');
  });

  it('never holds a literal password: secrets come from the environment and are required', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const [key, value] of Object.entries(env(s))) {
        if (/PASS|PWD|SECRET|TOKEN|API_KEY/i.test(key)) {
          expect(value, `${name}.environment.${key} must be \${VAR:?message}`).toMatch(/^\$\{[A-Z_][A-Z0-9_]*:\?[^}]+\}$/);
        }
      }
    }
    expect(raw).toContain('${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}');
    expect(raw).not.toMatch(/(password|pwd)\s*[:=]\s*['"]?(?!\$\{)[A-Za-z0-9]/i);
    expect(raw).not.toMatch(/:\/\/[^/\s:@]+:[^@\s$]+@/);
  });

  it('encrypts payloads: worker and codec server require the key file secret, the UI decodes through the codec server', () => {
    expect(compose.secrets?.codec_keys?.file).toMatch(/^\$\{RUNBOOK_CODEC_KEY_FILE:\?[^}]+\}$/);
    for (const name of ['runbook-worker', 'codec-server']) {
      const s = service(name);
      expect(s.secrets, name).toContain('codec_keys');
      expect(env(s), name).toMatchObject({ RUNBOOK_CODEC_KEY_FILE: '/run/secrets/codec_keys', RUNBOOK_CODEC_REQUIRED: 'true' });
    }
    const codec = service('codec-server');
    expect(script(codec)).toMatch(/^codec-server --host 0\.0\.0\.0 --port 8234 --cors-origin http:\/\/localhost:8233/);
    expect(published(codec)).toContainEqual({ published: 8234, target: 8234 });
    expect(env(service('temporal-ui')).TEMPORAL_CODEC_ENDPOINT).toBe('http://localhost:8234');
  });

  it('escapes every shell $ so compose does not substitute host variables into scripts', () => {
    // Compose interpolates $NAME and ${NAME}; a script's own variables must be written $$NAME.
    const unescaped = [...raw.replace(/\$\$/g, '').matchAll(/\$(?!\{[A-Z_][A-Z0-9_]*(?::?[-?][^}]*)?\})/g)].map((m) =>
      raw.slice(Math.max(0, m.index - 20), m.index + 20),
    );
    expect(unescaped).toEqual([]);
  });

  describe('runbook-worker', () => {
    const worker = service('runbook-worker');
    const build = typeof worker.build === 'string' ? { context: worker.build } : (worker.build ?? {});
    const dockerfilePath = path.resolve(ROOT, build.context ?? '.', build.dockerfile ?? 'Dockerfile');
    const dockerfile = existsSync(dockerfilePath) ? readFileSync(dockerfilePath, 'utf8') : '';
    const instruction = (name: string): string[] => {
      const lines = dockerfile.split('\n').filter((l) => new RegExp(`^${name}\\s`, 'i').test(l));
      const last = lines.at(-1);
      if (!last) return [];
      const arg = last.replace(new RegExp(`^${name}\\s+`, 'i'), '').trim();
      return arg.startsWith('[') ? (JSON.parse(arg) as string[]) : ['/bin/sh', '-c', arg];
    };

    it('is built from the Dockerfile, whose entrypoint and command run the worker', () => {
      expect(worker.image, 'the worker is built, not pulled').toBeUndefined();
      expect(existsSync(dockerfilePath), `${dockerfilePath} is missing`).toBe(true);
      const entrypoint = instruction('ENTRYPOINT');
      const cmd = worker.command ? [worker.command].flat() : instruction('CMD');
      expect([...entrypoint, ...cmd]).toEqual(['node', 'bin/runbook.mjs', 'worker']);
      expect(instruction('CMD')).toEqual(['worker']);
      expect(existsSync(path.join(ROOT, 'bin/runbook.mjs'))).toBe(true);
    });

    it('builds a lean, non-root image from a pinned Node 20 base', () => {
      expect(dockerfile).toMatch(/^FROM node:20\.\d+\.\d+-bookworm-slim\s*$/m);
      expect(dockerfile).toMatch(/npm ci --omit=dev/);
      // Compiled in a build stage that has the dev dependencies; the image takes only dist/ from it.
      expect(dockerfile).toMatch(/^RUN npm run build\s*$/m);
      // Both workflow bundles are made at build: the worker cannot write them into a read-only image.
      expect(dockerfile).toMatch(/bundle-main\.js plain dist\/workflow-bundle\.plain\.js/);
      expect(dockerfile).toMatch(/bundle-main\.js encrypted dist\/workflow-bundle\.encrypted\.js/);
      expect(dockerfile).toMatch(/^COPY --from=\S+ \/app\/dist \.\/dist\s*$/m);
      expect(dockerfile).toMatch(/apt-get install[^\n]*postgresql-client/);
      const user = dockerfile.match(/^USER\s+(\S+)/gm)?.at(-1)?.split(/\s+/)[1];
      expect(user, 'the image must switch to a non-root USER').toBeDefined();
      expect(['root', '0']).not.toContain(user);
    });

    it('copies only files that exist and that .dockerignore lets through', () => {
      const ignored = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#') && !l.startsWith('!'));
      const sources = dockerfile
        .split('\n')
        // COPY --from takes files from the build stage, not from the build context.
        .filter((l) => /^COPY\s/.test(l) && !/--from=/.test(l))
        .flatMap((l) => l.replace(/^COPY\s+/, '').split(/\s+/).filter((w) => !w.startsWith('--')).slice(0, -1));
      expect(sources).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'bin', 'workflows', 'activities']));
      for (const src of sources) {
        expect(existsSync(path.join(ROOT, src)), `COPY ${src}: no such file`).toBe(true);
        expect(ignored, `COPY ${src} is excluded by .dockerignore`).not.toContain(src);
      }
      // Secrets and local state stay out of the build context.
      for (const secret of ['.env', 'runbooks.yaml', 'node_modules', '.git']) expect(ignored).toContain(secret);
    });

    it('talks to the stack’s Temporal, reads its config read-only, and is checked on its metrics endpoint', () => {
      const e = env(worker);
      expect(e.TEMPORAL_ADDRESS).toBe('temporal:7233');
      expect(e.RUNBOOK_CONFIG).toMatch(/^\/.+\.ya?ml$/);
      const configDir = path.posix.dirname(e.RUNBOOK_CONFIG!);
      // SOURCE:TARGET[:MODE], where SOURCE may itself hold a ${VAR:-default}.
      const mounts = (worker.volumes ?? []).map((v) => /^(.+):(\/[^:]*)(?::(ro|rw))?$/.exec(String(v)));
      const mount = mounts.find((m) => m?.[2] === configDir);
      expect(mount, `no volume mounted at ${configDir}`).toBeDefined();
      expect(mount![3]).toBe('ro');

      const metricsPort = Number(e.RUNBOOK_METRICS?.split(':').at(-1));
      expect(metricsPort).toBeGreaterThan(0);
      expect((worker.expose ?? []).map(Number)).toContain(metricsPort);
      expect(published(worker).map((p) => p.target)).toContain(metricsPort);
      expect(dockerfile).toMatch(new RegExp(`^EXPOSE\\s+${metricsPort}\\b`, 'm'));
      const hc = [worker.healthcheck!.test!].flat().join(' ');
      expect(hc).toContain(`127.0.0.1:${metricsPort}/metrics`);
    });
  });

  it('passes `docker compose config` (when the compose plugin is installed)', async (ctx) => {
    const version = await execa('docker', ['compose', 'version'], { reject: false });
    if (version.exitCode !== 0) {
      const why = (version.stderr || version.shortMessage || '').trim().split('\n')[0];
      const reason = `docker compose plugin not available (${why}): skipping the compose CLI validation`;
      console.warn(reason);
      ctx.skip(reason);
      return;
    }
    const ok = await execa('docker', ['compose', '-f', COMPOSE_FILE, 'config', '-q'], {
      reject: false,
      env: { POSTGRES_PASSWORD: 'only-for-config-check' },
    });
    expect(ok.exitCode, ok.stderr).toBe(0);

    const { POSTGRES_PASSWORD: _unset, ...withoutPassword } = process.env;
    const missing = await execa('docker', ['compose', '-f', COMPOSE_FILE, 'config', '-q'], { reject: false, env: withoutPassword, extendEnv: false });
    expect(missing.exitCode).not.toBe(0);
    expect(missing.stderr).toContain('set POSTGRES_PASSWORD');
  });
});
