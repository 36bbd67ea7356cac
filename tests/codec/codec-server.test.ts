import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { payloadEncryptionFromEnv } from '../../lib/codec/index.js';
import { payloadsFromJson, payloadsToJson, startCodecServer, type CodecServer } from '../../lib/codec/server.js';

const UI = 'http://localhost:8233';
const TOKEN = `tok-${randomBytes(8).toString('hex')}`;
const encryption = payloadEncryptionFromEnv({ RUNBOOK_CODEC_KEY: randomBytes(32).toString('base64'), RUNBOOK_CODEC_KEY_ID: 'srv-1' }, { cwd: '/nonexistent' });

let open: CodecServer;
let guarded: CodecServer;

beforeAll(async () => {
  open = await startCodecServer({ codec: encryption.codec, port: 0, corsOrigins: [UI], maxBodyBytes: 64 * 1024 });
  guarded = await startCodecServer({ codec: encryption.codec, port: 0, corsOrigins: [UI], token: TOKEN });
});

afterAll(async () => {
  await Promise.all([open?.close(), guarded?.close()]);
});

const asJson = (...values: unknown[]) => payloadsToJson(values.map((v) => defaultPayloadConverter.toPayload(v)!));

async function post(server: CodecServer, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, json: (await res.json()) as { payloads?: Array<{ metadata: Record<string, string>; data: string }>; error?: string } };
}

describe('runbook codec-server', () => {
  it('encodes and decodes the UI\'s JSON payloads, the ciphertext carrying no plain text', async () => {
    const input = asJson({ service: 'api', note: 'marker-7c1e' }, 'second');
    const enc = await post(open, '/encode', input, { Origin: UI });
    expect(enc.status).toBe(200);
    expect(enc.json.payloads).toHaveLength(2);
    for (const p of enc.json.payloads!) {
      expect(Buffer.from(p.metadata.encoding!, 'base64').toString()).toBe('binary/encrypted');
      expect(Buffer.from(p.metadata['encryption-key-id']!, 'base64').toString()).toBe('srv-1');
      expect(Buffer.from(p.data, 'base64').toString('latin1')).not.toContain('marker-7c1e');
    }
    expect(enc.headers.get('access-control-allow-origin')).toBe(UI);

    // Mounted under a prefix, as a proxy might: only the last path segment counts.
    const dec = await post(open, '/codec/default/decode', enc.json);
    expect(dec.status).toBe(200);
    expect(dec.json).toEqual(input);
    expect(payloadsFromJson(dec.json).map((p) => defaultPayloadConverter.fromPayload(p))).toEqual([{ service: 'api', note: 'marker-7c1e' }, 'second']);

    // Plain payloads (a run started without the codec) come back as they are.
    expect((await post(open, '/decode', input)).json).toEqual(input);
  });

  it('answers the browser preflight for the UI origin with the headers the UI sends', async () => {
    const res = await fetch(`${open.url}/decode`, {
      method: 'OPTIONS',
      headers: { Origin: UI, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace,authorization' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(UI);
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    const allowed = res.headers.get('access-control-allow-headers')!.toLowerCase().split(/,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(['content-type', 'x-namespace', 'authorization']));
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');

    // Another site's page gets no CORS grant and no decryption.
    const evil = await fetch(`${open.url}/decode`, { method: 'OPTIONS', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' } });
    expect(evil.status).toBe(403);
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    const evilPost = await post(open, '/decode', asJson('x'), { Origin: 'https://evil.example' });
    expect(evilPost.status).toBe(403);
    expect(evilPost.json.error).toMatch(/origin https:\/\/evil\.example is not allowed: start the codec server with --cors-origin/);
  });

  it('with a token: 401 without or with a wrong bearer, 200 with it; the preflight and /healthz need none', async () => {
    const body = asJson('secret');
    const none = await post(guarded, '/encode', body);
    expect(none.status).toBe(401);
    expect(none.json.error).toMatch(/missing or wrong bearer token/);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect((await post(guarded, '/decode', body, { Authorization: 'Bearer nope' })).status).toBe(401);
    expect((await post(guarded, '/encode', body, { Authorization: `Bearer ${TOKEN}` })).status).toBe(200);
    const preflight = await fetch(`${guarded.url}/encode`, { method: 'OPTIONS', headers: { Origin: UI, 'Access-Control-Request-Method': 'POST' } });
    expect(preflight.status).toBe(204);
    const health = await fetch(`${guarded.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
  });

  it('400 on bad JSON or a malformed payload, naming the problem; 413 over the size limit; 422 when decryption fails', async () => {
    const badJson = await post(open, '/decode', '{"payloads": [');
    expect(badJson.status).toBe(400);
    expect(badJson.json.error).toMatch(/body is not valid JSON .*expected \{"payloads"/);
    const badField = await post(open, '/decode', { payloads: [{ metadata: { encoding: 'not base64 !' }, data: '' }] });
    expect(badField.status).toBe(400);
    expect(badField.json.error).toBe('payloads[0].metadata.encoding: expected a base64 string');
    expect((await post(open, '/decode', { payloads: 'x' })).json.error).toBe('payloads: expected an array');

    const big = await post(open, '/encode', asJson('x'.repeat(100 * 1024)));
    expect(big.status).toBe(413);
    expect(big.json.error).toMatch(/limit is 65536/);

    const enc = await post(open, '/encode', asJson('x'));
    const tampered = structuredClone(enc.json);
    const data = Buffer.from(tampered.payloads![0]!.data, 'base64');
    data[15] = data[15]! ^ 0xff;
    tampered.payloads![0]!.data = data.toString('base64');
    const refused = await post(open, '/decode', tampered);
    expect(refused.status).toBe(422);
    expect(refused.json.error).toMatch(/key id "srv-1"\) failed authentication/);

    expect((await fetch(`${open.url}/decode`)).status).toBe(405);
    expect((await fetch(`${open.url}/nothing`, { method: 'POST' })).status).toBe(404);
  });
});
