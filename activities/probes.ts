import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Client as GrpcClient, credentials, Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { ProbeConfig } from '../common/config-schema.js';
import type { ProbeResult } from '../common/types.js';
import { envRefs, resolveEnvRefs } from '../lib/env.js';
import { redactSecrets, redactUrl } from '../lib/redact.js';
import { healthServiceDefinition, servingStatusName, type HealthCheckRequest } from './proto/health.js';

/**
 * Health probes, one per probe type. An unreachable or unhealthy target is a result
 * ("unhealthy" with a detail a person can act on), never an exception: only a config
 * the probe cannot run with throws. Every client is closed, whatever happens.
 */

export type ProbeOutcome = Omit<ProbeResult, 'service' | 'index'>;

export interface ProbeOptions {
  env: NodeJS.ProcessEnv;
  /** The probe's config path, for error messages, e.g. `services[2].probes[0]`. */
  field: string;
  /** Cancels the probe (the activity was cancelled): runProbe then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** A probe config that cannot be run as written (bad bodyMatch regex, ...). */
export class ProbeConfigError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'ProbeConfigError';
  }
}

interface Reading {
  healthy: boolean;
  detail: string;
  metrics?: Record<string, number>;
}

type Probe<T extends ProbeConfig['type']> = (cfg: Extract<ProbeConfig, { type: T }>, signal: AbortSignal, field: string) => Promise<Reading>;

/** Body bytes read at most for an HTTP probe: enough for any health page, bounded for a wrong URL. */
const MAX_BODY_BYTES = 1024 * 1024;
/** JetStream lag is summed over at most this many streams, so a huge account can't stall the probe. */
const MAX_STREAMS = 100;
/** A close that hangs must not hold a probe result back. */
const CLOSE_TIMEOUT_MS = 2000;

export async function runProbe(cfg: ProbeConfig, opts: ProbeOptions): Promise<ProbeOutcome> {
  opts.signal?.throwIfAborted();
  const target = probeTarget(cfg);
  const resolved = resolveProbe(cfg, opts.env, opts.field);
  const secrets = secretsOf(cfg, resolved, opts.env);

  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new ProbeTimeoutError(cfg.timeoutMs)), cfg.timeoutMs);
  const onCancel = () => deadline.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onCancel, { once: true });
  const started = performance.now();
  const outcome = (r: Reading): ProbeOutcome => ({
    type: cfg.type,
    target,
    status: r.healthy ? 'healthy' : 'unhealthy',
    latencyMs: round(performance.now() - started),
    detail: redactSecrets(r.detail, secrets),
    ...(r.metrics ? { metrics: r.metrics } : {}),
  });
  try {
    return outcome(await untilAborted(probeByType(resolved, deadline.signal, opts.field), deadline.signal));
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason ?? err;
    if (err instanceof ProbeConfigError) throw err;
    return outcome({ healthy: false, detail: deadline.signal.aborted ? `timed out after ${cfg.timeoutMs}ms` : describeError(err) });
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onCancel);
  }
}

function probeByType(cfg: ProbeConfig, signal: AbortSignal, field: string): Promise<Reading> {
  switch (cfg.type) {
    case 'http':
      return probeHttp(cfg, signal, field);
    case 'grpc':
      return probeGrpc(cfg, signal, field);
    case 'postgres':
      return probePostgres(cfg, signal, field);
    case 'redis':
      return probeRedis(cfg, signal, field);
    case 'nats':
      return probeNats(cfg, signal, field);
    case 'tcp':
      return probeTcp(cfg, signal, field);
  }
}

/** Where a probe points, from the config as written: env references stay references, passwords are masked. */
export function probeTarget(cfg: ProbeConfig): string {
  switch (cfg.type) {
    case 'http':
    case 'postgres':
    case 'redis':
      return redactUrl(cfg.url);
    case 'nats':
      return cfg.servers.split(',').map((s) => redactUrl(s.trim())).join(',');
    case 'grpc':
      return cfg.address;
    case 'tcp':
      return `${cfg.host}:${cfg.port}`;
  }
}

