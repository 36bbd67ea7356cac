import type { ActivityDeps } from './deps.js';
import {
  parsePublicKeyLine,
  SIGNED_ANSWER_MAX_AGE_SECONDS,
  SIGNED_ANSWER_MAX_SKEW_SECONDS,
  type PublicKeyEntry,
} from '../common/signed-approvals.js';
import type { ApprovalInput, Verification } from '../common/types.js';
import { signatureValid } from '../lib/approval-keys.js';

export interface VerifyApprovalRequest {
  /** The run the answer reached, and the decision it was sent as (the signal or update name). */
  workflowId: string;
  runId: string;
  decision: 'approve' | 'reject';
  /** The answer as sent; its shape (bounds, `signed`'s fields) was checked by the workflow. */
  answer: ApprovalInput;
}

export type VerifyApprovalResult = { ok: true; verified: Verification } | { ok: false; reason: string };

/** How to give a signed answer, for refusals that must tell a person what to do instead. */
function howToSign(workflowId: string, by: string): string {
  return `approve with your key: runbook approve ${workflowId} --as ${by || '<your name>'} --key <your key file> (runbook keys new makes one; its line goes under approvals.keys.${by || '<your name>'})`;
}

/**
 * Checks an approval answer against the worker's config before the run counts it: signed with
 * one of the approver's keys in approvals.keys, for this run and decision, recently; or unsigned
 * where approvals.requireSignatures allows it. Runs in the worker (the workflow sandbox has no
 * crypto); its result is recorded, so a replay reads the same verdict. The nonce is the run's to
 * check (only it knows which answers it has seen).
 */
export function verifyApproval(deps: Pick<ActivityDeps, 'config'>, req: VerifyApprovalRequest, now = Date.now()): VerifyApprovalResult {
  const { answer } = req;
  const by = typeof answer.by === 'string' ? answer.by.trim() : '';
  const approvals = deps.config.approvals;
  const s = answer.signed;
  if (!s) {
    if (approvals.requireSignatures) {
      return { ok: false, reason: `unsigned answers are not accepted here (approvals.requireSignatures): ${howToSign(req.workflowId, by)}` };
    }
    return { ok: true, verified: 'unsigned' };
  }
  const keys: PublicKeyEntry[] = (approvals.keys[by] ?? []).flatMap((line) => {
    const parsed = parsePublicKeyLine(line);
    return 'problem' in parsed ? [] : [parsed];
  });
  if (keys.length === 0) return { ok: false, reason: `${by} has no key in approvals.keys, so no signature of theirs can be checked: add their public key line to the config` };
  const key = keys.find((k) => k.keyId === s.keyId);
  if (!key) {
    return { ok: false, reason: `key ${s.keyId} is not (or no longer) one of ${by}'s keys in approvals.keys (revoked, or never added): sign with a current key` };
  }
  const fields = {
    by: answer.by,
    step: answer.step,
    confirm: answer.confirm,
    comment: answer.comment,
    workflowId: s.workflowId,
    runId: s.runId,
    decision: s.decision,
    at: s.at,
    nonce: s.nonce,
    keyId: s.keyId,
  };
  if (!signatureValid(key.key, fields, s.signature)) {
    return { ok: false, reason: `bad signature: the answer does not match what key ${s.keyId} signed (altered, or signed with another key)` };
  }
  if (s.workflowId !== req.workflowId || s.runId !== req.runId) {
    return { ok: false, reason: `this answer was signed for another run (${s.workflowId} run ${s.runId}), not this one: sign a new answer for this run` };
  }
  if (s.decision !== req.decision) return { ok: false, reason: `this answer was signed as ${s.decision} but sent as ${req.decision}` };
  const at = Date.parse(s.at);
  if (now - at > SIGNED_ANSWER_MAX_AGE_SECONDS * 1000) {
    return { ok: false, reason: `expired: signed at ${s.at}, more than ${SIGNED_ANSWER_MAX_AGE_SECONDS / 60} minutes ago: sign a new answer` };
  }
  if (at - now > SIGNED_ANSWER_MAX_SKEW_SECONDS * 1000) {
    return { ok: false, reason: `signed at ${s.at}, in the future by the worker's clock: check the signer's clock` };
  }
  return { ok: true, verified: { keyId: key.keyId } };
}

/** The verification reads the worker's config: removing a key from it (and restarting) revokes it. */
export function createApprovalActivities(deps: ActivityDeps) {
  return {
    verifyApproval: async (req: VerifyApprovalRequest): Promise<VerifyApprovalResult> => verifyApproval(deps, req),
  };
}
