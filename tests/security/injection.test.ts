import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { splitTableName } from '../../activities/database/pg.js';
import { createActivities } from '../../activities/index.js';
import { connectRedis, unlinkByPattern } from '../../activities/incident/redis.js';
import type { DbVacuumResult } from '../../common/database/types.js';
import type { ConfigRollbackResult } from '../../common/delivery/types.js';
import { INPUT_FIELDS, InputError, parseInput } from '../../common/inputs.js';
import { PROCEDURE_IDS, type ProcedureId } from '../../common/procedures.js';
import type { ServiceRestartResult } from '../../common/stack/types.js';
import { parseConfig } from '../../lib/config.js';
import { runCommand } from '../../lib/exec.js';
import { createLogger } from '../../lib/logger.js';
import { failureText, pgConfigService, sql } from '../database/helpers.js';
import { createRecordingCli } from '../fixtures/recording-cli.js';
import { withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { startPostgres, startRedis, type PgServer } from '../fixtures/servers.js';
import { quietSdkWarnings } from './quiet.js';
import { HOSTILE, HOSTILE_NUMBERS, REFUSED_EVEN_IN_TEXT, conforms, isListKind } from './arbitraries.js';

/**
 * Injection: every input field either refuses SQL, shell metacharacters, path traversal
 * and look-alikes with an error naming the field, or (free text) is only ever used as
 * data: a SQL parameter or quoted identifier, one argv element, one RESP bulk string,
 * one URL-encoded query parameter.
 */

let restoreLogs: () => void;
beforeAll(() => {
  restoreLogs = quietSdkWarnings();
});
afterAll(() => restoreLogs());

/** The free-text fields, and why arbitrary text in them cannot do harm. Every other field refuses the HOSTILE strings. */
const FREE_TEXT: Record<string, string> = {
  'incident.title': 'shown in the timeline, JSON-encoded in webhooks, Markdown in the postmortem',
  'incident.service': 'shown only (the affected service, as people name it)',
  'incident.summary': 'shown only',
  'incident.source': 'shown only',
  'redis-triage.deletePattern': 'one SCAN MATCH argument (RESP bulk string); deletion behind an approval',
  'service-error-triage.cachePattern': 'one SCAN MATCH argument (RESP bulk string)',
  'service-error-triage.metricsMatch': 'a prefix compared with startsWith',
  'latency-triage.p99Query': 'one URL-encoded query parameter to Prometheus',
  'latency-triage.errorRateQuery': 'one URL-encoded query parameter to Prometheus',
  'db-migration-rollback.to': 'refused by the workflow unless digits, before anything runs',
  'app-rollback.expectVersion': 'compared for equality with the served version',
  'config-rollback.flag': 'a SQL parameter ($1)',
};

function refusal(procedure: ProcedureId, input: unknown): InputError {
  try {
    parseInput(procedure, input);
  } catch (err) {
    if (err instanceof InputError) return err;
    throw err;
  }
  throw new Error(`${procedure} accepted ${JSON.stringify(input)?.slice(0, 200)}`);
}

/** A valid input of the procedure: its required fields only, from the documented examples. */
function minimalInput(procedure: ProcedureId): Record<string, unknown> {
  const sample: Record<string, unknown> = {
    database: 'main',
    router: 'api',
    service: 'api',
    to: 'green',
    kind: 'env-file',
    targetTime: '2026-11-23T03:00:00Z',
    title: 'API down',
    severity: 'P0',
  };
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(INPUT_FIELDS[procedure])) if (spec.required) out[name] = sample[name];
  return out;
}