function resolveProbe(cfg: ProbeConfig, env: NodeJS.ProcessEnv, field: string): ProbeConfig {
  const r = (value: string, key: string) => resolveEnvRefs(value, env, `${field}.${key}`);
  switch (cfg.type) {
    case 'http':
    case 'postgres':
    case 'redis':
      return { ...cfg, url: r(cfg.url, 'url') };
    case 'nats':
      return { ...cfg, servers: r(cfg.servers, 'servers'), ...(cfg.monitorUrl ? { monitorUrl: r(cfg.monitorUrl, 'monitorUrl') } : {}) };
    case 'grpc':
      return { ...cfg, address: r(cfg.address, 'address') };
    case 'tcp':
      return { ...cfg, host: r(cfg.host, 'host') };
  }
}

/** Values that must never reach a detail: referenced env values and URL passwords. */
function secretsOf(raw: ProbeConfig, resolved: ProbeConfig, env: NodeJS.ProcessEnv): string[] {
  const texts = Object.values(raw).filter((v): v is string => typeof v === 'string');
  const fromEnv = texts.flatMap(envRefs).map((name) => env[name] ?? '');
  const passwords = Object.values(resolved)
    .filter((v): v is string => typeof v === 'string')
    .flatMap((v) => v.split(','))
    .map((v) => /^[a-z][a-z0-9+.-]*:\/\/[^@/\s]*:([^@/\s]+)@/i.exec(v.trim())?.[1] ?? '')
    .flatMap((p) => [p, safeDecode(p)]);
  return [...fromEnv, ...passwords].filter((s) => s.length >= 4);
}

// ---------------------------------------------------------------- http

const probeHttp: Probe<'http'> = async (cfg, signal, field) => {
  const matcher = cfg.bodyMatch === undefined ? undefined : bodyMatcher(cfg.bodyMatch, `${field}.bodyMatch`);
  const expectRedirect = cfg.expectStatus >= 300 && cfg.expectStatus < 400;
  const res = await fetch(cfg.url, {
    signal,
    redirect: expectRedirect ? 'manual' : 'follow',
    headers: { 'user-agent': 'durable-runbooks-probe' },
  });
  const body = await readCapped(res, MAX_BODY_BYTES);
  if (res.status !== cfg.expectStatus) {
    return { healthy: false, detail: `HTTP ${res.status} (expected ${cfg.expectStatus})${snippet(body)}` };
  }
  if (matcher && !matcher.test(body)) {
    return { healthy: false, detail: `HTTP ${res.status} but the body does not match ${JSON.stringify(cfg.bodyMatch)}${snippet(body)}` };
  }
  return { healthy: true, detail: `HTTP ${res.status}${matcher ? `, body matches ${JSON.stringify(cfg.bodyMatch)}` : ''}` };
};

/** `/regex/flags` is a regular expression; anything else a plain substring. */
function bodyMatcher(spec: string, field: string): { test(body: string): boolean } {
  const m = /^\/(.+)\/([a-z]*)$/s.exec(spec);
  if (!m) return { test: (body) => body.includes(spec) };
  try {
    const re = new RegExp(m[1]!, m[2]!.replace(/[gy]/g, ''));
    return { test: (body) => re.test(body) };
  } catch (err) {
    throw new ProbeConfigError(field, `invalid regular expression ${spec}: ${(err as Error).message}`);
  }
}

async function readCapped(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const decoder = new TextDecoder();
  const reader = res.body.getReader();
  let text = '';
  let bytes = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      text += decoder.decode(value, { stream: true });
      if (bytes >= max) break;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return text + decoder.decode();
}

function snippet(body: string): string {
  const s = body.replace(/\s+/g, ' ').trim();
  if (!s) return '';
  return `: ${s.length > 120 ? `${s.slice(0, 120)}...` : s}`;
}

// ---------------------------------------------------------------- grpc

