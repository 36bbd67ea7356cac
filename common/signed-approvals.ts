/**
 * Signed approval answers: what an approver's key signs, the shape of the signature that
 * travels in an answer, and the public key lines of the config. Workflow-safe: no crypto here
 * (signing is in lib/, verification in a local activity); only text and bounds.
 */
import { MAX_NAME_CHARS, textProblem } from './bounds.js';

/** Version tag at the head of every signed text: a signature for another format never verifies. */
export const SIGNING_VERSION = 'runbook-approval-v1';
/** A signed answer older than this is refused as expired. */
export const SIGNED_ANSWER_MAX_AGE_SECONDS = 600;
/** A signed answer dated further than this ahead of the worker's clock is refused. */
export const SIGNED_ANSWER_MAX_SKEW_SECONDS = 60;

/** An Ed25519 signature (64 bytes) in base64url: 86 characters. */
const SIGNATURE = /^[A-Za-z0-9_-]{86}$/;
/** A nonce: 16 to 64 base64url characters (the CLI sends 22, 128 random bits). */
const NONCE = /^[A-Za-z0-9_-]{16,64}$/;
/** A key id as `keys new --id` takes it and the config's key lines carry it. */
export const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$/;
/** An Ed25519 public key (32 bytes) in base64url: 43 characters. */
const RAW_PUBLIC_KEY = /^[A-Za-z0-9_-]{43}$/;
/** The public key line: `ed25519:<base64url key> [<key id>]`. */
const KEY_LINE = /^ed25519:([A-Za-z0-9_-]{43})(?:\s+(\S+))?$/;

/** What the CLI adds to an answer when it signs it: the fields the text covers beyond the answer's own, and the signature. */
export interface SignedApproval {
  workflowId: string;
  runId: string;
  decision: 'approve' | 'reject';
  /** When it was signed (ISO 8601). */
  at: string;
  /** Random, once per answer: a second answer with the same nonce in a run is a replay. */
  nonce: string;
  /** Which of the approver's configured keys signed it. */
  keyId: string;
  /** Ed25519 over signingText(...), base64url. */
  signature: string;
}

/** The answer fields a signature covers, with the signed ones. */
export interface SignedFields {
  by: string;
  step: string;
  confirm?: string;
  comment?: string;
  workflowId: string;
  runId: string;
  decision: 'approve' | 'reject';
  at: string;
  nonce: string;
  keyId: string;
}

/**
 * The exact text an approver's key signs: a JSON array, so no field (a comment may hold
 * newlines) can run into the next one, and every field has its own place. An absent confirm or
 * comment is `null`, distinct from an empty one.
 */
export function signingText(f: SignedFields): string {
  return JSON.stringify([
    SIGNING_VERSION,
    f.workflowId,
    f.runId,
    f.step,
    f.decision,
    f.by,
    f.confirm ?? null,
    f.comment ?? null,
    f.at,
    f.nonce,
    f.keyId,
  ]);
}

/** Why `value` is not acceptable as an answer's `signed` field, or undefined. Never repeats what was sent. */
export function signedProblem(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) return '"signed" must be an object like the CLI sends (runbook approve --key FILE)';
  const s = value as Record<string, unknown>;
  const extra = Object.keys(s).filter((k) => !['workflowId', 'runId', 'decision', 'at', 'nonce', 'keyId', 'signature'].includes(k));
  if (extra.length > 0) return `"signed" has unknown fields (${extra.length}): send only what the CLI signs`;
  const names =
    textProblem('signed.workflowId', s.workflowId, { name: true, required: true, max: 255 }) ??
    textProblem('signed.runId', s.runId, { name: true, required: true, max: MAX_NAME_CHARS }) ??
    textProblem('signed.at', s.at, { name: true, required: true, max: 40 }) ??
    textProblem('signed.keyId', s.keyId, { name: true, required: true, max: 64 });
  if (names) return names;
  if (s.decision !== 'approve' && s.decision !== 'reject') return '"signed.decision" must be "approve" or "reject"';
  if (typeof s.nonce !== 'string' || !NONCE.test(s.nonce)) return '"signed.nonce" must be 16 to 64 base64url characters';
  if (typeof s.signature !== 'string' || !SIGNATURE.test(s.signature)) return '"signed.signature" must be an Ed25519 signature in base64url (86 characters)';
  if (!KEY_ID.test(s.keyId as string)) return '"signed.keyId" is not a key id (letters, digits, ".", "_", "@", ":", "-"; at most 64)';
  if (Number.isNaN(Date.parse(s.at as string))) return '"signed.at" must be an ISO 8601 time';
  return undefined;
}

/** A public key from the config: its id and the raw Ed25519 key in base64url. */
export interface PublicKeyEntry {
  keyId: string;
  key: string;
}

/** The id of a key line without one: derived from the key itself, so it is stable and needs no hashing. */
export function defaultKeyId(key: string): string {
  return `key-${key.slice(0, 12)}`;
}

/** The config line for a public key, as `runbook keys new` prints it. */
export function publicKeyLine(key: string, keyId: string): string {
  return `ed25519:${key} ${keyId}`;
}

/** Parses one `approvals.keys` line, or says what is wrong with it. */
export function parsePublicKeyLine(line: string): PublicKeyEntry | { problem: string } {
  const m = KEY_LINE.exec(line.trim());
  if (!m || !RAW_PUBLIC_KEY.test(m[1]!)) {
    return { problem: 'expected a public key line as `runbook keys new` prints it: "ed25519:<43 base64url characters> <key id>"' };
  }
  const keyId = m[2] ?? defaultKeyId(m[1]!);
  if (!KEY_ID.test(keyId)) return { problem: 'the key id must be letters, digits, ".", "_", "@", ":" or "-" (at most 64), starting with a letter or digit' };
  return { keyId, key: m[1]! };
}
