import { policyOf } from '../../common/approvals.js';
import { ApplicationFailure, CancellationScope, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { ErrorTypes } from '../../common/errors.js';
import type {
  RedisCountCheck,
  RedisKeyCounts,
  RedisRestoreInput,
  RedisRestoreResult,
  RedisServerState,
  RedisSnapshotCheck,
  RedisSnapshotInput,
  RedisSnapshotResult,
} from '../../common/database/types.js';
import { PROCEDURES } from '../../common/procedures.js';
import { selectServices } from '../shared/health.js';
import { longRunning, quick } from '../shared/profiles.js';
import { RunContext } from '../shared/run-context.js';
import { withDatabaseLock } from './lock.js';
import { mb, shortRun, stamp } from './services.js';

/**
 * AlphaPulse 5.3, Redis disaster recovery: take an RDB snapshot (redis-snapshot), and
 * restore one (redis-restore): check the file, count what Redis holds now and what the file
 * holds, wait for a named human's approval, stop Redis through its driver, put the snapshot in
 * place of its dump file (the old one kept aside), start it, wait for PING and the end of
 * loading, and compare the key counts.
 */

const { loadPlan, redisOpsPlan, redisServerState, checkRedisSnapshot } = proxyActivities<Activities>(quick);
const { serviceAction, waitRedisDown, replaceRedisDump, waitRedisReady, takeRedisSnapshot } = proxyActivities<Activities>(longRunning);

const STOP_WAIT_SECONDS = 120;

function counts(c: RedisKeyCounts): string {
  const dbs = Object.entries(c);
  return dbs.length ? dbs.map(([db, n]) => `${db} ${n.keys}`).join(', ') : 'no keys';
}

function total(c: RedisKeyCounts): number {
  return Object.values(c).reduce((a, n) => a + n.keys, 0);
}

/**
 * Each database of the snapshot against the restored server. A key with a TTL may expire
 * between the scratch load and the real one, so fewer keys by at most the snapshot's volatile
 * ones is still a match; more keys, or fewer than that, is not.
 */
export function compareCounts(expected: RedisKeyCounts, actual: RedisKeyCounts): RedisCountCheck[] {
  const dbs = [...new Set([...Object.keys(expected), ...Object.keys(actual)])].sort((a, b) => Number(a.slice(2)) - Number(b.slice(2)));
  return dbs.map((db) => {
    const e = expected[db] ?? { keys: 0, expires: 0 };
    const a = actual[db]?.keys ?? 0;
    return { db, expected: e.keys, actual: a, volatile: e.expires, ok: a <= e.keys && a >= e.keys - e.expires };
  });
}

/** `redis-snapshot`: BGSAVE, wait for it, copy the dump file into the snapshots directory with a manifest. */
export async function redisSnapshot(rawInput?: RedisSnapshotInput): Promise<RedisSnapshotResult> {
  const input = await RunContext.input(PROCEDURES.redisSnapshot, rawInput);
  const ctx = new RunContext(PROCEDURES.redisSnapshot, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['snapshot', 'BGSAVE and copy the dump file'],
  ]);
  return ctx.run(async () => {
    const ops = await ctx.step('plan', () => redisOpsPlan({ service: input.service }), (p) => `snapshots in ${p.snapshotsDir}`);
    const snapshot = await ctx.step(
      'snapshot',
      () => takeRedisSnapshot({ service: ops.service, id: `${stamp()}-${shortRun()}` }),
      (s) => `${s.id}: ${mb(s.sizeBytes)}, ${counts(s.keyCountsAtSnapshot)}, sha256 ${s.sha256.slice(0, 12)}…`,
    );
    return { ok: true, snapshot, progress: ctx.progress };
  });
}

