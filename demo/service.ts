import { realpathSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { pino, destination } from 'pino';
import { z } from 'zod';
import { startGrpcHealthServer } from './grpc-health.js';

/**
 * The demo application (a stand-in for Fulcrum's fulcrum-server): an HTTP API with
 * /healthz and Prometheus /metrics, plus a grpc.health.v1 server. Its health, error
 * rate, latency and version change at runtime through POST /admin/state, so the
 * runbooks have something real to detect, restart and roll back.
 */

export interface DemoServiceOptions {
  httpPort: number;
  grpcPort: number;
  host?: string;
  version?: string;
  /** Share of application requests answered with HTTP 500, 0..1. */
  errorRate?: number;
  /** Added delay before each application request is answered. */
  latencyMs?: number;
}

export interface DemoService {
  httpUrl: string;
  grpcAddress: string;
  stop(): Promise<void>;
}

const adminStateSchema = z.strictObject({
  healthy: z.boolean().optional(),
  errorRate: z.number().min(0).max(1).optional(),
  latencyMs: z.number().int().min(0).max(60_000).optional(),
  version: z.string().min(1).optional(),
});

export type DemoState = Required<z.output<typeof adminStateSchema>>;

/** Prometheus' default buckets, in seconds. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const MAX_ADMIN_BODY = 64 * 1024;

class Metrics {
  private readonly byCode = new Map<number, number>();
  private readonly bucketCounts = BUCKETS.map(() => 0);
  private sum = 0;
  private count = 0;

  observe(code: number, seconds: number): void {
    this.byCode.set(code, (this.byCode.get(code) ?? 0) + 1);
    BUCKETS.forEach((le, i) => {
      if (seconds <= le) this.bucketCounts[i]! += 1;
    });
    this.sum += seconds;
    this.count += 1;
  }

  render(): string {
    const lines = [
      '# HELP http_requests_total Application HTTP requests by status code (health, metrics and admin endpoints are not counted).',
      '# TYPE http_requests_total counter',
      ...[...this.byCode.entries()].sort(([a], [b]) => a - b).map(([code, n]) => `http_requests_total{code="${code}"} ${n}`),
      '# HELP http_request_duration_seconds Application HTTP request duration.',
      '# TYPE http_request_duration_seconds histogram',
      ...BUCKETS.map((le, i) => `http_request_duration_seconds_bucket{le="${le}"} ${this.bucketCounts[i]}`),
      `http_request_duration_seconds_bucket{le="+Inf"} ${this.count}`,
      `http_request_duration_seconds_sum ${this.sum}`,
      `http_request_duration_seconds_count ${this.count}`,
    ];
    return `${lines.join('\n')}\n`;
  }
}

/** One application request, for the access log: its trace id comes from a W3C traceparent or an x-trace-id header. */
export interface DemoRequest {
  traceId?: string;
  method: string;
  path: string;
  code: number;
  ms: number;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;
const TRACE_ID = /^[A-Za-z0-9_-]{1,128}$/;

function traceIdOf(req: http.IncomingMessage): string | undefined {
  const parent = TRACEPARENT.exec(String(req.headers.traceparent ?? ''))?.[1];
  const own = String(req.headers['x-trace-id'] ?? '');
  return parent ?? (TRACE_ID.test(own) ? own : undefined);
}

export async function startDemoService(
  opts: DemoServiceOptions,
  onStateChange?: (state: DemoState) => void,
  onRequest?: (request: DemoRequest) => void,
): Promise<DemoService> {
  const host = opts.host ?? '127.0.0.1';
  const state: DemoState = {
    healthy: true,
    errorRate: opts.errorRate ?? 0,
    latencyMs: opts.latencyMs ?? 0,
    version: opts.version ?? '1.0.0',
  };
  adminStateSchema.parse({ errorRate: state.errorRate, latencyMs: state.latencyMs, version: state.version });
  const metrics = new Metrics();
  const grpc = await startGrpcHealthServer({ port: opts.grpcPort, host, status: 'SERVING' });

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { ok: false, error: err instanceof Error ? err.message : String(err) });
      else res.destroy();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://demo').pathname;
    if (req.method === 'GET' && path === '/healthz') {
      json(res, state.healthy ? 200 : 503, { status: state.healthy ? 'healthy' : 'unhealthy', version: state.version });
      return;
    }
    if (req.method === 'GET' && path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(metrics.render());
      return;
    }
    if (path === '/admin/state') {
      if (req.method === 'GET') return json(res, 200, state);
      if (req.method !== 'POST') return json(res, 405, { ok: false, error: 'use GET or POST' });
      const body = await readJson(req);
      if (body instanceof Error) return json(res, 400, { ok: false, error: body.message });
      const parsed = adminStateSchema.safeParse(body);
      if (!parsed.success) {
        return json(res, 400, { ok: false, error: parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ') });
      }
      Object.assign(state, Object.fromEntries(Object.entries(parsed.data).filter(([, v]) => v !== undefined)));
      grpc.setStatus(state.healthy ? 'SERVING' : 'NOT_SERVING');
      onStateChange?.({ ...state });
      return json(res, 200, state);
    }

    const started = performance.now();
    if (state.latencyMs > 0) await sleep(state.latencyMs);
    const failed = Math.random() < state.errorRate;
    const code = failed ? 500 : 200;
    json(res, code, failed ? { version: state.version, ok: false, error: 'injected failure' } : { version: state.version, ok: true });
    const seconds = (performance.now() - started) / 1000;
    metrics.observe(code, seconds);
    onRequest?.({ traceId: traceIdOf(req), method: req.method ?? 'GET', path, code, ms: Math.round(seconds * 1000) });
  }

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.httpPort, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await grpc.stop();
    throw err;
  }
  const httpPort = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  let stopped: Promise<void> | undefined;
  return {
    httpUrl: `http://${urlHost}:${httpPort}`,
    grpcAddress: `${urlHost}:${grpc.port}`,
    stop() {
      stopped ??= Promise.all([
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
        grpc.stop(),
      ]).then(() => undefined);
      return stopped;
    },
  };
}

function json(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The parsed body, or an Error saying why it can't be used. */
async function readJson(req: http.IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_ADMIN_BODY) return new Error(`request body over ${MAX_ADMIN_BODY} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    return new Error(`body is not JSON: ${(err as Error).message}`);
  }
}

// ---------------------------------------------------------------- process entry point

function intArg(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`${name} must be an integer 0..65535`);
    return n;
  };
}

function numberArg(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number ${min}..${max}`);
    return n;
  };
}