const probeGrpc: Probe<'grpc'> = async (cfg, signal) => {
  const check = healthServiceDefinition().Check!;
  const client = new GrpcClient(cfg.address, cfg.tls ? credentials.createSsl() : credentials.createInsecure());
  try {
    const response = await new Promise<unknown>((resolve, reject) => {
      const call = client.makeUnaryRequest<HealthCheckRequest, unknown>(
        check.path,
        check.requestSerialize,
        check.responseDeserialize,
        { service: cfg.service },
        new Metadata(),
        { deadline: Date.now() + cfg.timeoutMs },
        (err, value) => (err ? reject(err) : resolve(value)),
      );
      signal.addEventListener('abort', () => call.cancel(), { once: true });
    });
    const status = servingStatusName((response as { status?: unknown } | undefined)?.status);
    const what = cfg.service ? `service "${cfg.service}"` : 'server';
    return { healthy: status === 'SERVING', detail: `${status} (${what})` };
  } catch (err) {
    if (isServiceError(err)) return { healthy: false, detail: describeGrpcError(err, cfg) };
    throw err;
  } finally {
    client.close();
  }
};

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && 'metadata' in err;
}

function describeGrpcError(err: ServiceError, cfg: Extract<ProbeConfig, { type: 'grpc' }>): string {
  const name = GrpcStatus[err.code] ?? String(err.code);
  switch (err.code) {
    case GrpcStatus.UNAVAILABLE:
      if (/ECONNREFUSED/.test(err.details)) return `connection refused (${name})`;
      break;
    case GrpcStatus.DEADLINE_EXCEEDED:
      return `timed out after ${cfg.timeoutMs}ms (${name})`;
    case GrpcStatus.UNIMPLEMENTED:
      return `${name}: the server does not implement grpc.health.v1.Health`;
    case GrpcStatus.NOT_FOUND:
      return `${name}: the server does not know service "${cfg.service}"`;
  }
  // grpc-js appends a timestamp and an empty resolution note: noise in a health table.
  return `${name}: ${err.details.replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/g, '').replace(/\.?\s*Resolution note:\s*$/, '')}`;
}

// ---------------------------------------------------------------- postgres

const probePostgres: Probe<'postgres'> = async (cfg, signal) => {
  const started = performance.now();
  const client = new pg.Client({
    connectionString: cfg.url,
    connectionTimeoutMillis: cfg.timeoutMs,
    query_timeout: cfg.timeoutMs,
    application_name: 'runbook-probe',
  });
  // A dropped connection is reported by the failing call; the event must not crash the worker.
  client.on('error', () => undefined);
  const close = () => closeQuietly(() => client.end());
  signal.addEventListener('abort', close, { once: true });
  try {
    await client.connect();
    const connected = performance.now();
    const { rows } = await client.query<{ version: string }>("SELECT 1 AS ok, current_setting('server_version') AS version");
    const queryMs = round(performance.now() - connected);
    return {
      healthy: true,
      detail: `accepting connections (PostgreSQL ${rows[0]?.version ?? 'unknown version'}), query ${queryMs}ms`,
      // The runbook's "Slow Queries" threshold is about the query, not the connection set-up.
      metrics: { latencyMs: round(performance.now() - started), connectMs: round(connected - started), queryMs },
    };
  } finally {
    signal.removeEventListener('abort', close);
    await close();
  }
};

// ---------------------------------------------------------------- redis

