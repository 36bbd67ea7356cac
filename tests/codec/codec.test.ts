import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AesGcmPayloadCodec,
  CodecKeyError,
  createKeyFile,
  DEV_KEY_FILE,
  ENCRYPTED_ENCODING,
  keyFingerprint,
  keyringFromEnv,
  payloadEncryptionFromEnv,
  PayloadDecryptionError,
} from '../../lib/codec/index.js';

const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array()).toString('utf8');
const newKey = () => randomBytes(32).toString('base64');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'codec-test-'));
});

async function keyFile(content: unknown, name = `keys-${Math.random().toString(36).slice(2)}.json`): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

/** A codec as a user configures it; `cwd` is an empty dir so no .runbook/codec-keys.json is picked up. */
function codecFor(env: NodeJS.ProcessEnv): AesGcmPayloadCodec {
  return payloadEncryptionFromEnv(env, { cwd: dir }).codec;
}

function payloadOf(value: unknown): Payload {
  return defaultPayloadConverter.toPayload(value)!;
}

describe('AES-256-GCM payload codec', () => {
  it('round-trips a payload and hides its data and its metadata', async () => {
    const codec = codecFor({ RUNBOOK_CODEC_KEY: newKey(), RUNBOOK_CODEC_KEY_ID: 'k1' });
    const original = payloadOf({ password: 'hunter2-marker', nested: [1, 2, 3] });
    const [encrypted] = await codec.encode([original]);
    expect(text(encrypted!.metadata!.encoding)).toBe(ENCRYPTED_ENCODING);
    expect(text(encrypted!.metadata!['encryption-key-id'])).toBe('k1');
    expect(text(encrypted!.metadata!['encryption-cipher'])).toBe('AES-256-GCM');
    // Neither the value nor the inner encoding is visible in what the server stores.
    const stored = Buffer.concat([encrypted!.data!, ...Object.values(encrypted!.metadata!)]).toString('latin1');
    expect(stored).not.toContain('hunter2-marker');
    expect(stored).not.toContain('json/plain');
    // iv(12) || ciphertext || tag(16), the ciphertext as long as the serialized payload.
    expect(encrypted!.data!.length).toBeGreaterThan(12 + 16 + original.data!.length);

    const [decoded] = await codec.decode([encrypted!]);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual({ password: 'hunter2-marker', nested: [1, 2, 3] });
    expect(text(decoded!.metadata!.encoding)).toBe('json/plain');
  });

  it('uses a fresh IV each time: the same value never encrypts to the same bytes', async () => {
    const codec = codecFor({ RUNBOOK_CODEC_KEY: newKey() });
    const [a, b] = await codec.encode([payloadOf('same'), payloadOf('same')]);
    expect(Buffer.from(a!.data!).equals(Buffer.from(b!.data!))).toBe(false);
    expect(Buffer.from(a!.data!).subarray(0, 12).equals(Buffer.from(b!.data!).subarray(0, 12))).toBe(false);
  });

  it('passes payloads that are not encrypted through unchanged (old histories, runs started without a codec)', async () => {
    const codec = codecFor({ RUNBOOK_CODEC_KEY: newKey() });
    const plain = payloadOf({ started: 'from the UI' });
    const [out] = await codec.decode([plain]);
    expect(out).toBe(plain);
  });

  it('rotation: what k1 encrypted still decrypts after current moves to k2, and new payloads use k2', async () => {
    const k1 = newKey();
    const k2 = newKey();
    const before = codecFor({ RUNBOOK_CODEC_KEY_FILE: await keyFile({ current: 'k1', keys: { k1 } }) });
    const [old] = await before.encode([payloadOf({ run: 'before rotation' })]);
    expect(text(old!.metadata!['encryption-key-id'])).toBe('k1');

    const after = codecFor({ RUNBOOK_CODEC_KEY_FILE: await keyFile({ current: 'k2', keys: { k1, k2 } }) });
    const [fresh] = await after.encode([payloadOf({ run: 'after rotation' })]);
    expect(text(fresh!.metadata!['encryption-key-id'])).toBe('k2');
    const [oldDecoded, freshDecoded] = await after.decode([old!, fresh!]);
    expect(defaultPayloadConverter.fromPayload(oldDecoded!)).toEqual({ run: 'before rotation' });
    expect(defaultPayloadConverter.fromPayload(freshDecoded!)).toEqual({ run: 'after rotation' });

    // Dropping k1 from the file too early: the error says which key and where keys come from.
    const file = await keyFile({ current: 'k2', keys: { k2 } });
    const dropped = codecFor({ RUNBOOK_CODEC_KEY_FILE: file });
    await expect(dropped.decode([old!])).rejects.toThrow(PayloadDecryptionError);
    await expect(dropped.decode([old!])).rejects.toThrow(
      new RegExp(`key id "k1", which is not among the configured keys \\(k2\\) from RUNBOOK_CODEC_KEY_FILE=${file.replace(/[.]/g, '\\.')}: add that key`),
    );
  });

  it('refuses tampered data, a tampered key id and a truncated payload, saying so', async () => {
    const k1 = newKey();
    const codec = codecFor({ RUNBOOK_CODEC_KEY_FILE: await keyFile({ current: 'k1', keys: { k1, k2: k1 } }) });
    const [enc] = await codec.encode([payloadOf({ amount: 100 })]);

    const flipped = Buffer.from(enc!.data!);
    flipped[20] = flipped[20]! ^ 0x01;
    await expect(codec.decode([{ ...enc!, data: flipped }])).rejects.toThrow(/key id "k1"\) failed authentication: its data or metadata was altered/);

    // Same key material under another id: the id is bound to the ciphertext.
    const relabelled = { ...enc!, metadata: { ...enc!.metadata!, 'encryption-key-id': new TextEncoder().encode('k2') } };
    await expect(codec.decode([relabelled])).rejects.toThrow(/key id "k2"\) failed authentication/);

    await expect(codec.decode([{ ...enc!, data: enc!.data!.subarray(0, 20) }])).rejects.toThrow(/20 bytes, too short .* truncated or altered/);
  });

  it('without a key: nothing is encrypted, and an encrypted payload is refused naming its key id and the variables', async () => {
    const encrypted = (await codecFor({ RUNBOOK_CODEC_KEY: newKey(), RUNBOOK_CODEC_KEY_ID: 'prod-3' }).encode([payloadOf('x')]))[0]!;
    const none = payloadEncryptionFromEnv({}, { cwd: dir });
    expect(none.keyring).toBeUndefined();
    expect(none.dataConverter.failureConverterPath).toBeUndefined();
    expect(none.description).toMatch(/payload encryption is off/);
    const plain = payloadOf('x');
    expect(await none.codec.encode([plain])).toEqual([plain]);
    await expect(none.codec.decode([encrypted])).rejects.toThrow(/encrypted with key id "prod-3" but no key is configured here: set RUNBOOK_CODEC_KEY_FILE/);
  });
});

