import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { silentLogger, type Logger } from '../logger.js';

/**
 * A remote codec for the Temporal Web UI and CLI: POST .../encode and .../decode take and
 * return `{"payloads": [...]}` in the protobuf JSON form (metadata values and data base64).
 * Only the last path segment counts, so it can be mounted under any prefix.
 */

export const DEFAULT_CODEC_PORT = 8234;
export const DEFAULT_CORS_ORIGINS = ['http://localhost:8233', 'http://127.0.0.1:8233'];
export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;

export interface CodecServerOptions {
  codec: PayloadCodec;
  host?: string;
  /** Default 8234; 0 = a free port. */
  port?: number;
  /** Browser origins allowed to call it (the UI's); more can be added with allowOrigin(). */
  corsOrigins?: string[];
  /** When set, encode and decode need `Authorization: Bearer <token>`. */
  token?: string;
  maxBodyBytes?: number;
  logger?: Logger;
}

export interface CodecServer {
  url: string;
  port: number;
  allowOrigin(origin: string): void;
  /** Let the process exit while it is still listening (when something else keeps the process alive). */
  unref(): void;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function fromBase64(value: unknown, field: string): Uint8Array {
  if (typeof value !== 'string' || !BASE64.test(value)) throw new HttpError(400, `${field}: expected a base64 string`);
  return Buffer.from(value, 'base64');
}

/** Parses the proto JSON `Payloads` message; the error names the offending field. */
export function payloadsFromJson(body: unknown): Payload[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'body: expected a JSON object {"payloads": [...]}');
  const list = (body as { payloads?: unknown }).payloads;
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new HttpError(400, 'payloads: expected an array');
  return list.map((p: unknown, i) => {
    if (typeof p !== 'object' || p === null || Array.isArray(p)) throw new HttpError(400, `payloads[${i}]: expected an object with metadata and data`);
    const { metadata, data } = p as { metadata?: unknown; data?: unknown };
    const out: Payload = { metadata: {}, data: data === undefined || data === null ? new Uint8Array() : fromBase64(data, `payloads[${i}].data`) };
    if (metadata !== undefined && metadata !== null) {
      if (typeof metadata !== 'object' || Array.isArray(metadata)) throw new HttpError(400, `payloads[${i}].metadata: expected an object of base64 strings`);
      for (const [k, v] of Object.entries(metadata)) out.metadata![k] = fromBase64(v, `payloads[${i}].metadata.${k}`);
    }
    return out;
  });
}

export function payloadsToJson(payloads: Payload[]): { payloads: Array<{ metadata: Record<string, string>; data: string }> } {
  return {
    payloads: payloads.map((p) => ({
      metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
      data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
    })),
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new HttpError(413, `body is ${declared} bytes; the limit is ${limit}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, `body is over the limit of ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startCodecServer(opts: CodecServerOptions): Promise<CodecServer> {
  const logger = opts.logger ?? silentLogger;
  const origins = new Set(opts.corsOrigins ?? DEFAULT_CORS_ORIGINS);
  const tokenDigest = opts.token ? digest(opts.token) : undefined;
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;

  const authorized = (req: http.IncomingMessage): boolean => {
    if (!tokenDigest) return true;
    const m = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '');
    return m !== null && timingSafeEqual(digest(m[1]!.trim()), tokenDigest);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<number> => {
    const origin = req.headers.origin;
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(JSON.stringify(body));
      return status;
    };
    if (origin !== undefined) {
      // A page from another origin must not be able to use this server to decrypt.
      if (!origins.has(origin)) return send(403, { error: `origin ${origin} is not allowed: start the codec server with --cors-origin ${origin}` });
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Credentials', 'true');
      res.setHeader('Vary', 'Origin');
    }
    const action = new URL(req.url ?? '/', 'http://codec').pathname.split('/').filter(Boolean).pop() ?? '';
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'Access-Control-Allow-Methods': 'POST, GET, OPTIONS',
        'Access-Control-Allow-Headers': 'Content-Type, X-Namespace, Authorization',
        'Access-Control-Max-Age': '600',
      });
      res.end();
      return 204;
    }
    if (action === 'healthz' && req.method === 'GET') return send(200, { status: 'ok' });
    if (action !== 'encode' && action !== 'decode') return send(404, { error: `no such endpoint: use POST /encode, POST /decode or GET /healthz` });
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return send(405, { error: `${action} takes POST` });
    }
    if (!authorized(req)) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      return send(401, { error: 'missing or wrong bearer token: send Authorization: Bearer <token>' });
    }
    const text = await readBody(req, limit);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new HttpError(400, `body is not valid JSON (${(err as Error).message}); expected {"payloads": [{"metadata": {...}, "data": "<base64>"}]}`);
    }
    const payloads = payloadsFromJson(body);
    try {
      const out = action === 'encode' ? await opts.codec.encode(payloads) : await opts.codec.decode(payloads);
      return send(200, payloadsToJson(out));
    } catch (err) {
      return send(422, { error: (err as Error).message });
    }
  };

  const server = http.createServer((req, res) => {
    const started = Date.now();
    handle(req, res)
      .catch((err: unknown) => {
        const status = err instanceof HttpError ? err.status : 500;
        if (status === 500) logger.error({ err }, 'codec server request failed');
        if (!res.headersSent) {
          res.writeHead(status, { 'Content-Type': 'application/json', Connection: 'close' });
          res.end(JSON.stringify({ error: err instanceof HttpError ? err.message : 'internal error' }));
        }
        return status;
      })
      .then((status) => logger.debug({ method: req.method, path: req.url, status, namespace: req.headers['x-namespace'], ms: Date.now() - started }, 'codec request'));
  });
  server.requestTimeout = 30_000;
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new Error(`codec server port ${host}:${opts.port ?? DEFAULT_CODEC_PORT} is already in use: stop what holds it or choose another with --port`)
          : err,
      ),
    );
    server.listen(opts.port ?? DEFAULT_CODEC_PORT, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    allowOrigin: (origin: string) => void origins.add(origin),
    unref: () => void server.unref(),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