const probeRedis: Probe<'redis'> = async (cfg, signal) => {
  const redis = new Redis(cfg.url, {
    lazyConnect: true,
    // One attempt per probe: the caller's poll loop is the retry.
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    reconnectOnError: () => false,
    enableOfflineQueue: false,
    connectTimeout: cfg.timeoutMs,
    commandTimeout: cfg.timeoutMs,
    connectionName: 'runbook-probe',
  });
  // ioredis rejects with a bare "Connection is closed."; the reason arrives as an 'error' event.
  let lastError: Error | undefined;
  redis.on('error', (err: Error) => {
    lastError = err;
  });
  const close = () => redis.disconnect();
  signal.addEventListener('abort', close, { once: true });
  try {
    const pong = await redis
      .connect()
      .then(() => redis.ping())
      .catch((err: unknown) => {
        throw lastError && err instanceof Error && /Connection is closed/.test(err.message) ? lastError : err;
      });
    if (pong !== 'PONG') return { healthy: false, detail: `PING answered ${JSON.stringify(pong)}, expected PONG` };
    const info = parseInfo(await redis.info('memory'));
    const used = Number(info.used_memory ?? NaN);
    const max = Number(info.maxmemory ?? 0);
    const metrics: Record<string, number> = {};
    if (Number.isFinite(used)) metrics.usedMemoryBytes = used;
    if (Number.isFinite(max)) metrics.maxMemoryBytes = max;
    let detail = `PONG; used_memory ${info.used_memory_human ?? '?'}`;
    if (max > 0 && Number.isFinite(used)) {
      metrics.memoryPercent = round((used / max) * 100);
      detail += ` of maxmemory ${info.maxmemory_human ?? max} (${metrics.memoryPercent.toFixed(1)}%)`;
    } else {
      detail += ' (no maxmemory limit)';
    }
    return { healthy: true, detail, metrics };
  } finally {
    signal.removeEventListener('abort', close);
    close();
  }
};

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

// ---------------------------------------------------------------- nats

const probeNats: Probe<'nats'> = async (cfg, signal) => {
  const { servers, auth } = natsServers(cfg.servers);
  let nc: NatsConnection | undefined;
  const close = () => (nc ? closeQuietly(() => nc!.close()) : Promise.resolve());
  signal.addEventListener('abort', close, { once: true });
  try {
    nc = await natsConnect({
      servers,
      ...auth,
      timeout: cfg.timeoutMs,
      reconnect: false,
      maxReconnectAttempts: 0,
      name: 'runbook-probe',
    });
    // The connection may have completed after the deadline: close it rather than leak it.
    signal.throwIfAborted();
    const parts = [`connected to nats-server ${nc.info?.version ?? '?'}`];
    const metrics: Record<string, number> = {};
    let healthy = true;

    if (cfg.jetstream) {
      const js = await jetStreamReading(nc, cfg.timeoutMs);
      if ('error' in js) {
        healthy = false;
        parts.push(js.error);
      } else {
        Object.assign(metrics, js.metrics);
        parts.push(
          `JetStream ${js.metrics.streams} streams, ${js.metrics.consumers} consumers, ${formatBytes(js.metrics.storageBytes)} stored, max consumer pending ${js.metrics.maxConsumerPending}`,
        );
      }
    }

    if (cfg.monitorUrl) {
      const monitor = await natsHealthz(cfg.monitorUrl, signal);
      if (!monitor.ok) healthy = false;
      parts.push(monitor.detail);
    }
    return { healthy, detail: parts.join('; '), ...(Object.keys(metrics).length > 0 ? { metrics } : {}) };
  } finally {
    signal.removeEventListener('abort', close);
    await close();
  }
};

/** nats.js does not take credentials from server URLs, so they are lifted out into connect options. */
function natsServers(spec: string): { servers: string[]; auth: { user?: string; pass?: string; token?: string } } {
  const auth: { user?: string; pass?: string; token?: string } = {};
  const servers = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const m = /^([a-z][a-z0-9+.-]*:\/\/)([^@/\s]*)@(.*)$/i.exec(s);
      if (!m) return s;
      const [user, ...rest] = m[2]!.split(':');
      if (rest.length > 0) {
        auth.user = safeDecode(user!);
        auth.pass = safeDecode(rest.join(':'));
      } else if (user) {
        auth.token = safeDecode(user);
      }
      return `${m[1]}${m[3]}`;
    });
  return { servers, auth };
}

interface JetStreamMetrics {
  streams: number;
  consumers: number;
  storageBytes: number;
  memoryBytes: number;
  maxConsumerPending: number;
}

