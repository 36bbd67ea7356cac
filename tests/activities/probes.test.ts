import net from 'node:net';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProbeConfigError, runProbe } from '../../activities/probes/index.js';
import { probeSchema } from '../../common/config-schema.js';
import { startGrpcHealthServer, type GrpcHealthServer } from '../../demo/grpc-health.js';
import { startDemoService, type DemoService } from '../../demo/service.js';
import { MissingEnvError } from '../../lib/env.js';
import {
  freePort,
  startNats,
  startPostgres,
  startRedis,
  type NatsServer,
  type PgServer,
  type RedisServer,
} from '../fixtures/servers.js';

let pg: PgServer;
let redis: RedisServer;
let redisAuth: RedisServer;
let natsJs: NatsServer;
let natsPlain: NatsServer;
let grpc: GrpcHealthServer;
let demo: DemoService;
/** Accepts connections and never answers: a hung service. */
let silent: net.Server;
let silentPort: number;
let deadPort: number;

const REDIS_PASSWORD = 'probe-secret-42';

beforeAll(async () => {
  [pg, redis, redisAuth, natsJs, natsPlain] = await Promise.all([
    startPostgres(),
    startRedis({ maxmemory: '64mb' }),
    startRedis({ password: REDIS_PASSWORD }),
    startNats({ jetstream: true }),
    startNats({ jetstream: false }),
  ]);
  grpc = await startGrpcHealthServer({ port: await freePort() });
  demo = await startDemoService({ httpPort: await freePort(), grpcPort: await freePort() });
  silent = net.createServer(() => undefined);
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  silentPort = (silent.address() as net.AddressInfo).port;
  deadPort = await freePort();
});

afterAll(async () => {
  silent?.close();
  await Promise.allSettled([pg?.stop(), redis?.stop(), redisAuth?.stop(), natsJs?.stop(), natsPlain?.stop(), grpc?.stop(), demo?.stop()]);
});

const field = 'services[2].probes[0]';

/** Parsed through the real config schema, so defaults are the ones a user gets. */
function probe(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = {}, signal?: AbortSignal) {
  return runProbe(probeSchema.parse(raw), { env, field, signal });
}

async function setDemoState(state: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${demo.httpUrl}/admin/state`, { method: 'POST', body: JSON.stringify(state) });
  expect(res.status).toBe(200);
}

describe('postgres probe', () => {
  it('is healthy with the server version, and measures latency', async () => {
    const r = await probe({ type: 'postgres', url: pg.url });
    expect(r).toMatchObject({ type: 'postgres', status: 'healthy', target: pg.url });
    expect(r.detail).toMatch(/accepting connections \(PostgreSQL 1\d\.\d+/);
    expect(r.latencyMs).toBeGreaterThan(0);
    expect(r.metrics?.latencyMs).toBeGreaterThan(0);
  });

  it('is unhealthy, not an exception, when nothing listens on the port', async () => {
    const r = await probe({ type: 'postgres', url: `postgres://postgres@127.0.0.1:${deadPort}/postgres` });
    expect(r).toMatchObject({ status: 'unhealthy', detail: 'connection refused' });
  });

  it('says which database is missing', async () => {
    const r = await probe({ type: 'postgres', url: `postgres://postgres@127.0.0.1:${pg.port}/no_such_db` });
    expect(r).toMatchObject({ status: 'unhealthy', detail: 'database "no_such_db" does not exist' });
  });

  it('shows no password in the target or anywhere in the result', async () => {
    // Trust auth: the password is accepted and ignored, so the probe is healthy.
    const r = await probe({ type: 'postgres', url: '${PG_URL}' }, { PG_URL: `postgres://postgres:Sup3rSecret@127.0.0.1:${pg.port}/postgres` });
    expect(r.status).toBe('healthy');
    expect(r.target).toBe('${PG_URL}');
    const literal = await runProbe(
      { type: 'postgres', url: `postgres://postgres:Sup3rSecret@127.0.0.1:${deadPort}/postgres`, timeoutMs: 2000 },
      { env: {}, field },
    );
    expect(literal.target).toBe(`postgres://postgres:***@127.0.0.1:${deadPort}/postgres`);
    expect(JSON.stringify([r, literal])).not.toContain('Sup3rSecret');
  });

  it('throws a config error naming the variable and the field when an env reference is unset', async () => {
    const err = await probe({ type: 'postgres', url: '${ORDERS_DB_URL}' }, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingEnvError);
    expect((err as MissingEnvError).variable).toBe('ORDERS_DB_URL');
    expect((err as Error).message).toMatch(/^services\[2\]\.probes\[0\]\.url: environment variable ORDERS_DB_URL is not set/);
  });
});

