import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import {
  defaultKeyId,
  KEY_ID,
  publicKeyLine,
  signingText,
  type SignedApproval,
  type SignedFields,
} from '../common/signed-approvals.js';

/**
 * Approvers' Ed25519 keys: the private key file `runbook keys new` writes (a JWK with its
 * key id, mode 0600), signing an answer with it, and checking a signature against a public key
 * from the config.
 */

export class ApprovalKeyError extends Error {
  override name = 'ApprovalKeyError';
}

export interface ApproverKey {
  keyId: string;
  privateKey: KeyObject;
  /** The raw public key in base64url, as the config's line carries it. */
  publicKey: string;
}

/** The raw 32-byte public key of an Ed25519 key object, base64url. */
function rawPublicKey(key: KeyObject): string {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new ApprovalKeyError('not an Ed25519 key');
  return jwk.x;
}

/**
 * Writes a new private key to `file` (mode 0600; never over an existing file) and returns its
 * id and the line to paste under `approvals.keys.<approver>`.
 */
export async function createApproverKeyFile(file: string, id?: string): Promise<{ keyId: string; line: string }> {
  if (id !== undefined && !KEY_ID.test(id)) throw new ApprovalKeyError(`--id: "${id}" is not a key id: letters, digits, ".", "_", "@", ":" or "-" (at most 64), starting with a letter or digit`);
  const { privateKey } = generateKeyPairSync('ed25519');
  const x = rawPublicKey(privateKey);
  const keyId = id ?? defaultKeyId(x);
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: keyId, use: 'sig', alg: 'EdDSA' };
  try {
    await writeFile(file, `${JSON.stringify(jwk, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ApprovalKeyError(`${file} already exists: choose another file (a key is never overwritten)`);
    throw err;
  }
  return { keyId, line: publicKeyLine(x, keyId) };
}

/** Reads a private key file as `keys new` wrote it (a JWK with `kid`, or a PKCS#8 PEM, whose id is derived from the key). */
export async function loadApproverKey(file: string): Promise<ApproverKey> {
  let text: string;
  try {
    const st = await stat(file);
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      throw new ApprovalKeyError(`${file} can be read by other users (mode ${(st.mode & 0o777).toString(8)}): chmod 600 ${file}`);
    }
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof ApprovalKeyError) throw err;
    throw new ApprovalKeyError(`cannot read the approver key ${file}: ${(err as Error).message}`);
  }
  try {
    if (text.trimStart().startsWith('{')) {
      const jwk = JSON.parse(text) as { kid?: unknown; d?: unknown };
      if (typeof jwk.d !== 'string') throw new Error('it holds no private key');
      const privateKey = createPrivateKey({ key: jwk as never, format: 'jwk' });
      const publicKey = rawPublicKey(privateKey);
      const keyId = typeof jwk.kid === 'string' && KEY_ID.test(jwk.kid) ? jwk.kid : defaultKeyId(publicKey);
      return { keyId, privateKey, publicKey };
    }
    const privateKey = createPrivateKey(text);
    const publicKey = rawPublicKey(privateKey);
    return { keyId: defaultKeyId(publicKey), privateKey, publicKey };
  } catch (err) {
    throw new ApprovalKeyError(`${file} is not an Ed25519 private key (runbook keys new writes one): ${(err as Error).message}`);
  }
}

/** The signature an answer carries: over the answer's fields, this run, the decision, now and a fresh nonce. */
export function signAnswer(
  key: ApproverKey,
  answer: { by: string; step: string; confirm?: string; comment?: string },
  target: { workflowId: string; runId: string; decision: 'approve' | 'reject' },
  now = new Date(),
): SignedApproval {
  const fields: SignedFields = {
    ...answer,
    ...target,
    at: now.toISOString(),
    nonce: randomBytes(16).toString('base64url'),
    keyId: key.keyId,
  };
  const signature = sign(null, Buffer.from(signingText(fields), 'utf8'), key.privateKey).toString('base64url');
  return { workflowId: fields.workflowId, runId: fields.runId, decision: fields.decision, at: fields.at, nonce: fields.nonce, keyId: fields.keyId, signature };
}

/** Whether `signature` (base64url) is `publicKey`'s (raw base64url) over the text of `fields`. */
export function signatureValid(publicKey: string, fields: SignedFields, signature: string): boolean {
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey }, format: 'jwk' });
    return verify(null, Buffer.from(signingText(fields), 'utf8'), key, Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}
