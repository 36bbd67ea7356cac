import type { Command } from 'commander';
import { clip } from '../common/bounds.js';
import type { ApprovalRecord, RefusedApproval, Verification } from '../common/types.js';

/** One answer a run received, as the audit shows it. */
export interface AuditEntry {
  at: string;
  step: string;
  /** The name the answer claimed; with `verified` a key, the identity that key proves. */
  by: string;
  answer: 'approve' | 'reject' | 'timeout';
  outcome: 'accepted' | 'refused' | 'timed-out';
  /**
   * `key`: signed with `keyId`, one of `by`'s configured keys. `unsigned`: accepted without a
   * signature (approvals.requireSignatures off). `unverified`: accepted by a run recorded before
   * answers were verified. `claimed`: a refused answer (its keyId, if any, is only what it named).
   */
  verified: 'key' | 'unsigned' | 'unverified' | 'claimed';
  keyId?: string;
  comment?: string;
  /** Why a refused answer was refused; why a step timed out. */
  reason?: string;
}

function proof(v: Verification | undefined): Pick<AuditEntry, 'verified' | 'keyId'> {
  if (v === undefined) return { verified: 'unverified' };
  if (v === 'unsigned') return { verified: 'unsigned' };
  return { verified: 'key', keyId: v.keyId };
}

/** Every answer in time order: accepted ones from the decisions (each vote of a quorum), refused ones with their reasons. */
export function auditEntries(approvals: readonly ApprovalRecord[], refusals: readonly RefusedApproval[]): AuditEntry[] {
  const out: AuditEntry[] = [];
  for (const r of approvals) {
    for (const v of r.votes ?? []) {
      out.push({ at: v.at, step: r.step, by: v.by, answer: 'approve', outcome: 'accepted', ...proof(v.verified), ...(v.comment ? { comment: v.comment } : {}) });
    }
    if (r.decision === 'timed-out') {
      out.push({ at: r.at, step: r.step, by: '', answer: 'timeout', outcome: 'timed-out', verified: 'claimed', ...(r.comment ? { reason: r.comment } : {}) });
    } else if (r.decision === 'rejected' || !r.votes?.length) {
      // A quorum's approval is its votes; a reject, or a single approval, is the record itself.
      out.push({
        at: r.at,
        step: r.step,
        by: r.by ?? '',
        answer: r.decision === 'rejected' ? 'reject' : 'approve',
        outcome: 'accepted',
        ...proof(r.verified),
        ...(r.comment ? { comment: r.comment } : {}),
      });
    }
  }
  for (const f of refusals) {
    out.push({ at: f.at, step: f.step, by: f.by, answer: f.answer, outcome: 'refused', verified: 'claimed', ...(f.keyId ? { keyId: f.keyId } : {}), reason: f.reason });
  }
  return out.sort((a, b) => a.at.localeCompare(b.at));
}

/** One line per answer: time, step, outcome, who and how that was proven. */
export function auditLine(e: AuditEntry): string {
  const who = e.by ? clip(e.by) : '(nobody)';
  const how =
    e.verified === 'key'
      ? `signed, key ${e.keyId}`
      : e.verified === 'unsigned'
        ? 'UNSIGNED (accepted without a signature)'
        : e.verified === 'unverified'
          ? 'not verified (recorded before answers were verified)'
          : e.keyId
            ? `claimed key ${clip(e.keyId, 64)}`
            : 'unsigned';
  const what = e.outcome === 'timed-out' ? 'timed out' : `${e.answer} ${e.outcome}`;
  const tail = e.reason ? `: ${clip(e.reason, 500)}` : e.comment ? ` ("${clip(e.comment, 300)}")` : '';
  return `${e.at}  ${e.step}  ${what}  by ${who}  [${e.outcome === 'timed-out' ? 'no answer' : how}]${tail}`;
}

/** `runbook audit <workflowId>`: every answer a run received, accepted or refused, and how each was verified. */
export function registerAuditCommand(program: Command): void {
  program
    .command('audit')
    .description('every approval answer of a run: who, with which key, when, accepted or refused (and why); flags answers accepted unsigned')
    .argument('<workflowId>')
    .option('--json', 'print JSON')
    .action(async (workflowId: string, opts: { json?: boolean }) => {
      const [{ connectCli }, { runStatus }, { approvalsQuery }] = await Promise.all([
        import('./connect.js'),
        import('./operations.js'),
        import('../common/messages.js'),
      ]);
      const { client, connection } = await connectCli();
      try {
        const s = await runStatus(client, workflowId);
        let approvals = s.approvals?.approvals ?? s.closed?.approvals ?? [];
        let refusals: RefusedApproval[] = (s.approvals?.refusals as RefusedApproval[] | undefined) ?? [];
        let refusalsDropped = (s.approvals as { refusalsDropped?: number } | undefined)?.refusalsDropped ?? 0;
        let note: string | undefined;
        if (!s.approvals) {
          // A closed run's refused answers are in its state: a worker answers the query by replaying it.
          const handle = client.workflow.getHandle(workflowId, s.runId);
          let timer: NodeJS.Timeout | undefined;
          const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), 10_000)));
          const state = await Promise.race([handle.query(approvalsQuery).catch(() => undefined), late]).finally(() => clearTimeout(timer));
          if (state) ({ approvals, refusals, refusalsDropped } = state);
          else note = 'refused answers not shown: no worker answered the query for this closed run (start one: runbook worker)';
        }
        const entries = auditEntries(approvals, refusals);
        if (opts.json) {
          console.log(JSON.stringify({ workflowId, runId: s.runId, status: s.status, entries, refusalsDropped, ...(note ? { note } : {}) }, null, 2));
          return;
        }
        console.log(`${workflowId}  ${s.procedure}  ${s.status}`);
        if (entries.length === 0) console.log('  no answers');
        for (const e of entries) console.log(`  ${auditLine(e)}`);
        if (refusalsDropped > 0) console.log(`  (${refusalsDropped} more refused answers were only counted)`);
        const unsigned = entries.filter((e) => e.outcome === 'accepted' && e.verified === 'unsigned').length;
        if (unsigned > 0) console.log(`  warning: ${unsigned} answer(s) accepted unsigned: their names are claims, not proof`);
        if (note) console.log(`  ${note}`);
      } finally {
        await connection.close();
      }
    });
}