describe('redis probe', () => {
  it('answers PONG and reports memory against maxmemory', async () => {
    const r = await probe({ type: 'redis', url: redis.url });
    expect(r.status).toBe('healthy');
    expect(r.detail).toMatch(/^PONG; used_memory [\d.]+[KM] of maxmemory 64\.00M \([\d.]+%\)$/);
    const m = r.metrics!;
    expect(m.maxMemoryBytes).toBe(64 * 1024 * 1024);
    expect(m.usedMemoryBytes).toBeGreaterThan(0);
    expect(m.memoryPercent).toBeCloseTo((m.usedMemoryBytes! / m.maxMemoryBytes!) * 100, 1);
  });

  it('sees memory grow as data is written', async () => {
    const before = (await probe({ type: 'redis', url: redis.url })).metrics!.memoryPercent!;
    const client = new Redis(redis.url);
    try {
      await client.set('probe-test:big', 'x'.repeat(16 * 1024 * 1024));
      const after = (await probe({ type: 'redis', url: redis.url })).metrics!.memoryPercent!;
      expect(after - before).toBeGreaterThan(20); // 16 MiB of 64 MiB
    } finally {
      await client.del('probe-test:big');
      client.disconnect();
    }
  });

  it('reports no memoryPercent when redis has no maxmemory', async () => {
    const r = await probe({ type: 'redis', url: '${REDIS_URL}' }, { REDIS_URL: redisAuth.url });
    expect(r.status).toBe('healthy');
    expect(r.detail).toMatch(/no maxmemory limit/);
    expect(r.metrics?.maxMemoryBytes).toBe(0);
    expect(r.metrics).not.toHaveProperty('memoryPercent');
  });

  it('authenticates with a password from the environment and never shows it', async () => {
    const ok = await probe({ type: 'redis', url: `redis://:\${REDIS_PASSWORD}@127.0.0.1:${redisAuth.port}` }, { REDIS_PASSWORD });
    expect(ok).toMatchObject({ status: 'healthy', target: `redis://:***@127.0.0.1:${redisAuth.port}` });
    const noAuth = await probe({ type: 'redis', url: `redis://127.0.0.1:${redisAuth.port}` });
    expect(noAuth).toMatchObject({ status: 'unhealthy', detail: expect.stringMatching(/NOAUTH/) });
    const wrong = await runProbe(
      { type: 'redis', url: `redis://:wrong-password-1@127.0.0.1:${redisAuth.port}`, timeoutMs: 2000 },
      { env: {}, field },
    );
    expect(wrong).toMatchObject({ status: 'unhealthy', target: `redis://:***@127.0.0.1:${redisAuth.port}` });
    expect(wrong.detail).toMatch(/WRONGPASS|invalid/i);
    expect(JSON.stringify([ok, noAuth, wrong])).not.toMatch(new RegExp(`${REDIS_PASSWORD}|wrong-password-1`));
  });

  it('is unhealthy once the server is down', async () => {
    const doomed = await startRedis();
    expect((await probe({ type: 'redis', url: doomed.url })).status).toBe('healthy');
    await doomed.stop();
    const r = await probe({ type: 'redis', url: doomed.url });
    expect(r).toMatchObject({ status: 'unhealthy', detail: 'connection refused' });
  });
});

