import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, missingEnv, parseConfig } from '../../lib/config.js';
import { resolveEnvRefs } from '../../lib/env.js';
import { demoConfigYaml } from '../../demo/config.js';

const minimal = `
services:
  - name: pg
    group: infra
    driver: { type: command, start: [pg_ctl, start] }
`;

function issuesOf(text: string): Array<{ path: string; message: string }> {
  try {
    parseConfig(text, 'test.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('expected the config to be refused');
}

describe('configuration file', () => {
  it('applies the runbook defaults: 120 s infra, 180 s apps, the runbook preflight ports, 5 GB disk, 4 GB RAM', () => {
    const cfg = parseConfig(minimal, 'test.yaml');
    expect(cfg.stack.groups).toEqual([
      { name: 'infra', waitTimeoutSeconds: 120, runMigrationsAfter: true },
      { name: 'apps', waitTimeoutSeconds: 180, runMigrationsAfter: false },
    ]);
    expect(cfg.preflight.ports).toEqual([5432, 4222, 6379, 50051, 8080, 3000, 3001, 9090]);
    expect(cfg.preflight.minDiskGb).toBe(5);
    expect(cfg.preflight.minMemoryGb).toBe(4);
  });

  it('names the path of every bad field and what is expected', () => {
    const fieldIssues = issuesOf(`
services:
  - name: pg
    group: infra
    driver: { type: dockr }
    probes:
      - { type: http, url: "http://x", expectStatus: "200" }
  - name: api
    driver: { type: command }
    colour: blue
`);
    const byPath = Object.fromEntries(fieldIssues.map((i) => [i.path, i.message]));
    expect(byPath['services[0].driver.type']).toMatch(/command.*compose.*kubernetes/);
    expect(byPath['services[0].probes[0].expectStatus']).toMatch(/number/);
    expect(byPath['services[1]']).toMatch(/unknown field.*"colour"/);
    // Cross-references are checked once every field is well-formed.
    const refIssues = issuesOf(`
services:
  - name: api
    group: nowhere
    dependsOn: [pgx]
    driver: { type: command }
`);
    const refs = Object.fromEntries(refIssues.map((i) => [i.path, i.message]));
    expect(refs['services[0].group']).toMatch(/unknown group "nowhere".*infra, apps/);
    expect(refs['services[0].dependsOn[0]']).toMatch(/unknown service "pgx"/);
  });

  it('refuses a password written in a URL and accepts an env reference', () => {
    const bad = issuesOf(minimal + `    probes: [{ type: postgres, url: "postgres://app:hunter2@db:5432/app" }]\n`);
    expect(bad[0]!.path).toBe('services[0].probes[0].url');
    expect(bad[0]!.message).toMatch(/environment variable.*\$\{NAME\}/);
    const ok = parseConfig(minimal + `    probes: [{ type: postgres, url: "\${DATABASE_URL}" }]\n`, 't');
    expect(missingEnv(ok, {})).toEqual([{ path: 'services[0].probes[0].url', message: 'environment variable DATABASE_URL is not set' }]);
    expect(missingEnv(ok, { DATABASE_URL: 'postgres://x' })).toEqual([]);
  });

  it('takes ${NAME:-fallback} when NAME is unset or empty, and a fallback cannot carry a password', () => {
    expect(resolveEnvRefs('${STATE:-.runbook}/demo/backups', {}, 'f')).toBe('.runbook/demo/backups');
    expect(resolveEnvRefs('${STATE:-.runbook}/demo/backups', { STATE: '' }, 'f')).toBe('.runbook/demo/backups');
    expect(resolveEnvRefs('${STATE:-.runbook}/demo/backups', { STATE: '/srv/state' }, 'f')).toBe('/srv/state/demo/backups');
    expect(() => resolveEnvRefs('${STATE}/x', {}, 'databaseOps.backups.repository')).toThrow(/databaseOps\.backups\.repository: environment variable STATE is not set/);
    const withFallback = parseConfig(minimal + `databaseOps: { backups: { repository: "\${STATE:-.runbook}/b" } }\n`, 't');
    expect(missingEnv(withFallback, {})).toEqual([]);
    const bad = issuesOf(minimal + `    probes: [{ type: postgres, url: "postgres://app:\${PW:-hunter2}@db:5432/app" }]\n`);
    expect(bad[0]!.path).toBe('services[0].probes[0].url');
  });

  it('reads schedule cron expressions in databaseOps.timezone: UTC by default, an IANA name, anything else refused', () => {
    expect(parseConfig(minimal + `databaseOps: {}\n`, 't').databaseOps?.timezone).toBe('UTC');
    expect(parseConfig(minimal + `databaseOps: { timezone: Europe/Berlin }\n`, 't').databaseOps?.timezone).toBe('Europe/Berlin');
    expect(issuesOf(minimal + `databaseOps: { timezone: Mars/Olympus }\n`)).toEqual([
      { path: 'databaseOps.timezone', message: 'unknown IANA time zone: expected e.g. Europe/Berlin or UTC' },
    ]);
  });

  it('detects dependency cycles and duplicate names', () => {
    const issues = issuesOf(`
services:
  - { name: a, group: infra, dependsOn: [b], driver: { type: command } }
  - { name: b, group: infra, dependsOn: [a], driver: { type: command } }
`);
    expect(issues.map((i) => i.message).join('\n')).toMatch(/cycle: (a -> b -> a|b -> a -> b)/);
    const dup = issuesOf(`
services:
  - { name: b, group: infra, driver: { type: command } }
  - { name: b, group: infra, driver: { type: command } }
`);
    expect(dup).toContainEqual({ path: 'services[1].name', message: 'duplicate service name "b"' });
  });

  it('reports YAML syntax errors with a line number', () => {
    const issues = issuesOf('services:\n  - name: [unclosed\n');
    expect(issues[0]!.path).toMatch(/^line \d+/);
  });

  it('tells how to create the file when it does not exist', async () => {
    await expect(loadConfig('/nonexistent/runbooks.yaml')).rejects.toThrow(/copy runbooks.example.yaml to runbooks.yaml.*RUNBOOK_CONFIG/);
  });

  it('ships a valid example config, and the demo generator agrees with it', async () => {
    const example = await loadConfig(path.resolve('runbooks.example.yaml'));
    const dir = await mkdtemp(path.join(tmpdir(), 'cfg-'));
    await writeFile(path.join(dir, 'r.yaml'), demoConfigYaml({ stateDir: dir }));
    const generated = await loadConfig(path.join(dir, 'r.yaml'));
    const shape = (c: typeof example.config) =>
      c.services.map((s) => ({ name: s.name, group: s.group, ports: s.ports, probes: s.probes.map((p) => p.type), deps: s.dependsOn }));
    expect(shape(generated.config)).toEqual(shape(example.config));
    expect(example.config.approvals.approvers.default).toEqual(['alice', 'bob']);
  });
});