async function jetStreamReading(nc: NatsConnection, timeoutMs: number): Promise<{ metrics: JetStreamMetrics } | { error: string }> {
  let info;
  const jsm = await jetstreamManager(nc, { timeout: timeoutMs, checkAPI: false });
  try {
    info = await jsm.getAccountInfo();
  } catch (err) {
    const msg = describeError(err);
    return {
      error: /not enabled/i.test(msg)
        ? 'JetStream is not enabled on the server'
        : /no responders|503/i.test(msg)
          ? `JetStream is not available (${msg})`
          : `JetStream account info failed: ${msg}`,
    };
  }
  let maxConsumerPending = 0;
  let seen = 0;
  for await (const stream of jsm.streams.list()) {
    if (++seen > MAX_STREAMS) break;
    for await (const consumer of jsm.consumers.list(stream.config.name)) {
      maxConsumerPending = Math.max(maxConsumerPending, consumer.num_pending);
    }
  }
  return {
    metrics: {
      streams: info.streams,
      consumers: info.consumers,
      storageBytes: info.storage,
      memoryBytes: info.memory,
      maxConsumerPending,
    },
  };
}

async function natsHealthz(monitorUrl: string, signal: AbortSignal): Promise<{ ok: boolean; detail: string }> {
  const url = `${monitorUrl.replace(/\/+$/, '')}/healthz`;
  try {
    const res = await fetch(url, { signal });
    const body = await readCapped(res, 64 * 1024);
    return res.status === 200
      ? { ok: true, detail: 'monitor /healthz ok' }
      : { ok: false, detail: `monitor /healthz HTTP ${res.status}${snippet(body)}` };
  } catch (err) {
    if (signal.aborted) throw err;
    return { ok: false, detail: `monitor /healthz: ${describeError(err)}` };
  }
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

// ---------------------------------------------------------------- tcp

const probeTcp: Probe<'tcp'> = (cfg, signal) =>
  new Promise<Reading>((resolve, reject) => {
    const socket = net.connect({ host: cfg.host, port: cfg.port });
    const onAbort = () => socket.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    const finish = (fn: () => void) => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      fn();
    };
    socket.once('connect', () => finish(() => resolve({ healthy: true, detail: `connected to ${cfg.host}:${cfg.port}` })));
    socket.once('error', (err) => finish(() => reject(err)));
  });

// ---------------------------------------------------------------- shared

class ProbeTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`timed out after ${timeoutMs}ms`);
    this.name = 'ProbeTimeoutError';
  }
}

/** Rejects as soon as `signal` aborts, even if `work` ignores it; `work` still runs its own cleanup. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => undefined);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

async function closeQuietly(close: () => Promise<unknown> | unknown): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(close),
      new Promise((resolve) => {
        timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
      }),
    ]);
  } catch {
    // closing a connection that never opened
  } finally {
    clearTimeout(timer);
  }
}

const ERRNO_DETAILS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by peer',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EPIPE: 'connection closed by peer',
};

/** A short, actionable reason from whatever a client library threw. */
export function describeError(err: unknown): string {
  const codes: string[] = [];
  const messages: string[] = [];
  const seen = new Set<unknown>();
  const walk = (e: unknown, depth: number) => {
    if (!e || typeof e !== 'object' || seen.has(e) || depth > 5) return;
    seen.add(e);
    const { code, message, cause, errors } = e as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
    if (typeof code === 'string') codes.push(code);
    if (typeof message === 'string' && message) messages.push(message);
    walk(cause, depth + 1);
    if (Array.isArray(errors)) errors.forEach((x) => walk(x, depth + 1));
  };
  walk(err, 0);
  for (const code of codes) {
    const known = ERRNO_DETAILS[code];
    if (known) return known;
  }
  const joined = messages.join(' ');
  for (const [code, text] of Object.entries(ERRNO_DETAILS)) {
    if (joined.includes(code)) return text;
  }
  // "fetch failed" says nothing; the cause usually does.
  const message = messages.find((m) => m !== 'fetch failed') ?? messages[0] ?? String(err);
  const line = message.split('\n')[0]!.trim();
  return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
