import { mkdtemp, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { verifyApproval, type VerifyApprovalRequest } from '../../activities/approvals.js';
import { parsePublicKeyLine, signedProblem, signingText, type SignedFields } from '../../common/signed-approvals.js';
import type { RunbookConfig } from '../../common/config-schema.js';
import { ApprovalKeyError, createApproverKeyFile, loadApproverKey, signAnswer, type ApproverKey } from '../../lib/approval-keys.js';
import { ConfigError, parseConfig } from '../../lib/config.js';

/** The signed text, the key files and the worker's verdict on an answer, without a server. */

let dir: string;
let bob: ApproverKey;
let bobLine: string;
let carol: ApproverKey;
let carolLine: string;

const target = { workflowId: 'stack-stop-demo-1', runId: 'run-1', decision: 'approve' as const };
const answer = { by: 'bob', step: 'approve-delete', confirm: 'DELETE', comment: 'backup checked' };

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'runbook-signing-'));
  bobLine = (await createApproverKeyFile(path.join(dir, 'bob.key'), 'bob-1')).line;
  bob = await loadApproverKey(path.join(dir, 'bob.key'));
  carolLine = (await createApproverKeyFile(path.join(dir, 'carol.key'))).line;
  carol = await loadApproverKey(path.join(dir, 'carol.key'));
});

function config(approvals: Record<string, unknown>): RunbookConfig {
  return parseConfig(
    stringify({ services: [{ name: 'store', group: 'infra', driver: { type: 'command', stop: ['true'] } }], approvals: { approvers: { default: ['bob', 'carol'] }, ...approvals } }),
    'test.yaml',
  );
}

