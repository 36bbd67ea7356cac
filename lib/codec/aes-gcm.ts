import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
// CommonJS without named exports Node can detect: the default import is the module object.
import proto from '@temporalio/proto';
import type { Keyring } from './keys.js';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const CIPHER = 'AES-256-GCM';
export const KEY_ID_METADATA = 'encryption-key-id';
export const CIPHER_METADATA = 'encryption-cipher';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const ProtoPayload = proto.temporal.api.common.v1.Payload;
const utf8 = new TextEncoder();
const text = new TextDecoder();

/** A payload that cannot be decrypted; the message says why and what to do, never key material. */
export class PayloadDecryptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadDecryptionError';
  }
}

function metadataText(payload: Payload, key: string): string | undefined {
  const v = payload.metadata?.[key];
  return v ? text.decode(v) : undefined;
}

/** Binds the ciphertext to its key id and cipher: editing either in the metadata fails authentication. */
function aad(keyId: string): Buffer {
  return Buffer.from(`durable-runbooks/payload/v1|${CIPHER}|${keyId}`, 'utf8');
}

export function isEncrypted(payload: Payload): boolean {
  return metadataText(payload, 'encoding') === ENCRYPTED_ENCODING;
}

/**
 * AES-256-GCM over the whole serialized Payload (its metadata included, so even the inner
 * encoding is hidden). data = iv(12) || ciphertext || tag(16). Encrypts with the keyring's
 * current key, decrypts with any key it holds; payloads that are not encrypted pass through
 * (old histories, runs started without a codec). Without a keyring nothing is encrypted and
 * an encrypted payload fails with a message saying which key is missing.
 */
export class AesGcmPayloadCodec implements PayloadCodec {
  constructor(readonly keyring: Keyring | undefined) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const keyring = this.keyring;
    if (!keyring) return payloads;
    const keyId = keyring.currentId;
    const key = keyring.key(keyId)!;
    return payloads.map((payload) => {
      const plain = ProtoPayload.encode(payload).finish();
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(aad(keyId));
      const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: {
          encoding: utf8.encode(ENCRYPTED_ENCODING),
          [CIPHER_METADATA]: utf8.encode(CIPHER),
          [KEY_ID_METADATA]: utf8.encode(keyId),
        },
        data,
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => (isEncrypted(payload) ? this.decrypt(payload) : payload));
  }

  private decrypt(payload: Payload): Payload {
    const keyId = metadataText(payload, KEY_ID_METADATA);
    const cipherName = metadataText(payload, CIPHER_METADATA) ?? CIPHER;
    if (cipherName !== CIPHER) {
      throw new PayloadDecryptionError(`payload encrypted with ${cipherName}; this codec only knows ${CIPHER}`);
    }
    if (!keyId) throw new PayloadDecryptionError(`encrypted payload without an ${KEY_ID_METADATA} metadata entry: it was not written by this codec`);
    if (!this.keyring) {
      throw new PayloadDecryptionError(
        `payload is encrypted with key id "${keyId}" but no key is configured here: set RUNBOOK_CODEC_KEY_FILE (or RUNBOOK_CODEC_KEY) to the keys the worker uses`,
      );
    }
    const key = this.keyring.key(keyId);
    if (!key) {
      throw new PayloadDecryptionError(
        `payload is encrypted with key id "${keyId}", which is not among the configured keys (${this.keyring.ids.join(', ')}) from ${this.keyring.source}: ` +
          `add that key to the key file's "keys" (retired keys must stay there while histories encrypted with them are kept)`,
      );
    }
    const data = payload.data ?? new Uint8Array();
    if (data.length < IV_BYTES + TAG_BYTES) {
      throw new PayloadDecryptionError(`encrypted payload (key id "${keyId}") is ${data.length} bytes, too short to hold an IV and a tag: it was truncated or altered`);
    }
    const iv = data.subarray(0, IV_BYTES);
    const tag = data.subarray(data.length - TAG_BYTES);
    const body = data.subarray(IV_BYTES, data.length - TAG_BYTES);
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(keyId));
      decipher.setAuthTag(tag);
      plain = Buffer.concat([decipher.update(body), decipher.final()]);
    } catch {
      throw new PayloadDecryptionError(
        `encrypted payload (key id "${keyId}") failed authentication: its data or metadata was altered, or key "${keyId}" in ${this.keyring.source} is not the key it was encrypted with`,
      );
    }
    const inner = ProtoPayload.decode(plain);
    return { metadata: { ...(inner.metadata ?? {}) }, data: inner.data ?? new Uint8Array() };
  }
}
