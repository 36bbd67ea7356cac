import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import pg from 'pg';
import { pendingApprovalQuery } from '../../common/messages.js';
import type { PendingApproval } from '../../common/types.js';

/** Shared by the database tests: SQL against the test cluster, and waiting for a run's approval. */

export async function sql<T extends pg.QueryResultRow = Record<string, unknown>>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text, values)).rows;
  } finally {
    await c.end();
  }
}

/** A content fingerprint of a table, so "the same rows" means the same rows, not just the same count. */
export async function tableDigest(url: string, table: string): Promise<string> {
  const rows = await sql<{ d: string | null }>(url, `SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) AS d FROM ${table} t`);
  return rows[0]?.d ?? 'empty';
}

export async function waitForPending(handle: WorkflowHandle, timeoutMs = 30_000): Promise<PendingApproval> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await handle.query(pendingApprovalQuery);
    if (p) return p;
    if (Date.now() > deadline) throw new Error(`no approval became pending in ${handle.workflowId}`);
    await sleep(100);
  }
}

export function pgConfigService(url: string) {
  return { name: 'postgres', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'postgres', url }] };
}

/** The innermost message of a failed run: an activity's own error sits under ActivityFailure. */
export function failureText(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  while (e instanceof Error) {
    parts.push(e.message);
    e = (e as Error & { cause?: unknown }).cause;
  }
  return parts.join(' <- ');
}