describe('nats probe', () => {
  it('reads JetStream streams, consumers and the largest consumer backlog', async () => {
    const nc = await natsConnect({ servers: natsJs.url });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'ORDERS', subjects: ['orders.>'] });
      await jsm.streams.add({ name: 'AUDIT', subjects: ['audit.>'] });
      await jsm.consumers.add('ORDERS', { durable_name: 'billing', ack_policy: AckPolicy.Explicit });
      await jsm.consumers.add('AUDIT', { durable_name: 'archiver', ack_policy: AckPolicy.Explicit });
      const js = jetstream(nc);
      for (let i = 0; i < 7; i++) await js.publish(`orders.created.${i}`, `order ${i}`);
      for (let i = 0; i < 3; i++) await js.publish('audit.login', `login ${i}`);
    } finally {
      await nc.close();
    }
    const r = await probe({ type: 'nats', servers: natsJs.url, monitorUrl: natsJs.monitorUrl });
    expect(r.status).toBe('healthy');
    expect(r.metrics).toMatchObject({ streams: 2, consumers: 2, maxConsumerPending: 7 });
    expect(r.metrics!.storageBytes).toBeGreaterThan(0);
    expect(r.detail).toMatch(/JetStream 2 streams, 2 consumers, .* max consumer pending 7; monitor \/healthz ok/);
  });

  it('is unhealthy when JetStream is expected but the server runs without it', async () => {
    const r = await probe({ type: 'nats', servers: natsPlain.url });
    expect(r).toMatchObject({ status: 'unhealthy', detail: expect.stringMatching(/JetStream is not enabled on the server/) });
  });

  it('is healthy without JetStream when the probe does not ask for it', async () => {
    const r = await probe({ type: 'nats', servers: natsPlain.url, monitorUrl: natsPlain.monitorUrl, jetstream: false });
    expect(r).toMatchObject({ status: 'healthy', detail: expect.stringMatching(/^connected to nats-server [\d.]+; monitor \/healthz ok$/) });
    expect(r.metrics).toBeUndefined();
  });

  it('is unhealthy when the monitor endpoint does not answer 200', async () => {
    const dead = await probe({ type: 'nats', servers: natsJs.url, monitorUrl: `http://127.0.0.1:${deadPort}` });
    expect(dead).toMatchObject({ status: 'unhealthy', detail: expect.stringMatching(/monitor \/healthz: connection refused$/) });
    // The demo API's /healthz answers 503 while unhealthy: a stand-in for a failing monitor.
    await setDemoState({ healthy: false });
    try {
      const r = await probe({ type: 'nats', servers: natsJs.url, monitorUrl: demo.httpUrl });
      expect(r).toMatchObject({ status: 'unhealthy', detail: expect.stringMatching(/monitor \/healthz HTTP 503/) });
    } finally {
      await setDemoState({ healthy: true });
    }
  });

  it('is unhealthy when the server is not there', async () => {
    const r = await probe({ type: 'nats', servers: `nats://127.0.0.1:${deadPort}` });
    expect(r).toMatchObject({ status: 'unhealthy', detail: 'connection refused' });
  });
});

describe('grpc probe', () => {
  it('is healthy only while the server says SERVING', async () => {
    const address = `127.0.0.1:${grpc.port}`;
    expect(await probe({ type: 'grpc', address })).toMatchObject({ status: 'healthy', detail: 'SERVING (server)', target: address });
    grpc.setStatus('NOT_SERVING');
    try {
      expect(await probe({ type: 'grpc', address })).toMatchObject({ status: 'unhealthy', detail: 'NOT_SERVING (server)' });
    } finally {
      grpc.setStatus('SERVING');
    }
  });

  it('names an unknown service', async () => {
    const r = await probe({ type: 'grpc', address: `127.0.0.1:${grpc.port}`, service: 'fulcrum.Api' });
    expect(r).toMatchObject({ status: 'unhealthy', detail: expect.stringMatching(/NOT_FOUND.*"fulcrum\.Api"/) });
  });

  it('is unhealthy when nothing listens', async () => {
    const r = await probe({ type: 'grpc', address: `127.0.0.1:${deadPort}` });
    expect(r).toMatchObject({ status: 'unhealthy', detail: 'connection refused (UNAVAILABLE)' });
  });

});

