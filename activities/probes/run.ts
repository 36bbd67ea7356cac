import { performance } from 'node:perf_hooks';
import type { ProbeConfig } from '../../common/config-schema.js';
import { envRefs, resolveEnvRefs } from '../../lib/env.js';
import { redactSecrets, redactUrl } from '../../lib/redact.js';
import { type ProbeOutcome, type ProbeOptions, ProbeConfigError, type Reading, ProbeTimeoutError, untilAborted, describeError, safeDecode, round } from './probe.js';
import { probeGrpc } from './grpc.js';
import { probeHttp } from './http.js';
import { probeNats } from './nats.js';
import { probePostgres } from './postgres.js';
import { probeRedis } from './redis.js';
import { probeTcp } from './tcp.js';

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
