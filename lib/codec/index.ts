import { fileURLToPath } from 'node:url';
import type { DataConverter } from '@temporalio/common';
import { AesGcmPayloadCodec } from './aes-gcm.js';
import { keyringFromEnv, type Keyring } from './keys.js';
import { UndecodableTolerantCodec } from './undecodable.js';

export { AesGcmPayloadCodec, CIPHER, ENCRYPTED_ENCODING, isEncrypted, KEY_ID_METADATA, PayloadDecryptionError } from './aes-gcm.js';
export { CodecKeyError, createKeyFile, DEV_KEY_FILE, Keyring, keyFingerprint, keyringFromEnv, rotateKeyFile } from './keys.js';

/** DefaultFailureConverter with encodeCommonAttributes: failure messages and stacks become payloads. */
export const FAILURE_CONVERTER_PATH = fileURLToPath(new URL('./failure-converter.cjs', import.meta.url));

/** The worker's payload converter: a payload it cannot convert becomes a marker value, never an error (payload-converter.cjs). */
export const WORKER_PAYLOAD_CONVERTER_PATH = fileURLToPath(new URL('./payload-converter.cjs', import.meta.url));

/**
 * The data converter of workers (and of the workflow bundle and replay): `encryption`'s, with
 * undecodable payloads turned into markers that message handlers refuse (see undecodable.ts).
 */
export function workerDataConverter(encryption: PayloadEncryption): DataConverter {
  return {
    ...encryption.dataConverter,
    payloadCodecs: [new UndecodableTolerantCodec(encryption.codec)],
    payloadConverterPath: WORKER_PAYLOAD_CONVERTER_PATH,
  };
}

export interface PayloadEncryption {
  /** For Client, Worker and Worker.runReplayHistories. */
  dataConverter: DataConverter;
  codec: AesGcmPayloadCodec;
  /** Undefined: payloads are stored as plain JSON. */
  keyring?: Keyring;
  /** One line for a log or a banner; ids and where the keys came from, never key material. */
  description: string;
}

export function payloadEncryption(keyring: Keyring | undefined): PayloadEncryption {
  const codec = new AesGcmPayloadCodec(keyring);
  if (!keyring) {
    return {
      // Decoding still knows the format, so an encrypted run is refused with a message naming its key.
      dataConverter: { payloadCodecs: [codec] },
      codec,
      description: 'payload encryption is off: no RUNBOOK_CODEC_KEY or RUNBOOK_CODEC_KEY_FILE, workflow inputs, results and failure messages are stored in plain text',
    };
  }
  return {
    dataConverter: { payloadCodecs: [codec], failureConverterPath: FAILURE_CONVERTER_PATH },
    codec,
    keyring,
    description: `payloads encrypted with AES-256-GCM, key id ${keyring.currentId} (decrypts ${keyring.ids.join(', ')}; keys from ${keyring.source})`,
  };
}

/** The data converter every client and worker of this project uses, from the environment. */
export function payloadEncryptionFromEnv(env: NodeJS.ProcessEnv = process.env, opts: { cwd?: string } = {}): PayloadEncryption {
  return payloadEncryption(keyringFromEnv(env, opts));
}