describe('codec keys from the environment', () => {
  it('RUNBOOK_CODEC_KEY: the id defaults to a short hash of the key, RUNBOOK_CODEC_KEY_ID overrides it', () => {
    const key = newKey();
    const ring = keyringFromEnv({ RUNBOOK_CODEC_KEY: key }, { cwd: dir })!;
    expect(ring.currentId).toBe(keyFingerprint(Buffer.from(key, 'base64')));
    expect(ring.currentId).toMatch(/^[0-9a-f]{12}$/);
    expect(keyringFromEnv({ RUNBOOK_CODEC_KEY: key, RUNBOOK_CODEC_KEY_ID: 'ops-2026' }, { cwd: dir })!.currentId).toBe('ops-2026');
  });

  it('never shows key material: not in inspect, JSON, or any error message', async () => {
    const key = newKey();
    const ring = keyringFromEnv({ RUNBOOK_CODEC_KEY: key, RUNBOOK_CODEC_KEY_ID: 'k1' }, { cwd: dir })!;
    expect(inspect(ring, { depth: 5, showHidden: true })).not.toContain(key);
    expect(JSON.stringify(ring)).not.toContain(key);
    expect(JSON.stringify(payloadEncryptionFromEnv({ RUNBOOK_CODEC_KEY: key }, { cwd: dir }).description)).not.toContain(key);

    const short = randomBytes(16).toString('base64');
    const file = await keyFile(`{"current": "a", "keys": {"a": "${short}"`);
    for (const env of [{ RUNBOOK_CODEC_KEY: short }, { RUNBOOK_CODEC_KEY_FILE: file }]) {
      const err = (() => {
        try {
          keyringFromEnv(env, { cwd: dir });
        } catch (e) {
          return e as Error;
        }
      })();
      expect(err).toBeInstanceOf(CodecKeyError);
      expect(err!.message).not.toContain(short);
    }
  });

  it('bad keys are refused with the variable and the fix named', async () => {
    const bad = (env: NodeJS.ProcessEnv) => () => keyringFromEnv(env, { cwd: dir });
    expect(bad({ RUNBOOK_CODEC_KEY: randomBytes(16).toString('base64') })).toThrow(/RUNBOOK_CODEC_KEY decodes to 16 bytes, AES-256 needs 32: set it to a new key \(.*openssl rand -base64 32/);
    expect(bad({ RUNBOOK_CODEC_KEY: 'not base64!' })).toThrow(/RUNBOOK_CODEC_KEY is not valid base64: set it to a new key/);
    expect(bad({ RUNBOOK_CODEC_KEY: newKey(), RUNBOOK_CODEC_KEY_FILE: '/x.json' })).toThrow(/RUNBOOK_CODEC_KEY and RUNBOOK_CODEC_KEY_FILE are both set: use one/);
    expect(bad({ RUNBOOK_CODEC_KEY_ID: 'k1' })).toThrow(/RUNBOOK_CODEC_KEY_ID is set but RUNBOOK_CODEC_KEY is not/);
    expect(bad({ RUNBOOK_CODEC_KEY: newKey(), RUNBOOK_CODEC_KEY_ID: 'has space' })).toThrow(/RUNBOOK_CODEC_KEY_ID: key id "has space" must be 1-64 letters/);

    const k = newKey();
    const notCurrent = await keyFile({ current: 'k3', keys: { k1: k, k2: k } });
    expect(bad({ RUNBOOK_CODEC_KEY_FILE: notCurrent })).toThrow(
      new RegExp(`RUNBOOK_CODEC_KEY_FILE=.*: current is "k3" but keys has only k1, k2: add that key or point current at one of them`),
    );
    const shortInFile = await keyFile({ current: 'k1', keys: { k1: randomBytes(31).toString('base64') } });
    expect(bad({ RUNBOOK_CODEC_KEY_FILE: shortInFile })).toThrow(/RUNBOOK_CODEC_KEY_FILE=.*: keys\.k1 decodes to 31 bytes, AES-256 needs 32: replace it with a new key/);
    expect(bad({ RUNBOOK_CODEC_KEY_FILE: await keyFile({ keys: { k1: k } }) })).toThrow(/RUNBOOK_CODEC_KEY_FILE=.*: current: .*expected \{"current"/);
    expect(bad({ RUNBOOK_CODEC_KEY_FILE: await keyFile({ current: 'k1', keys: {} }) })).toThrow(/keys: must hold at least one key/);
    expect(bad({ RUNBOOK_CODEC_KEY_FILE: await keyFile('{not json') })).toThrow(/RUNBOOK_CODEC_KEY_FILE=.*: not valid JSON; expected \{"current"/);
    expect(bad({ RUNBOOK_CODEC_KEY_FILE: path.join(dir, 'missing.json') })).toThrow(/RUNBOOK_CODEC_KEY_FILE=.*missing\.json: cannot read the key file \(ENOENT\)/);
  });

  it('RUNBOOK_CODEC_REQUIRED=true turns a missing key into an error; the default is plain text', () => {
    expect(keyringFromEnv({}, { cwd: dir })).toBeUndefined();
    expect(() => keyringFromEnv({ RUNBOOK_CODEC_REQUIRED: 'true' }, { cwd: dir })).toThrow(
      /RUNBOOK_CODEC_REQUIRED=true but no payload encryption key is configured: set RUNBOOK_CODEC_KEY .* or RUNBOOK_CODEC_KEY_FILE/,
    );
    expect(() => keyringFromEnv({ RUNBOOK_CODEC_REQUIRED: 'maybe' }, { cwd: dir })).toThrow(/RUNBOOK_CODEC_REQUIRED=maybe is not a boolean/);
    expect(keyringFromEnv({ RUNBOOK_CODEC_REQUIRED: 'true', RUNBOOK_CODEC_KEY: newKey() }, { cwd: dir })).toBeDefined();
  });

  it('the key file runbook dev makes: mode 0600, made once, then found without any variable', async () => {
    const project = await mkdtemp(path.join(tmpdir(), 'codec-dev-'));
    const file = path.join(project, DEV_KEY_FILE);
    expect(await createKeyFile(file)).toBe(true);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const first = await readFile(file, 'utf8');
    expect(await createKeyFile(file)).toBe(false);
    expect(await readFile(file, 'utf8')).toBe(first);
    const ring = keyringFromEnv({}, { cwd: project })!;
    expect(ring.source).toMatch(/codec-keys\.json \(made by runbook dev/);
    // An explicit setting wins over it.
    expect(keyringFromEnv({ RUNBOOK_CODEC_KEY: newKey(), RUNBOOK_CODEC_KEY_ID: 'explicit' }, { cwd: project })!.currentId).toBe('explicit');
  });
});