function configIssues(approvals: Record<string, unknown>): Array<{ path: string; message: string }> {
  try {
    config(approvals);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('expected the config to be refused');
}

function request(over: Partial<VerifyApprovalRequest> = {}, signedWith = bob, now = new Date()): VerifyApprovalRequest {
  return { ...target, answer: { ...answer, signed: signAnswer(signedWith, answer, target, now) }, ...over };
}

describe('the signed text', () => {
  const fields: SignedFields = { ...answer, ...target, at: '2026-11-30T10:00:00.000Z', nonce: 'n'.repeat(22), keyId: 'bob-1' };

  it('covers every field in its own place: nothing can move from one field into another', () => {
    expect(JSON.parse(signingText(fields))).toEqual([
      'runbook-approval-v1', 'stack-stop-demo-1', 'run-1', 'approve-delete', 'approve', 'bob', 'DELETE', 'backup checked', '2026-11-30T10:00:00.000Z', 'n'.repeat(22), 'bob-1',
    ]);
    // A comment with a newline and a field boundary inside is still one field.
    expect(signingText({ ...fields, comment: 'a",\n"b' })).not.toBe(signingText({ ...fields, comment: 'a', confirm: 'b' }));
    // An absent confirm is not an empty one.
    expect(signingText({ ...fields, confirm: undefined })).not.toBe(signingText({ ...fields, confirm: '' }));
  });

  it('bounds the signed part of an answer without repeating it', () => {
    const good = signAnswer(bob, answer, target);
    expect(signedProblem(good)).toBeUndefined();
    expect(signedProblem(undefined)).toBeUndefined();
    expect(signedProblem('x')).toMatch(/"signed" must be an object/);
    expect(signedProblem({ ...good, extra: 1 })).toMatch(/unknown fields/);
    expect(signedProblem({ ...good, runId: 'r'.repeat(5000) })).toMatch(/"signed.runId" is too long \(5000 characters; at most 128\)/);
    expect(signedProblem({ ...good, nonce: 'short' })).toMatch(/"signed.nonce" must be 16 to 64/);
    expect(signedProblem({ ...good, signature: 'A'.repeat(85) })).toMatch(/Ed25519 signature/);
    expect(signedProblem({ ...good, decision: 'maybe' })).toMatch(/"signed.decision"/);
    expect(signedProblem({ ...good, at: 'yesterday' })).toMatch(/ISO 8601/);
    expect(signedProblem({ ...good, keyId: 'bad id' })).toMatch(/"signed.keyId"/);
  });
});

describe('approver keys', () => {
  it('keys new writes a private key only its owner can read, never over an existing file, and prints the config line', async () => {
    expect(((await stat(path.join(dir, 'bob.key'))).mode & 0o777).toString(8)).toBe('600');
    expect(bobLine).toMatch(/^ed25519:[A-Za-z0-9_-]{43} bob-1$/);
    expect(parsePublicKeyLine(bobLine)).toEqual({ keyId: 'bob-1', key: bob.publicKey });
    expect(carol.keyId).toMatch(/^key-[A-Za-z0-9_-]{12}$/);
    await expect(createApproverKeyFile(path.join(dir, 'bob.key'))).rejects.toThrow(/already exists/);
    await expect(createApproverKeyFile(path.join(dir, 'x.key'), 'no spaces allowed')).rejects.toThrow(ApprovalKeyError);
  });

  it('refuses a key file others can read, and one that is not a key', async () => {
    const open = path.join(dir, 'open.key');
    await writeFile(open, '{}', { mode: 0o644 });
    await expect(loadApproverKey(open)).rejects.toThrow(/can be read by other users.*chmod 600/);
    const junk = path.join(dir, 'junk.key');
    await writeFile(junk, '{"kty": "OKP"}', { mode: 0o600 });
    await expect(loadApproverKey(junk)).rejects.toThrow(/not an Ed25519 private key/);
  });

  it('the config names the field of a bad key line, a key id used twice, a key shared by two people', () => {
    expect(configIssues({ keys: { bob: ['ssh-ed25519 AAAA'] } })).toEqual([{ path: 'approvals.keys.bob[0]', message: expect.stringMatching(/public key line as `runbook keys new` prints it/) }]);
    expect(configIssues({ keys: { bob: [bobLine, carolLine.replace(/ \S+$/, ' bob-1')] } })).toEqual([
      { path: 'approvals.keys.bob[1]', message: expect.stringMatching(/two keys with the id "bob-1"/) },
    ]);
    expect(configIssues({ keys: { bob: [bobLine], carol: [bobLine] } })).toEqual([{ path: 'approvals.keys.carol[0]', message: expect.stringMatching(/also bob's/) }]);
    expect(configIssues({ requireSignatures: 'yes' })[0]?.path).toBe('approvals.requireSignatures');
    expect(config({}).approvals).toMatchObject({ keys: {}, requireSignatures: false });
  });
});

describe('verifying an answer in the worker', () => {
  let deps: { config: RunbookConfig };
  beforeAll(() => {
    deps = { config: config({ keys: { bob: [bobLine], carol: [carolLine] }, requireSignatures: true }) };
  });

  it('accepts an answer signed with one of the approver\'s keys, for this run and decision, now', () => {
    expect(verifyApproval(deps, request())).toEqual({ ok: true, verified: { keyId: 'bob-1' } });
  });

  it('refuses an altered answer, another person\'s key, an unknown or revoked key', () => {
    const signed = request();
    expect(verifyApproval(deps, { ...signed, answer: { ...signed.answer, comment: 'changed' } })).toMatchObject({ ok: false, reason: expect.stringMatching(/^bad signature/) });
    expect(verifyApproval(deps, { ...signed, answer: { ...signed.answer, by: 'carol' } })).toMatchObject({ reason: expect.stringMatching(/key bob-1 is not \(or no longer\) one of carol's keys/) });
    expect(verifyApproval(deps, request({}, carol))).toMatchObject({ reason: expect.stringMatching(/is not \(or no longer\) one of bob's keys/) });
    const revoked = { config: config({ keys: { bob: [carolLine.replace(/ \S+$/, ' bob-2')] } }) };
    expect(verifyApproval(revoked, request())).toMatchObject({ reason: expect.stringMatching(/key bob-1 is not \(or no longer\) one of bob's keys/) });
    expect(verifyApproval({ config: config({}) }, request())).toMatchObject({ reason: expect.stringMatching(/bob has no key in approvals.keys/) });
  });

  it('refuses an answer for another run or decision, an expired one, one from the future', () => {
    expect(verifyApproval(deps, request({ runId: 'run-2' }))).toMatchObject({ reason: expect.stringMatching(/signed for another run \(stack-stop-demo-1 run run-1\)/) });
    expect(verifyApproval(deps, request({ decision: 'reject' }))).toMatchObject({ reason: expect.stringMatching(/signed as approve but sent as reject/) });
    const old = request({}, bob, new Date(Date.now() - 11 * 60_000));
    expect(verifyApproval(deps, old)).toMatchObject({ reason: expect.stringMatching(/^expired: signed at .*, more than 10 minutes ago/) });
    const ahead = request({}, bob, new Date(Date.now() + 5 * 60_000));
    expect(verifyApproval(deps, ahead)).toMatchObject({ reason: expect.stringMatching(/in the future/) });
  });

  it('unsigned: refused with how to approve when signatures are required, else accepted and marked unsigned', () => {
    const unsigned: VerifyApprovalRequest = { ...target, answer };
    expect(verifyApproval(deps, unsigned)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('runbook approve stack-stop-demo-1 --as bob --key <your key file>'),
    });
    expect(verifyApproval({ config: config({ keys: { bob: [bobLine] } }) }, unsigned)).toEqual({ ok: true, verified: 'unsigned' });
  });
});