describe('every restricted field refuses hostile values, naming the field', () => {
  it('the minimal inputs used below are valid', () => {
    for (const procedure of PROCEDURE_IDS) expect(() => parseInput(procedure, minimalInput(procedure))).not.toThrow();
  });

  for (const procedure of PROCEDURE_IDS) {
    it(procedure, () => {
      for (const [field, spec] of Object.entries(INPUT_FIELDS[procedure])) {
        const free = spec.kind === 'string';
        const values: Array<readonly [string, unknown]> = [
          ...HOSTILE.filter(([label]) => !free || REFUSED_EVEN_IN_TEXT.has(label)),
          // Wrong types everywhere (skipping the few that happen to be valid here: "1" is a fine name, true a fine boolean).
          ...HOSTILE_NUMBERS.filter(([, v]) => !conforms(spec, isListKind(spec) && typeof v === 'string' ? [v] : v)),
        ];
        for (const [label, hostile] of values) {
          const value = isListKind(spec) && typeof hostile === 'string' ? [hostile] : hostile;
          const err = refusal(procedure, { ...minimalInput(procedure), [field]: value });
          const named = err.problems.some((p) => p.startsWith(`${field}: `));
          if (!named) throw new Error(`${procedure}.${field} (${spec.kind}) refused ${label} without naming the field: ${err.message.slice(0, 300)}`);
          // The refusal says what is allowed, not just "invalid".
          expect(err.problems.find((p) => p.startsWith(`${field}: `))!.length, `${procedure}.${field} ${label}`).toBeGreaterThan(field.length + 20);
        }
      }
    });
  }

  it('the free-text fields are exactly the listed ones, each with the reason it is harmless', () => {
    const actual = PROCEDURE_IDS.flatMap((p) =>
      Object.entries(INPUT_FIELDS[p])
        .filter(([, s]) => s.kind === 'string')
        .map(([f]) => `${p}.${f}`),
    );
    expect(actual.sort()).toEqual(Object.keys(FREE_TEXT).sort());
    // Shell and SQL text in them is accepted here and neutralized downstream (tests below).
    expect(parseInput('config-rollback', { kind: 'feature-flag', database: 'app', flag: "x'; DROP TABLE feature_flags; --" })).toMatchObject({ kind: 'feature-flag' });
    expect(parseInput('redis-triage', { service: 'redis', deletePattern: 'policy:*\r\nFLUSHALL' })).toMatchObject({ service: 'redis' });
  });

  it('inherited and special keys are unknown fields, shown escaped', () => {
    for (const key of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      const input = JSON.parse(`{"database": "main", ${JSON.stringify(key)}: {"x": 1}}`) as unknown;
      expect(refusal('db-backup', input).message).toContain(`unknown field "${key}": expected one of requestedBy`);
    }
    const ansi = refusal('db-backup', JSON.parse('{"database": "main", "\\u001b[2Jx\\u202e": 1}'));
    expect(ansi.message).toContain('unknown field "\\u001b[2Jx\\u202e"');
    // eslint-disable-next-line no-control-regex -- finding control characters is the point
    expect(ansi.message).not.toMatch(/[\u001b\u202e]/);
    const many = refusal('db-backup', Object.fromEntries([['database', 'main'], ...Array.from({ length: 5000 }, (_, i) => [`k${i}`, i])]));
    expect(many.problems).toHaveLength(6);
    expect(many.problems[5]).toBe('4995 more unknown fields');
  });

  it('says what each restricted kind allows', () => {
    expect(refusal('app-rollback', { service: 'web', verifyUrl: 'http://admin:hunter2@127.0.0.1/version' }).message).toMatch(
      /verifyUrl: expected url .*http:\/\/ or https:\/\/ URL without spaces or user:password@/,
    );
    expect(refusal('service-error-triage', { service: 'api', metricsUrl: 'file:///etc/passwd' }).message).toMatch(/metricsUrl: expected url/);
    expect(refusal('config-rollback', { kind: 'env-file', envFile: '../../etc/passwd' }).message).toMatch(
      /envFile: expected relative-path .*not absolute, no "\.\." segment/,
    );
    expect(refusal('config-rollback', { kind: 'configmap', manifest: '/etc/kubernetes/admin.conf', service: 'api' }).message).toMatch(/manifest: expected relative-path/);
    expect(refusal('app-rollback', { service: 'web', image: '--help' }).message).toMatch(/image: expected image .*starts with a letter or digit/);
    expect(refusal('db-restore', { database: 'main', backupId: '../../etc' }).message).toMatch(/backupId: expected id .*letters, digits, "_" or "-"/);
    expect(refusal('nats-lag-triage', { service: 'nats', stream: 'EVENTS.>' }).message).toMatch(/stream: expected id/);
    expect(refusal('db-vacuum', { database: 'main', tables: ['public.users.x'] }).message).toMatch(/tables: expected table-list .*at most one "\."/);
    expect(refusal('db-triage', { database: 'main', cancelPids: [2_147_483_648] }).message).toMatch(/cancelPids: .*positive integers up to 2147483647/);
    expect(refusal('stack-stop', { requestedBy: 'b\u043eb' }).message).toMatch(/requestedBy: expected identity .*one name of letters, digits/);
    expect(refusal('incident', { title: 'x\u0000', severity: 'P1' }).message).toMatch(/title: control characters .* are not allowed/);
    // And the documented examples still pass.
    expect(() => parseInput('app-rollback', { service: 'server', revision: 5, verifyUrl: 'http://api:8080/healthz', expectVersion: '1.4.0' })).not.toThrow();
    expect(() => parseInput('app-rollback', { service: 'web', image: 'ghcr.io/org/api:v1.4.0' })).not.toThrow();
    expect(() => parseInput('db-restore', { database: 'main', backupId: '20261123T020000Z-1a2b3c4d', replace: true })).not.toThrow();
    expect(() => parseInput('db-vacuum', { database: 'main', full: true, tables: ['policies', 'public.tenants'] })).not.toThrow();
    expect(() => parseInput('db-backup', { database: 'main', requestedBy: 'schedule:daily-backup' })).not.toThrow();
  });

  it('a table name resolves to one table or is refused', () => {
    expect(splitTableName('policies')).toEqual(['policies']);
    expect(splitTableName('public.policies')).toEqual(['public', 'policies']);
    expect(splitTableName('"a.b"')).toEqual(['a.b']);
    expect(splitTableName('"we""ird".x; drop table y')).toEqual(['we"ird', 'x; drop table y']);
    for (const bad of ['a.b.c', '', 'a.', '.a', '"unterminated', 'a"b', '"a"b']) {
      expect(() => splitTableName(bad), bad).toThrow(/tables: .* is not a table name/);
    }
  });
});