/** `redis-restore`: AlphaPulse 5.3 — restore a Redis server from an RDB snapshot after an approval confirmed with RESTORE. */
export async function redisRestore(rawInput?: RedisRestoreInput): Promise<RedisRestoreResult> {
  const input = await RunContext.input(PROCEDURES.redisRestore, rawInput);
  const ctx = new RunContext(PROCEDURES.redisRestore, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['check', 'Check the snapshot: RDB header, redis-check-rdb, keys it holds (scratch load)'],
    ['inspect', 'Read Redis: key counts, dir, dbfilename, persistence'],
    ['approve-restore', `Approve restoring ${input.service}`],
    ['stop', `Stop ${input.service} through its driver`],
    ['replace', 'Keep the dump file aside, put the snapshot in its place'],
    ['start', `Start ${input.service}`],
    ['wait-ready', 'Wait for PING and the end of loading'],
    ['verify', 'Compare key counts with the snapshot'],
  ]);
  return ctx.run(async () => {
    const started = Date.now();
    const { plan, ops } = await ctx.step(
      'plan',
      async () => ({ plan: await loadPlan({ procedure: PROCEDURES.redisRestore }), ops: await redisOpsPlan({ service: input.service }) }),
      (r) => `snapshots in ${r.ops.snapshotsDir}`,
    );
    selectServices(plan, [ops.service], 'service');
    if (!ops.managed) {
      throw ApplicationFailure.nonRetryable(
        `service ${ops.service} cannot be stopped and started by its driver: set services.${ops.service}.driver.stop and start`,
        ErrorTypes.InvalidConfig,
      );
    }
    const timeout = input.waitTimeoutSeconds ?? ops.readyTimeoutSeconds;
    const snap = await ctx.step(
      'check',
      () => checkRedisSnapshot({ service: ops.service, snapshotId: input.snapshotId }),
      (s) => `${s.id} (${mb(s.sizeBytes)}, ${s.header}, ${s.checkedWith === 'redis-check-rdb' ? 'redis-check-rdb OK' : 'header only: redis-check-rdb not found'}): ${counts(s.expected)} (${s.expectedFrom})`,
    );
    const before = await ctx.step(
      'inspect',
      async () => {
        const st = await redisServerState({ service: ops.service });
        if (st.appendonly) {
          throw ApplicationFailure.nonRetryable(
            `${ops.service} has appendonly yes: at start Redis loads the AOF, not ${st.dbfilename}, so the snapshot would be ignored; turn AOF off for the restore (CONFIG SET appendonly no, and in its config file) and run again`,
            ErrorTypes.InvalidConfig,
          );
        }
        if (st.role !== 'master') {
          throw ApplicationFailure.nonRetryable(
            `${ops.service} is a ${st.role}: it would resync from its master and drop the snapshot; restore the master, or detach this one first (REPLICAOF NO ONE)`,
            ErrorTypes.InvalidInput,
          );
        }
        return st;
      },
      (s) => `pid ${s.pid}, ${counts(s.keyCounts)}; ${s.dir}/${s.dbfilename}`,
    );
    const keepAs = `${before.dbfilename}.replaced-${stamp()}-${shortRun()}`;
    // One destructive run per Redis, as per database: the same lock, named redis:<service>.
    const lockPlan = { environment: plan.environment, database: `redis:${ops.service}`, lock: ops.lock };
    const holder = { workflowId: workflowInfo().workflowId, procedure: PROCEDURES.redisRestore, requestedBy: input.requestedBy ?? 'unknown' };
    return withDatabaseLock(lockPlan, holder, async () => {
      const record = await ctx.requestApproval({
        step: 'approve-restore',
        summary: [
          `Restore Redis ${ops.service} from snapshot ${snap.id}${snap.takenAt ? ` (taken ${snap.takenAt})` : ''}: ${total(snap.expected)} keys (${counts(snap.expected)}) replace the ${total(before.keyCounts)} it holds now (${counts(before.keyCounts)}).`,
          `Stops ${ops.service} (clients are disconnected until it has loaded); writes made since the snapshot are lost; the current ${before.dbfilename} is kept as ${keepAs} in ${before.dir}.`,
        ].join(' '),
        destructive: true,
        confirmPhrase: 'RESTORE',
        policy: policyOf(plan),
        timeoutSeconds: input.approvalTimeoutSeconds ?? plan.approvalTimeoutSeconds,
      });
      RunContext.failUnlessApproved(record, `${ops.service} was not stopped and its data is unchanged`);
      const done = await stopReplaceStart(ctx, { service: ops.service, snap, before, keepAs, timeoutSeconds: timeout });
      return {
        ok: true,
        service: ops.service,
        snapshotId: snap.id,
        expectedFrom: snap.expectedFrom,
        before: before.keyCounts,
        after: done.ready.counts,
        counts: done.checked,
        keptAs: done.keptAs,
        pidBefore: before.pid,
        pidAfter: done.ready.pid,
        commands: done.commands,
        durationMs: Date.now() - started,
        approvals: ctx.approvals,
        refusals: ctx.refusals,
        refusalsDropped: ctx.refusalsDropped,
        progress: ctx.progress,
      };
    });
  });
}