async function main(argv: string[]): Promise<void> {
  const program = new Command('demo-service')
    .description('The demo API: HTTP /healthz, /metrics, /admin/state and a grpc.health.v1 server')
    .requiredOption('--http-port <n>', 'HTTP port', intArg('--http-port'))
    .requiredOption('--grpc-port <n>', 'gRPC port', intArg('--grpc-port'))
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--version <v>', 'version reported by the API', '1.0.0')
    .option('--error-rate <x>', 'share of requests answered with HTTP 500 (0..1)', numberArg('--error-rate', 0, 1), 0)
    .option('--latency-ms <n>', 'delay before each application response', numberArg('--latency-ms', 0, 60_000), 0)
    .parse(argv);
  const o = program.opts<{ httpPort: number; grpcPort: number; host: string; version: string; errorRate: number; latencyMs: number }>();

  const logger = pino({ base: { pid: process.pid, service: 'demo-api' } }, destination(1));
  const service = await startDemoService(
    { httpPort: o.httpPort, grpcPort: o.grpcPort, host: o.host, version: o.version, errorRate: o.errorRate, latencyMs: o.latencyMs },
    (state) => logger.info({ state }, 'state changed'),
    // An access log line per application request, as structured as Fulcrum's server logs (Fulcrum 6.1): trace_id for correlation.
    (r) => {
      const fields = { trace_id: r.traceId, method: r.method, path: r.path, code: r.code, latency_ms: r.ms };
      if (r.code >= 500) logger.error({ ...fields, error: 'injected failure' }, 'request failed');
      else logger.info(fields, 'request');
    },
  );
  logger.info({ httpUrl: service.httpUrl, grpcAddress: service.grpcAddress, version: o.version }, 'demo service ready');

  const shutdown = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'stopping');
    service.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv).catch((err: unknown) => {
    process.stderr.write(`demo service failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