describe('http probe', () => {
  it('is healthy when the status and body match', async () => {
    const r = await probe({ type: 'http', url: `${demo.httpUrl}/healthz`, bodyMatch: 'healthy' });
    expect(r).toMatchObject({ status: 'healthy', detail: 'HTTP 200, body matches "healthy"' });
    const re = await probe({ type: 'http', url: `${demo.httpUrl}/healthz`, bodyMatch: '/"STATUS":\\s*"healthy"/i' });
    expect(re.status).toBe('healthy');
  });

  it('is unhealthy on a status other than the expected one', async () => {
    await setDemoState({ healthy: false });
    try {
      const r = await probe({ type: 'http', url: `${demo.httpUrl}/healthz` });
      expect(r).toMatchObject({ status: 'unhealthy', detail: expect.stringMatching(/^HTTP 503 \(expected 200\): .*unhealthy/) });
    } finally {
      await setDemoState({ healthy: true });
    }
    const other = await probe({ type: 'http', url: `${demo.httpUrl}/healthz`, expectStatus: 204 });
    expect(other).toMatchObject({ status: 'unhealthy', detail: expect.stringMatching(/^HTTP 200 \(expected 204\)/) });
  });

  it('is unhealthy when the body does not match', async () => {
    const r = await probe({ type: 'http', url: `${demo.httpUrl}/healthz`, bodyMatch: '/"status":"ok"/' });
    expect(r).toMatchObject({ status: 'unhealthy', detail: expect.stringMatching(/^HTTP 200 but the body does not match/) });
    const plain = await probe({ type: 'http', url: `${demo.httpUrl}/`, bodyMatch: 'maintenance' });
    expect(plain.status).toBe('unhealthy');
  });

  it('is unhealthy with "connection refused" when nothing listens', async () => {
    const r = await probe({ type: 'http', url: `http://127.0.0.1:${deadPort}/healthz` });
    expect(r).toMatchObject({ status: 'unhealthy', detail: 'connection refused' });
  });

  it('honours the timeout against a server that never answers', async () => {
    const r = await probe({ type: 'http', url: `http://127.0.0.1:${silentPort}/`, timeoutMs: 300 });
    expect(r).toMatchObject({ status: 'unhealthy', detail: 'timed out after 300ms' });
    expect(r.latencyMs).toBeGreaterThanOrEqual(290);
    expect(r.latencyMs).toBeLessThan(2000);
  });

  it('rejects at once when the caller cancels', async () => {
    const ac = new AbortController();
    const started = Date.now();
    const pending = probe({ type: 'http', url: `http://127.0.0.1:${silentPort}/`, timeoutMs: 20_000 }, {}, ac.signal);
    setTimeout(() => ac.abort(new Error('activity cancelled')), 100);
    await expect(pending).rejects.toThrow('activity cancelled');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('refuses an invalid bodyMatch regex as a config error naming the field', async () => {
    const err = await probe({ type: 'http', url: `${demo.httpUrl}/healthz`, bodyMatch: '/(unclosed/' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProbeConfigError);
    expect((err as Error).message).toMatch(/^services\[2\]\.probes\[0\]\.bodyMatch: invalid regular expression/);
  });

  it('never shows a password from the URL', async () => {
    const r = await probe({ type: 'http', url: '${HEALTH_URL}' }, { HEALTH_URL: `http://ops:TopS3cret@127.0.0.1:${deadPort}/healthz` });
    expect(r.target).toBe('${HEALTH_URL}');
    expect(JSON.stringify(r)).not.toContain('TopS3cret');
  });
});

describe('timeouts', () => {
  const hung = (): Record<string, Record<string, unknown>> => ({
    postgres: { type: 'postgres', url: `postgres://postgres@127.0.0.1:${silentPort}/postgres` },
    redis: { type: 'redis', url: `redis://127.0.0.1:${silentPort}` },
    nats: { type: 'nats', servers: `nats://127.0.0.1:${silentPort}` },
    grpc: { type: 'grpc', address: `127.0.0.1:${silentPort}` },
    http: { type: 'http', url: `http://127.0.0.1:${silentPort}/healthz` },
  });
  it.each(['postgres', 'redis', 'nats', 'grpc', 'http'])('the %s probe gives up after timeoutMs on a server that never answers', async (type) => {
    const r = await probe({ ...hung()[type], timeoutMs: 400 });
    expect(r.status).toBe('unhealthy');
    expect(r.detail).toMatch(/timed out|timeout/i);
    expect(r.latencyMs).toBeGreaterThanOrEqual(100);
    expect(r.latencyMs).toBeLessThan(1500);
  });
});

describe('tcp probe', () => {
  it('is healthy when the port accepts connections', async () => {
    const r = await probe({ type: 'tcp', port: redis.port });
    expect(r).toMatchObject({ status: 'healthy', target: `127.0.0.1:${redis.port}` });
  });

  it('is unhealthy on a closed port', async () => {
    const r = await probe({ type: 'tcp', port: deadPort });
    expect(r).toMatchObject({ status: 'unhealthy', detail: 'connection refused' });
  });
});