/**
 * redis-restore after its approval: stop, replace the dump file, start, wait, compare. Before the
 * dump file is replaced a failure starts Redis again on its own data; after, a human decides.
 */
async function stopReplaceStart(
  ctx: RunContext,
  x: { service: string; snap: RedisSnapshotCheck; before: RedisServerState; keepAs: string; timeoutSeconds: number },
): Promise<{ commands: string[]; keptAs: string | null; ready: { pid: number; counts: RedisKeyCounts; waitedMs: number }; checked: RedisCountCheck[] }> {
  const commands: string[] = [];
  let replaced = false;
  try {
    const stop = await ctx.step(
      'stop',
      async () => {
        const done = await serviceAction({ service: x.service, action: 'stop' });
        await waitRedisDown({ service: x.service, timeoutSeconds: STOP_WAIT_SECONDS });
        return done;
      },
      (r) => r.command,
    );
    commands.push(stop.command);
    const swap = await ctx.step(
      'replace',
      () => replaceRedisDump({ service: x.service, snapshotId: x.snap.id, sha256: x.snap.sha256, dir: x.before.dir, dbfilename: x.before.dbfilename, keepAs: x.keepAs }),
      (r) => `${r.target} is ${x.snap.id}${r.keptAs ? `; previous kept as ${r.keptAs}` : '; there was no previous dump file'}`,
    );
    replaced = true;
    const start = await ctx.step('start', () => serviceAction({ service: x.service, action: 'start' }), (r) => r.command);
    commands.push(start.command);
    const ready = await ctx.step(
      'wait-ready',
      () => waitRedisReady({ service: x.service, timeoutSeconds: x.timeoutSeconds }),
      (r) => `pid ${r.pid} answered after ${Math.round(r.waitedMs / 100) / 10} s: ${counts(r.counts)}`,
    );
    const checked = await ctx.step(
      'verify',
      async () => {
        const c = compareCounts(x.snap.expected, ready.counts);
        const bad = c.filter((x) => !x.ok);
        if (bad.length > 0) {
          throw ApplicationFailure.nonRetryable(
            `${x.service} does not hold snapshot ${x.snap.id}: ${bad.map((b) => `${b.db} has ${b.actual} keys, expected ${b.expected}`).join('; ')}; Redis is running; the previous dump file is ${swap.keptAs ?? '(none)'}`,
            'RestoreVerificationFailed',
          );
        }
        return c;
      },
      (c) => c.map((x) => `${x.db}: ${x.actual} of ${x.expected}`).join(', ') || 'no keys in the snapshot',
    );
    return { commands, keptAs: swap.keptAs, ready, checked };
  } catch (err) {
    // Before the dump file is replaced Redis comes back with its own data; after, a human
    // decides (the kept file is named in the failure).
    if (!replaced) {
      await CancellationScope.nonCancellable(() => serviceAction({ service: x.service, action: 'start' }).catch(() => undefined));
    }
    throw err;
  }
}
