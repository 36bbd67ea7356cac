import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type JsonWebKey, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { hostPort } from './dev-server.js';

/**
 * Tokens for the Temporal server's built-in JWT authorization (`global.authorization` with the
 * default claim mapper and authorizer): ES256 keys and signatures from node:crypto. The server
 * reads `sub` and the `permissions` claim, each `<namespace>:<role>` with role read, write,
 * worker or admin; `temporal-system:<role>` is a role on every namespace and the cluster.
 */

export interface SigningKey {
  /** PEM (PKCS#8) of the private key: whoever holds it can mint any token. */
  privateKeyFile: string;
  /** The public half as a JWK Set, what the server fetches to check signatures. */
  jwksFile: string;
  kid: string;
}

/** A JWK's RFC 7638 thumbprint: a key id that follows from the key itself. */
function thumbprint(jwk: JsonWebKey): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

function publicJwk(key: KeyObject): JsonWebKey & { kid: string } {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  return { ...jwk, kid: thumbprint(jwk), alg: 'ES256', use: 'sig' };
}

/**
 * `<dir>/jwt-signing-key.pem` (mode 0600) and `<dir>/jwks.json`: made the first time, reused
 * after (tokens already handed out stay valid across restarts).
 */
export async function ensureSigningKey(dir: string): Promise<SigningKey> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const privateKeyFile = path.join(dir, 'jwt-signing-key.pem');
  const jwksFile = path.join(dir, 'jwks.json');
  if (!existsSync(privateKeyFile)) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await writeFile(privateKeyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    await chmod(privateKeyFile, 0o600);
  }
  const jwk = publicJwk(createPrivateKey(await readFile(privateKeyFile)));
  await writeFile(jwksFile, `${JSON.stringify({ keys: [jwk] }, null, 2)}\n`);
  return { privateKeyFile, jwksFile, kid: jwk.kid };
}

/** `<namespace>:<role>`, as the default claim mapper splits it. */
const PERMISSION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}:(read|write|worker|admin)$/;

export class TokenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenError';
  }
}

export interface TokenRequest {
  /** Who the token is for: the server logs it as the caller. */
  subject: string;
  /** E.g. ['default:read'], ['default:write'], ['temporal-system:admin']. */
  permissions: string[];
  /** Lifetime; default 3600, at most 30 days. */
  ttlSeconds?: number;
  /** Optional `aud` (the server checks it only when `global.authorization.audience` is set). */
  audience?: string;
}

/** A compact ES256 JWT signed with the key in `privateKeyFile`, with its `kid` in the header. */
export async function signToken(privateKeyFile: string, req: TokenRequest, now: number = Date.now()): Promise<string> {
  if (!req.subject.trim() || req.subject.length > 200) throw new TokenError('subject: give a non-empty name of at most 200 characters (e.g. the user or worker)');
  if (req.permissions.length === 0) throw new TokenError('permissions: give at least one, e.g. default:read');
  for (const p of req.permissions) {
    if (!PERMISSION.test(p)) throw new TokenError(`permission ${JSON.stringify(p)}: use <namespace>:<role> with role read, write, worker or admin (e.g. default:write)`);
  }
  const ttl = req.ttlSeconds ?? 3600;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 30 * 24 * 3600) throw new TokenError(`ttl ${ttl}: give whole seconds between 1 and 2592000 (30 days)`);
  const key = createPrivateKey(await readFile(privateKeyFile));
  const header = { alg: 'ES256', typ: 'JWT', kid: publicJwk(key).kid };
  const iat = Math.floor(now / 1000);
  const claims = { sub: req.subject, permissions: req.permissions, iat, exp: iat + ttl, ...(req.audience ? { aud: req.audience } : {}) };
  const encode = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${encode(header)}.${encode(claims)}`;
  // JWS wants r||s (IEEE P1363), not the DER node:crypto gives by default.
  const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

export interface JwksServer {
  /** http://127.0.0.1:<port>/jwks.json, for `jwtKeyProvider.keySourceURIs`. */
  url: string;
  close(): Promise<void>;
}

/**
 * The server's key provider fetches keys with an HTTP GET only (no file:// URIs in 1.29.1), so the
 * cluster command serves the JWKS file on loopback; the file is read on every request, so a key
 * added to it is picked up at the server's next refresh.
 */
export async function serveJwks(jwksFile: string, port = 0, host = '127.0.0.1'): Promise<JwksServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    readFile(jwksFile)
      .then((body) => res.writeHead(200, { 'content-type': 'application/json' }).end(body))
      .catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const actual = (server.address() as { port: number }).port;
  return {
    url: `http://${hostPort(host, actual)}/jwks.json`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