describe('config-derived names are validated with the config', () => {
  const base = { services: [{ name: 'api', driver: { type: 'command', status: ['true'] } }] };
  const issues = (config: unknown): string => {
    try {
      parseConfig(JSON.stringify(config), 'runbooks.yaml');
    } catch (err) {
      return (err as Error).message;
    }
    return 'accepted';
  };

  it('refuses service, database, table and router names carrying shell or SQL', () => {
    expect(issues({ services: [{ name: '$(touch /tmp/pwned)', driver: { type: 'command', status: ['true'] } }] })).toMatch(/services\[0\]\.name: expected a lower-case name/);
    expect(issues({ ...base, databases: [{ name: 'x; drop', url: 'postgres://127.0.0.1/x' }] })).toMatch(/databases\[0\]\.name: expected a lower-case name/);
    expect(issues({ ...base, databaseOps: { backups: { repository: '/b', verifyTables: { main: ['x; drop table y'] } } } })).toMatch(
      /databaseOps\.backups\.verifyTables\.main\[0\]: expected a table name/,
    );
    expect(issues({ ...base, delivery: { routers: { 'a|b': { type: 'command', setWeight: ['true'] } } } })).toMatch(/delivery\.routers/);
  });
});

describe('neutralized: identifiers and values against a real PostgreSQL', () => {
  let pgs: PgServer;
  let appUrl: string;
  let dir: string;
  const pwned = () => path.join(dir, 'pwned');

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'runbook-injection-'));
    pgs = await startPostgres({ settings: { autovacuum: 'off' } });
    appUrl = await pgs.createDatabase('app');
  });

  afterAll(async () => {
    await pgs?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const config = () => ({
    environment: 'injection',
    services: [
      pgConfigService(pgs.url),
      {
        name: 'api',
        group: 'apps',
        // Shell syntax in a configured argv is an argument like any other: no shell ever reads it.
        driver: { type: 'command', restart: ['printf', '%s', `$(touch ${pwned()}); touch ${pwned()} | \`touch ${pwned()}\``], status: ['true'] },
        probes: [{ type: 'tcp', host: '127.0.0.1', port: pgs.port }],
      },
    ],
    databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
    approvals: { timeoutSeconds: 5, approvers: { default: ['alice', 'bob'] } },
    databaseOps: { vacuum: { deadTuplesThreshold: 1000, deadRatioThreshold: 0.5 } },
  });

  it('db-vacuum quotes hostile table names from the database and touches no other table', async () => {
    const hostile = ['x; drop table y', 'weird"name', "Robert'); DROP TABLE students;--", 'a.b'];
    await sql(appUrl, 'CREATE TABLE y (id int PRIMARY KEY); INSERT INTO y VALUES (1), (2)');
    await sql(appUrl, 'CREATE TABLE students (id int PRIMARY KEY); INSERT INTO students VALUES (1)');
    // A schema "a" with a table "b": a public table literally named "a.b" must never be taken for it.
    await sql(appUrl, 'CREATE SCHEMA a; CREATE TABLE a.b (id int PRIMARY KEY); INSERT INTO a.b SELECT generate_series(1, 100)');
    for (const t of hostile) {
      const q = `"${t.replace(/"/g, '""')}"`;
      await sql(appUrl, `CREATE TABLE public.${q} (id int PRIMARY KEY, pad text)`);
      await sql(appUrl, `INSERT INTO public.${q} SELECT g, repeat('x', 50) FROM generate_series(1, 4000) g`);
      await sql(appUrl, `DELETE FROM public.${q} WHERE id > 1000`);
    }
    await sql(appUrl, 'SELECT pg_stat_force_next_flush()');

    const loaded = await writeConfig(config());
    const r = await withWorker(loaded, ({ client, taskQueue }) =>
      client.workflow.execute('db-vacuum', { taskQueue, workflowId: `injection-vacuum-${Date.now()}`, args: [{ database: 'app', reindex: true, requestedBy: 'alice' }] }),
    ) as DbVacuumResult;

    expect([...r.vacuumed].sort()).toEqual(['"a.b"', '"weird""name"', "Robert'); DROP TABLE students;--", 'x; drop table y'].sort());
    expect([...r.reindexed].sort()).toEqual([...r.vacuumed].sort());
    const stats = await sql<{ schemaname: string; relname: string; n_dead_tup: string; last_vacuum: Date | null }>(
      appUrl,
      'SELECT schemaname, relname, n_dead_tup, last_vacuum FROM pg_stat_user_tables',
    );
    for (const t of hostile) {
      const s = stats.find((x) => x.schemaname === 'public' && x.relname === t);
      expect(s?.last_vacuum, t).not.toBeNull();
      expect(Number(s?.n_dead_tup), t).toBe(0);
    }
    expect(stats.find((x) => x.schemaname === 'a' && x.relname === 'b')?.last_vacuum).toBeNull();
    expect(await sql(appUrl, 'SELECT id FROM y ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
    expect(await sql(appUrl, 'SELECT id FROM students')).toEqual([{ id: 1 }]);
    expect((await sql(appUrl, 'SELECT count(*)::int AS n FROM a.b'))[0]).toEqual({ n: 100 });
  });

  it('config-rollback binds the flag as a parameter: SQL in it changes nothing, a flag named with SQL is found', async () => {
    const evilName = `o'brien"; DROP TABLE feature_flags; --`;
    await sql(appUrl, 'CREATE TABLE feature_flags (name text PRIMARY KEY, enabled boolean NOT NULL, updated_at timestamptz)');
    await sql(appUrl, 'INSERT INTO feature_flags (name, enabled) VALUES ($1, true), ($2, true)', ['new-feature', evilName]);
    const loaded = await writeConfig(config());
    await withWorker(loaded, async ({ client, taskQueue }) => {
      const refused = await client.workflow
        .execute('config-rollback', {
          taskQueue,
          workflowId: `injection-flag-${Date.now()}`,
          args: [{ kind: 'feature-flag', database: 'app', flag: "x' OR '1'='1'; DROP TABLE feature_flags; --", requestedBy: 'alice' }],
        })
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(WorkflowFailedError);
      expect(failureText(refused)).toMatch(/flag: no feature flag named "x' OR '1'='1'; DROP TABLE feature_flags; --"/);
      const r = (await client.workflow.execute('config-rollback', {
        taskQueue,
        workflowId: `injection-flag-ok-${Date.now()}`,
        args: [{ kind: 'feature-flag', database: 'app', flag: evilName, requestedBy: 'alice' }],
      })) as ConfigRollbackResult;
      expect(r.ok).toBe(true);
    });
    expect(await sql(appUrl, 'SELECT name, enabled FROM feature_flags ORDER BY name')).toEqual([
      { name: 'new-feature', enabled: true },
      { name: evilName, enabled: false },
    ]);
  });

  it('hostile service names and versions are refused before anything runs; configured argv never meets a shell', async () => {
    const loaded = await writeConfig(config());
    await withWorker(loaded, async ({ client, taskQueue }) => {
      for (const service of [`api; touch ${pwned()}`, `$(touch ${pwned()})`, `\`touch ${pwned()}\``, 'api|id', '../../bin/sh', 'a\u0000pi']) {
        const err = await client.workflow
          .execute('service-restart', { taskQueue, workflowId: `injection-restart-${Date.now()}-${Math.random()}`, args: [{ service, requestedBy: 'alice' }] })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(WorkflowFailedError);
        const cause = (err as WorkflowFailedError).cause;
        expect(cause).toBeInstanceOf(ApplicationFailure);
        expect((cause as ApplicationFailure).type).toBe('InvalidInput');
        expect(cause!.message).toMatch(/^invalid input for service-restart: service: expected name/);
      }
      const to = await client.workflow
        .execute('db-migration-rollback', {
          taskQueue,
          workflowId: `injection-to-${Date.now()}`,
          args: [{ database: 'app', to: '1; DROP TABLE schema_migrations', requestedBy: 'alice' }],
        })
        .catch((e: unknown) => e);
      expect(failureText(to)).toMatch(/to: expected a migration version \(digits\)/);

      const ok = (await client.workflow.execute('service-restart', { taskQueue, workflowId: `injection-restart-ok-${Date.now()}`, args: [{ service: 'api', requestedBy: 'alice' }] })) as ServiceRestartResult;
      // printf got the text as its argument and printed it back.
      expect(ok.action.output).toBe(`$(touch ${pwned()}); touch ${pwned()} | \`touch ${pwned()}\``);
    });
    expect(existsSync(pwned())).toBe(false);
  });
});

describe('neutralized: argv without a shell, files, Redis, PromQL', () => {
  let dir: string;
  let configDir: string;
  const pwned = () => path.join(dir, 'pwned');
  const logger = createLogger({ component: 'injection-test' }, 'error');

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'runbook-injection-'));
    configDir = path.join(dir, 'config');
    await mkdir(configDir);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('runCommand passes metacharacters as literal arguments', async () => {
    const args = [`$(touch ${pwned()})`, `\`touch ${pwned()}\``, `; touch ${pwned()}`, `| touch ${pwned()}`, `&& touch ${pwned()}`, `> ${pwned()}`, '*', '\n'];
    const r = await runCommand([process.execPath, '-e', 'process.stdout.write(JSON.stringify(process.argv.slice(1)))', ...args]);
    expect(JSON.parse(r.stdout)).toEqual(args);
    expect(existsSync(pwned())).toBe(false);
  });

  it('app-rollback hands an image to docker as one argument and writes it into YAML as one value', async () => {
    // A stand-in: the rollback's `docker pull` needs a registry, which this machine cannot reach.
    const docker = await createRecordingCli('docker');
    try {
      await writeFile(path.join(configDir, 'docker-compose.yml'), 'services: {}\n');
      const config = parseConfig(JSON.stringify({ services: [{ name: 'web', driver: { type: 'compose', file: 'docker-compose.yml' } }] }), path.join(configDir, 'runbooks.yaml'));
      const activities = createActivities({ config, configDir, env: { ...process.env, PATH: docker.path }, logger });
      // Past the validator (which refuses it): the activity itself must still keep it inert.
      const image = `ghcr.io/org/web:v1;touch ${pwned()}$(touch ${pwned()})\`touch ${pwned()}\`\n    command: ["touch", "${pwned()}"]`;
      await activities.rollbackAppRevision({ service: 'web', image });
      const calls = await docker.calls();
      expect(calls[0]).toEqual(['pull', image]);
      expect(calls[1]!.slice(-3)).toEqual(['up', '-d', 'web']);
      const override = parseYaml(await readFile(path.join(configDir, '.runbook', 'rollback', 'web.compose.yml'), 'utf8')) as unknown;
      expect(override).toEqual({ services: { web: { image } } });
      expect(existsSync(pwned())).toBe(false);

      await docker.clear();
      const asOption = await activities.rollbackAppRevision({ service: 'web', image: '--help' }).catch((e: unknown) => e);
      expect(asOption).toBeInstanceOf(ApplicationFailure);
      expect((asOption as ApplicationFailure).type).toBe('InvalidInput');
      expect((asOption as Error).message).toMatch(/^image: "--help" must start with a letter or digit/);
      expect(await docker.calls()).toEqual([]);
    } finally {
      await docker.remove();
    }
  });

  it('config-rollback never reads or writes a file outside the config directory', async () => {
    const config = parseConfig(JSON.stringify({ services: [{ name: 'api', driver: { type: 'command', status: ['true'] } }] }), path.join(configDir, 'runbooks.yaml'));
    const activities = createActivities({ config, configDir, env: process.env, logger });
    await writeFile(path.join(dir, 'secret.txt'), 'TOKEN=outside\n');
    await writeFile(path.join(dir, 'victim.env'), 'KEEP=1\n');
    await writeFile(path.join(configDir, 'app.env.backup'), 'APP=1\n');
    for (const [req, field] of [
      [{ envFile: 'app.env', backupFile: '../secret.txt' }, 'backupFile'],
      [{ envFile: '../victim.env', backupFile: 'app.env.backup' }, 'envFile'],
      [{ envFile: path.join(dir, 'victim.env'), backupFile: 'app.env.backup' }, 'envFile'],
      [{ envFile: 'app.env', backupFile: path.join(dir, 'secret.txt') }, 'backupFile'],
    ] as const) {
      const err = await activities.restoreEnvFile(req).catch((e: unknown) => e);
      expect(err, JSON.stringify(req)).toBeInstanceOf(ApplicationFailure);
      expect((err as ApplicationFailure).type).toBe('InvalidInput');
      expect((err as Error).message).toMatch(new RegExp(`^${field}: ".*" is outside the config file's directory`));
    }
    expect(await readFile(path.join(dir, 'victim.env'), 'utf8')).toBe('KEEP=1\n');
    expect(existsSync(path.join(configDir, 'app.env'))).toBe(false);
    // Inside the directory it works as before.
    expect((await activities.restoreEnvFile({ envFile: 'app.env' })).restored).toBe(true);
    expect(await readFile(path.join(configDir, 'app.env'), 'utf8')).toBe('APP=1\n');
  });

  it('a Redis pattern is one SCAN argument: CRLF and commands in it delete nothing else', async () => {
    const server = await startRedis();
    const redis = connectRedis(server.url, 'injection-test');
    try {
      await redis.connect();
      await redis.mset('policy:stale:1', 'a', 'policy:live:1', 'b', 'other', 'c', 'x\r\nFLUSHALL', 'd');
      expect(await unlinkByPattern(redis, 'policy:stale:*\r\nFLUSHALL\r\n', () => undefined)).toBe(0);
      expect(await unlinkByPattern(redis, '*" ; FLUSHALL ; "', () => undefined)).toBe(0);
      expect(await redis.dbsize()).toBe(4);
      expect(await unlinkByPattern(redis, 'x\r\nFLUSHALL', () => undefined)).toBe(1);
      expect(await unlinkByPattern(redis, 'policy:stale:*', () => undefined)).toBe(1);
      expect((await redis.keys('*')).sort()).toEqual(['other', 'policy:live:1']);
    } finally {
      redis.disconnect();
      await server.stop();
    }
  });

  it('PromQL text reaches Prometheus as one URL-encoded query parameter', async () => {
    const seen: string[] = [];
    const server: Server = createServer((req, res) => {
      seen.push(req.url ?? '');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ status: 'success', data: { resultType: 'scalar', result: [0, '0.25'] } }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const config = parseConfig(
        JSON.stringify({ services: [{ name: 'api', driver: { type: 'command', status: ['true'] } }], incident: { prometheusUrl: `http://127.0.0.1:${port}` } }),
        path.join(configDir, 'runbooks.yaml'),
      );
      const activities = createActivities({ config, configDir, env: process.env, logger });
      const query = 'sum(rate(x[5m]))&query=up#frag $(id) `id` ../../admin?x=1\nDROP';
      expect(await activities.promQuery({ query })).toBe(0.25);
      expect(seen).toHaveLength(1);
      const url = new URL(seen[0]!, 'http://x');
      expect(url.pathname).toBe('/api/v1/query');
      expect(url.searchParams.getAll('query')).toEqual([query]);
      expect([...url.searchParams.keys()]).toEqual(['query']);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
