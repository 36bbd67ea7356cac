import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { defaultPayloadConverter } from '@temporalio/common';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { AesGcmPayloadCodec, keyringFromEnv } from '../../lib/codec/index.js';

function runbook(...args: string[]) {
  return execa(process.execPath, ['bin/runbook.mjs', ...args], { reject: false, env: { RUNBOOK_CODEC_KEY_FILE: '' } });
}

describe('runbook codec-keys: a key file made and rotated from the CLI', () => {
  it('rotation makes a new current key and older payloads still decrypt', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'runbook-keys-'));
    const file = path.join(dir, 'keys.json');

    const made = await runbook('codec-keys', 'new', file, '--id', 'k1');
    expect(made.exitCode, made.stderr).toBe(0);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const before = keyringFromEnv({ RUNBOOK_CODEC_KEY_FILE: file })!;
    expect(before.currentId).toBe('k1');
    const old = await new AesGcmPayloadCodec(before).encode([defaultPayloadConverter.toPayload({ database: 'main' })]);

    const again = await runbook('codec-keys', 'new', file);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(/already exists: use `runbook codec-keys rotate/);

    const rotated = await runbook('codec-keys', 'rotate', file, '--id', 'k2');
    expect(rotated.exitCode, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/current key is now k2/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    // Nothing of the key material is printed.
    const json = JSON.parse(await readFile(file, 'utf8')) as { keys: Record<string, string> };
    for (const material of Object.values(json.keys)) expect(rotated.stdout + rotated.stderr).not.toContain(material);

    const after = keyringFromEnv({ RUNBOOK_CODEC_KEY_FILE: file })!;
    expect(after.currentId).toBe('k2');
    expect(after.ids.sort()).toEqual(['k1', 'k2']);
    const codec = new AesGcmPayloadCodec(after);
    expect(defaultPayloadConverter.fromPayload((await codec.decode(old))[0]!)).toEqual({ database: 'main' });
    const fresh = await codec.encode([defaultPayloadConverter.toPayload('x')]);
    expect(Buffer.from(fresh[0]!.metadata!['encryption-key-id']!).toString()).toBe('k2');

    const dup = await runbook('codec-keys', 'rotate', file, '--id', 'k1');
    expect(dup.exitCode).toBe(1);
    expect(dup.stderr).toMatch(/key id "k1" is already in the file/);
  });
});
