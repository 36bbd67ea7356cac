/**
 * Database benchmarks, printed as tables. Not part of `npm test`.
 *   npx tsx bench/database.ts            (default 1.5 M rows; BENCH_DB_ROWS=4000000: 540 MB, 7500000: ~1 GB)
 * Starts its own Temporal dev server (in memory) unless TEMPORAL_ADDRESS is set, and a
 * real PostgreSQL cluster with WAL archiving. Measures:
 *   1. db-backup against plain `pg_dump -Fc` of the same database (throughput ratio), and
 *      directory format with 2 jobs against 1;
 *   2. pitr-restore wall time against the same steps by hand (copy base backup, recovery
 *      settings, start, wait for promotion), from the approval until it asks for the cleanup;
 *   3. restore-drill RTO and RPO;
 *   4. db-backup to object storage (a real Versity S3 gateway) against pg_dump, pg_restore --list
 *      and an upload by hand, and the restore drill's RTO from object storage on a machine
 *      without the local backups. BENCH_DB_ONLY=object-storage runs only this part,
 *      BENCH_DB_ONLY=backup only part 1, BENCH_DB_ONLY=pitr only part 2 with BENCH_DB_ROUNDS
 *      pairs (a new base backup each; by hand and runbook order alternated) and, per pair, the
 *      runbook's step and activity times from its history.
 */
import { chmod, chown, mkdir, mkdtemp, readdir, rename, rm, stat, writeFile, appendFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import pg from 'pg';
import { stringify } from 'yaml';
import type { DbBackupResult, PitrRestoreResult, RestoreDrillResult } from '../common/database/types.js';
import { approveUpdate, pendingApprovalQuery } from '../common/messages.js';
import { parseConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { asPostgres, pgCtl } from '../lib/local/index.js';
import { createReadStream } from 'node:fs';
import { Upload } from '@aws-sdk/lib-storage';
import { freePort, startPostgres } from '../tests/fixtures/servers.js';
import { startVersitygw } from '../tests/fixtures/versitygw.js';
import { bundleRunbookWorkflows, createRunbookWorker, installRuntime } from '../worker/main.js';
import { quietLogger as quiet, table } from './report.js';
import { benchTemporal } from './temporal.js';

const logger = createLogger({ component: 'bench' }, 'warn');
const ROWS = Number(process.env.BENCH_DB_ROWS ?? 1_500_000);
/** Runs of each variant, alternated (BENCH_DB_ROUNDS, default 2). */
const ROUNDS = Math.max(1, Number(process.env.BENCH_DB_ROUNDS ?? 2));
const isRoot = process.getuid?.() === 0;

/** Throughput ratio (reference time / runbook time) of each alternated pair, and their median: steadier than best-of under load. */
function pairRatios(ref: number[], runbook: number[]): string {
  const r = ref.map((t, i) => t / runbook[i]!);
  const sorted = [...r].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  const median = sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return `${r.map((x) => x.toFixed(2)).join(', ')} (median ${median.toFixed(2)})`;
}

async function q(url: string, text: string): Promise<pg.QueryResultRow[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text)).rows;
  } finally {
    await c.end();
  }
}

async function main(): Promise<void> {
  installRuntime({ logger });
  const temporal = await benchTemporal(logger);
  const { address, namespace, client, native } = temporal;
  const root = await mkdtemp(path.join(tmpdir(), 'runbook-bench-db-'));
  await mkdir(path.join(root, 'wal'));
  if (isRoot) {
    const uid = Number((await execa('id', ['-u', 'postgres'])).stdout);
    const gid = Number((await execa('id', ['-g', 'postgres'])).stdout);
    await chown(root, uid, gid);
    await chown(path.join(root, 'wal'), uid, gid);
  }
  await chmod(root, 0o755);
  const pgs = await startPostgres({ settings: { autovacuum: 'off', archive_mode: 'on', archive_command: `cp %p ${root}/wal/%f`, max_wal_size: '2GB' } });
  const appUrl = await pgs.createDatabase('app');
  console.log(`generating ${ROWS} rows...`);
  // Two tables of equal size: pg_dump --jobs parallelizes by table, so 2 jobs have two to share.
  const half = Math.floor(ROWS / 2);
  for (const [table, from, to] of [['events', 1, half], ['events_archive', half + 1, ROWS]] as const) {
    await q(appUrl, `CREATE TABLE ${table} AS SELECT g AS id, now() - g * interval '1 second' AS at, md5(g::text) || md5((g * 7)::text) AS body FROM generate_series(${from}, ${to}) g`);
    await q(appUrl, `ALTER TABLE ${table} ADD PRIMARY KEY (id)`);
  }
  const size = Number((await q(appUrl, `SELECT pg_database_size('app') AS s`))[0]!.s);
  const pgEnv0 = { PGHOST: '127.0.0.1', PGPORT: String(pgs.port), PGUSER: 'postgres', PGDATABASE: 'app' };
  const only = process.env.BENCH_DB_ONLY;
  if (only !== 'backup' && only !== 'pitr') await objectStorageBench({ root, size, appUrl, binDir: pgs.binDir, pgEnv: pgEnv0, address, namespace, native, client });
  if (only === 'object-storage') {
    await temporal.close();
    await pgs.stop();
    await rm(root, { recursive: true, force: true });
    return;
  }

  const ctl = (...args: string[]) => pgCtl(pgs, ...args);
  const config = parseConfig(
    stringify({
      environment: 'bench',
      services: [
        {
          name: 'postgres',
          group: 'infra',
          driver: { type: 'command', cwd: '/', start: ctl('-l', path.join(root, 'pg.log'), '-w', 'start'), stop: ctl('-m', 'fast', '-w', 'stop'), status: ctl('status') },
          probes: [{ type: 'postgres', url: appUrl }],
        },
      ],
      databases: [{ name: 'app', url: appUrl, service: 'postgres' }],
      approvals: { approvers: { default: ['alice', 'bob'] } },
      databaseOps: {
        backups: { repository: path.join(root, 'dumps'), retention: 10, verifyTables: { app: ['events'] } },
        pitr: [{ database: 'app', dataDir: pgs.dataDir, walArchive: path.join(root, 'wal'), baseBackups: path.join(root, 'base'), restoreDir: path.join(root, 'restore'), verifyTables: ['events'] }],
      },
    }),
    'bench.yaml',
  );
  const taskQueue = `bench-db-${Date.now()}`;
  const { worker } = await createRunbookWorker({
    loaded: { config, path: 'bench.yaml', dir: root },
    settings: { address, namespace, taskQueue },
    connection: native,
    logger,
    workflowBundle: await bundleRunbookWorkflows({ logger: quiet }),
  });
  const pgEnv = { PGHOST: '127.0.0.1', PGPORT: String(pgs.port), PGUSER: 'postgres', PGDATABASE: 'app' };

  await worker.runUntil(async () => {
    if (only !== 'pitr') {
      // 1. Backup throughput, alternating so caches favour neither.
      const run = async (input: Record<string, unknown>) => {
        const t = Date.now();
        const r = (await client.workflow.execute('db-backup', { taskQueue, workflowId: `bench-backup-${Date.now()}`, args: [{ database: 'app', requestedBy: 'bench', ...input }] })) as DbBackupResult;
        return { ms: Date.now() - t, bytes: r.backup.sizeBytes };
      };
      const raw = async (args: string[], out: string) => {
        const t = Date.now();
        await execa(path.join(pgs.binDir, 'pg_dump'), [...args, `--file=${out}`], { env: { ...process.env, ...pgEnv } });
        return Date.now() - t;
      };
      const rows: Array<Record<string, string | number>> = [];
      const rawMs: number[] = [];
      const wfMs: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        rawMs.push(await raw(['--format=custom'], path.join(root, `raw-${i}.dump`)));
        wfMs.push((await run({})).ms);
      }
      console.log(`alternated runs (ms): pg_dump -Fc ${rawMs.join(', ')}; db-backup ${wfMs.join(', ')}; ratio per pair ${pairRatios(rawMs, wfMs)}`);
      const best = (xs: number[]) => Math.min(...xs);
      const dumpBytes = (await stat(path.join(root, 'raw-0.dump'))).size;
      const mbps = (ms: number) => ((size / 1024 / 1024) / (ms / 1000)).toFixed(1);
      rows.push({ variant: 'plain pg_dump -Fc', best_ms: best(rawMs), db_MB_per_s: mbps(best(rawMs)) });
      rows.push({ variant: 'db-backup (custom: pg_dump --file, then hash, TOC, fsync, row counts side by side; verify; retention)', best_ms: best(wfMs), db_MB_per_s: mbps(best(wfMs)) });
      // Directory format, 1 job against 2, alternating like the pair above.
      const dir1Ms: number[] = [];
      const dir2Ms: number[] = [];
      for (let i = 0; i < 2; i++) {
        dir1Ms.push((await run({ format: 'directory', jobs: 1 })).ms);
        dir2Ms.push((await run({ format: 'directory', jobs: 2 })).ms);
      }
      const dir1 = best(dir1Ms);
      const dir2 = best(dir2Ms);
      rows.push({ variant: 'db-backup directory, 1 job', best_ms: dir1, db_MB_per_s: mbps(dir1) });
      rows.push({ variant: 'db-backup directory, 2 jobs', best_ms: dir2, db_MB_per_s: mbps(dir2) });
      table(
        `Backup of a ${(size / 1024 / 1024).toFixed(0)} MB database (${ROWS} rows, dump ${(dumpBytes / 1024 / 1024).toFixed(0)} MB) - target >= 0.95 of raw; ratio ${(best(rawMs) / best(wfMs)).toFixed(2)}`,
        rows,
      );
      console.log(`directory format over two equal tables: 2 jobs take ${(dir2 / dir1).toFixed(2)}x the time of 1 job (speed-up ${(dir1 / dir2).toFixed(2)}x)`);
      if (only === 'backup') return;
    }

    // 2. PITR: per round a base backup, more writes, target T, then the runbook and the same steps by hand (order alternated).
    const handMs: number[] = [];
    const switchedMs: number[] = [];
    const wfMs: number[] = [];
    for (let i = 0; i < (only === 'pitr' ? ROUNDS : 1); i++) {
      const r = await pitrRound({ root, client, taskQueue, appUrl, binDir: pgs.binDir, handFirst: i % 2 === 0 });
      handMs.push(r.byHandMs);
      switchedMs.push(r.switchedByHandMs);
      wfMs.push(r.restoredMs);
      console.log(
        `round ${i + 1} (${i % 2 === 0 ? 'by hand first' : 'runbook first'}, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}): by hand ${r.byHandMs} ms (${r.switchedByHandMs} ms with the count and the switch), pitr-restore ${r.restoredMs} ms (${(r.restoredMs / r.byHandMs).toFixed(2)}x; ${(r.restoredMs / r.switchedByHandMs).toFixed(2)}x of the whole by hand)`,
      );
      console.log(r.profile);
    }
    const ratios = wfMs.map((t, i) => t / handMs[i]!).sort((a, b) => a - b);
    const mid = ratios.length / 2;
    const median = ratios.length % 2 ? ratios[Math.floor(mid)]! : (ratios[mid - 1]! + ratios[mid]!) / 2;
    table(`PITR to the same target - target <= 1.3x by hand; ratio per pair (runbook / by hand) ${wfMs.map((t, i) => (t / handMs[i]!).toFixed(2)).join(', ')}, median ${median.toFixed(2)}`, [
      { variant: 'by hand: cp base backup, recovery settings, start, wait for promotion', best_ms: Math.min(...handMs), all_ms: handMs.join(', ') },
      { variant: 'by hand, the same and then count, stop both, move, start, check', best_ms: Math.min(...switchedMs), all_ms: switchedMs.join(', ') },
      { variant: 'pitr-restore: approval -> recovered, verified, switched, healthy', best_ms: Math.min(...wfMs), all_ms: wfMs.join(', ') },
    ]);
    console.log(`against the whole procedure by hand, per pair: ${wfMs.map((t, i) => (t / switchedMs[i]!).toFixed(2)).join(', ')}`);
    if (only === 'pitr') return;

    // 3. Restore drill.
    await client.workflow.execute('db-base-backup', { taskQueue, workflowId: `bench-base2-${Date.now()}`, args: [{ database: 'app', requestedBy: 'bench' }] });
    await q(appUrl, 'SELECT pg_switch_wal()');
    await sleep(1000);
    const drill = (await client.workflow.execute('restore-drill', { taskQueue, workflowId: `bench-drill-${Date.now()}`, args: [{ database: 'app', requestedBy: 'bench' }] })) as RestoreDrillResult;
    table('restore-drill (objectives: AlphaPulse 5.1, RTO 1 h, RPO 15 min)', [
      { measure: 'RTO (logical + PITR restore)', seconds: drill.rtoSeconds, objective: drill.objectives.rtoSeconds },
      { measure: 'RPO (age of the newest archived WAL)', seconds: drill.rpoSeconds, objective: drill.objectives.rpoSeconds },
      { measure: 'logical restore alone', seconds: (drill.logical?.restoreMs ?? 0) / 1000, objective: '-' },
      { measure: 'PITR alone', seconds: (drill.pitr?.restoreMs ?? 0) / 1000, objective: '-' },
    ]);
  });

  await temporal.close();
  await pgs.stop();
  await rm(root, { recursive: true, force: true });
}

/** Event time of a history event in ms since the epoch. */
function eventMs(e: { eventTime?: { seconds?: unknown; nanos?: number | null } | null }): number {
  const t = e.eventTime;
  return Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);
}

/**
 * One PITR pair: a base backup, writes, a target T, more writes, then the same recovery by hand
 * and by pitr-restore (in the order given). Returns both times and where the runbook's went: its
 * steps and each activity's schedule-to-start and start-to-close from the run's history.
 */
async function pitrRound(o: { root: string; client: BenchTemporal['client']; taskQueue: string; appUrl: string; binDir: string; handFirst: boolean }): Promise<{ byHandMs: number; switchedByHandMs: number; restoredMs: number; profile: string }> {
  const { root, client, taskQueue, appUrl } = o;
  await client.workflow.execute('db-base-backup', { taskQueue, workflowId: `bench-base-${Date.now()}`, args: [{ database: 'app', requestedBy: 'bench' }] });
  const next = Number((await q(appUrl, 'SELECT max(id) AS m FROM events'))[0]!.m) + 1;
  await q(appUrl, `INSERT INTO events SELECT g, now(), md5(g::text) FROM generate_series(${next}, ${next + 99999}) g`);
  await sleep(1100);
  const T = (await q(appUrl, 'SELECT clock_timestamp() AS t'))[0]!.t as Date;
  await sleep(1100);
  await q(appUrl, `INSERT INTO events SELECT g, now(), 'after' FROM generate_series(${next + 100000}, ${next + 100099}) g`);
  await q(appUrl, 'SELECT pg_switch_wal()');
  await sleep(2000);

  const pgCtlHand = async (...args: string[]) => {
    const argv = asPostgres([path.join(o.binDir, 'pg_ctl'), ...args]);
    await execa(argv[0]!, argv.slice(1), { cwd: '/' });
  };
  const byHand = async (): Promise<{ ms: number; switchedMs: number; phases: string }> => {
    const baseId = (await readdir(path.join(root, 'base'))).sort().at(-1)!;
    const byHandDir = path.join(root, 'byhand');
    // The switch by hand stops and replaces a stand-in for the live cluster (the same base backup
    // brought up on its own port, archiving off) so that the live cluster's timeline and archive
    // stay the runbook's.
    const standIn = path.join(root, 'byhand-live');
    for (const d of [byHandDir, standIn, `${standIn}.old`]) await rm(d, { recursive: true, force: true });
    const cpStandIn = asPostgres(['cp', '-a', path.join(root, 'base', baseId, 'data'), standIn]);
    await execa(cpStandIn[0]!, cpStandIn.slice(1), { cwd: '/' });
    const standInPort = await freePort();
    const standInOpts = `-p ${standInPort} -k ${root} -c listen_addresses=127.0.0.1 -c archive_mode=off`;
    await pgCtlHand('-D', standIn, '-l', path.join(root, 'byhand-live.log'), '-o', standInOpts, '-w', 'start');
    const tHand = Date.now();
    const cp = asPostgres(['cp', '-a', path.join(root, 'base', baseId, 'data'), byHandDir]);
    await execa(cp[0]!, cp.slice(1), { cwd: '/' });
    const tCopied = Date.now();
    await appendFile(path.join(byHandDir, 'postgresql.auto.conf'), `\nrestore_command = 'cp "${root}/wal/%f" "%p"'\nrecovery_target_time = '${T.toISOString().replace('T', ' ').replace('Z', '+00')}'\nrecovery_target_action = 'promote'\n`);
    await writeFile(path.join(byHandDir, 'recovery.signal'), '');
    if (isRoot) await execa('chown', ['postgres:postgres', path.join(byHandDir, 'recovery.signal')]);
    const port = await freePort();
    const start = asPostgres([path.join(o.binDir, 'pg_ctl'), '-D', byHandDir, '-l', path.join(root, 'byhand.log'), '-o', `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c archive_mode=off`, 'start']);
    await execa(start[0]!, start.slice(1), { cwd: '/' });
    const tStarted = Date.now();
    const handUrl = `postgres://postgres@127.0.0.1:${port}/app`;
    for (;;) {
      const r = await q(handUrl, 'SELECT pg_is_in_recovery() AS rec').catch(() => [{ rec: true }]);
      if (r[0]!.rec === false) break;
      await sleep(100);
    }
    const ms = Date.now() - tHand;
    // The rest of what pitr-restore does, typed one after the other: count the verified table,
    // stop both clusters, keep the old data directory, move the recovered one in, start, check.
    const counted = Number((await q(handUrl, 'SELECT count(*) AS n FROM events'))[0]!.n);
    const tCounted = Date.now();
    await pgCtlHand('-D', standIn, '-m', 'fast', '-w', 'stop');
    await pgCtlHand('-D', byHandDir, '-m', 'fast', '-w', 'stop');
    const tStopped = Date.now();
    await rename(standIn, `${standIn}.old`);
    await rename(byHandDir, standIn);
    await pgCtlHand('-D', standIn, '-l', path.join(root, 'byhand-live.log'), '-o', standInOpts, '-w', 'start');
    await q(`postgres://postgres@127.0.0.1:${standInPort}/app`, 'SELECT 1');
    const switchedMs = Date.now() - tHand;
    await pgCtlHand('-D', standIn, '-m', 'fast', '-w', 'stop');
    for (const d of [standIn, `${standIn}.old`]) await rm(d, { recursive: true, force: true });
    return {
      ms,
      switchedMs,
      phases: `cp ${tCopied - tHand} ms, settings and pg_ctl start ${tStarted - tCopied} ms, until promoted ${tHand + ms - tStarted} ms; then count (${counted} rows) ${tCounted - tHand - ms} ms, both stopped ${tStopped - tCounted} ms, moved, started and answering ${tHand + switchedMs - tStopped} ms`,
    };
  };

  const runbook = async (): Promise<{ ms: number; profile: string }> => {
    const handle = await client.workflow.start('pitr-restore', { taskQueue, workflowId: `bench-pitr-${Date.now()}`, args: [{ database: 'app', targetTime: T.toISOString(), requestedBy: 'alice' }] });
    for (let p = await handle.query(pendingApprovalQuery); !p; p = await handle.query(pendingApprovalQuery)) await sleep(50);
    // Wall time from the approval: the part a human does not wait on.
    const tWf = Date.now();
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'RESTORE', step: 'approve-restore' }] });
    // Asked rarely: each query is work for the server and the worker, which a poll every 50 ms
    // took from the run it measured. The end is the moment the run asked for approve-cleanup, by
    // its own clock (this machine's).
    for (let p = await handle.query(pendingApprovalQuery); p?.step !== 'approve-cleanup'; p = await handle.query(pendingApprovalQuery)) await sleep(500);
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', step: 'approve-cleanup' }] });
    const pr = (await handle.result()) as PitrRestoreResult;
    const asked = pr.progress.steps.find((st) => st.id === 'approve-cleanup')?.startedAt;
    if (!asked) throw new Error('pitr-restore recorded no start for approve-cleanup');
    const ms = Date.parse(asked) - tWf;
    const rel = (iso: string | number | undefined) => (iso === undefined ? '-' : String((typeof iso === 'number' ? iso : Date.parse(iso)) - tWf));
    const lines = [`  recovered rows ${JSON.stringify(pr.counts)}; steps (ms from the approval, start-end):`];
    for (const st of pr.progress.steps) if (st.startedAt && st.status !== 'skipped') lines.push(`    ${st.id.padEnd(16)} ${rel(st.startedAt)}-${rel(st.endedAt)}`);
    lines.push('  activities (scheduled / started / closed, ms from the approval):');
    const events = (await handle.fetchHistory()).events ?? [];
    const sched = new Map<string, { name: string; at: number; started?: number }>();
    for (const e of events) {
      const at = eventMs(e);
      if (at < tWf - 50) continue;
      const a = e.activityTaskScheduledEventAttributes;
      if (a) sched.set(String(e.eventId), { name: a.activityType?.name ?? '?', at });
      const s = e.activityTaskStartedEventAttributes;
      if (s) {
        const x = sched.get(String(s.scheduledEventId));
        if (x) x.started = at;
      }
      const c = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes;
      if (c) {
        const x = sched.get(String(c.scheduledEventId));
        if (x) lines.push(`    ${x.name.padEnd(16)} ${rel(x.at)} / ${rel(x.started)} / ${rel(at)}  (${at - (x.started ?? at)} ms running)`);
      }
      if (e.markerRecordedEventAttributes?.markerName === 'core_local_activity') lines.push(`    local activity    recorded ${rel(at)}`);
      if (e.workflowTaskCompletedEventAttributes) lines.push(`    workflow task done ${rel(at)}`);
    }
    return { ms, profile: lines.join('\n') };
  };

  let hand: { ms: number; switchedMs: number; phases: string };
  let wf: { ms: number; profile: string };
  if (o.handFirst) {
    hand = await byHand();
    wf = await runbook();
  } else {
    wf = await runbook();
    hand = await byHand();
  }
  return { byHandMs: hand.ms, switchedByHandMs: hand.switchedMs, restoredMs: wf.ms, profile: `  by hand: ${hand.phases}\n${wf.profile}` };
}

type BenchTemporal = Awaited<ReturnType<typeof benchTemporal>>;

/** 4. Off-host backups (AlphaPulse 3.4 / 5.2) against a real S3-compatible server. */
async function objectStorageBench(o: {
  root: string;
  size: number;
  appUrl: string;
  binDir: string;
  pgEnv: Record<string, string>;
  address: string;
  namespace: string;
  native: BenchTemporal['native'];
  client: BenchTemporal['client'];
}): Promise<void> {
  const s3 = await startVersitygw();
  const bucket = 'bench-backups';
  await s3.createBucket(bucket);
  const repository = path.join(o.root, 'dumps-s3');
  const config = parseConfig(
    stringify({
      environment: 'bench-s3',
      services: [{ name: 'postgres', group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'postgres', url: o.appUrl }] }],
      databases: [{ name: 'app', url: o.appUrl, service: 'postgres' }],
      approvals: { approvers: { default: ['alice', 'bob'] } },
      databaseOps: {
        backups: { repository, retention: 10, verifyTables: { app: ['events'] } },
        objectStorage: { endpoint: '${S3_ENDPOINT}', bucket, prefix: 'bench', forcePathStyle: true, accessKeyId: '${S3_ACCESS_KEY_ID}', secretAccessKey: '${S3_SECRET_ACCESS_KEY}' },
      },
    }),
    'bench-s3.yaml',
  );
  const taskQueue = `bench-db-s3-${Date.now()}`;
  const { worker } = await createRunbookWorker({
    loaded: { config, path: 'bench-s3.yaml', dir: o.root },
    settings: { address: o.address, namespace: o.namespace, taskQueue },
    connection: o.native,
    logger,
    env: { ...process.env, S3_ENDPOINT: s3.endpoint, S3_ACCESS_KEY_ID: s3.accessKeyId, S3_SECRET_ACCESS_KEY: s3.secretAccessKey },
    workflowBundle: await bundleRunbookWorkflows({ logger: quiet }),
  });
  const s3client = s3.client();
  try {
    await worker.runUntil(async () => {
      // By hand, as AlphaPulse 3.4 does it: pg_dump, upload (the same SDK, part size and parallelism), pg_restore --list.
      const byHand = async (i: number) => {
        const file = path.join(o.root, `hand-${i}.dump`);
        const t = Date.now();
        await execa(path.join(o.binDir, 'pg_dump'), ['--format=custom', `--file=${file}`], { env: { ...process.env, ...o.pgEnv } });
        await new Upload({ client: s3client, params: { Bucket: bucket, Key: `by-hand/${i}.dump`, Body: createReadStream(file) }, partSize: 16 * 1024 * 1024, queueSize: 4 }).done();
        await execa(path.join(o.binDir, 'pg_restore'), ['--list', file]);
        const ms = Date.now() - t;
        await rm(file, { force: true });
        return ms;
      };
      const runbook = async () => {
        const t = Date.now();
        const r = (await o.client.workflow.execute('db-backup', { taskQueue, workflowId: `bench-s3-backup-${Date.now()}`, args: [{ database: 'app', requestedBy: 'bench' }] })) as DbBackupResult;
        return { ms: Date.now() - t, r };
      };
      const handMs: number[] = [];
      const wfMs: number[] = [];
      let last: DbBackupResult | undefined;
      for (let i = 0; i < ROUNDS; i++) {
        handMs.push(await byHand(i));
        const w = await runbook();
        wfMs.push(w.ms);
        last = w.r;
      }
      console.log(`alternated runs (ms): by hand ${handMs.join(', ')}; db-backup ${wfMs.join(', ')}; ratio per pair ${pairRatios(handMs, wfMs)}`);
      const best = (xs: number[]) => Math.min(...xs);
      const mbps = (ms: number) => (o.size / 1024 / 1024 / (ms / 1000)).toFixed(1);
      const dumpMB = ((last?.backup.sizeBytes ?? 0) / 1024 / 1024).toFixed(0);
      table(`Backup to object storage (Versity S3 gateway ${s3.version}, ${(o.size / 1024 / 1024).toFixed(0)} MB database, ${dumpMB} MB dump) - target >= 0.9 of by hand; ratio ${(best(handMs) / best(wfMs)).toFixed(2)}`, [
        { variant: 'by hand: pg_dump -Fc, upload (SDK, 16 MiB x 4 parts), pg_restore --list', best_ms: best(handMs), db_MB_per_s: mbps(best(handMs)) },
        { variant: 'db-backup: dump hashed and uploaded as written (SHA-256 per part), pg_restore --list, manifest, retention', best_ms: best(wfMs), db_MB_per_s: mbps(best(wfMs)) },
        ...(last?.progress.steps ?? []).map((st) => {
          const ms = st.startedAt && st.endedAt ? Date.parse(st.endedAt) - Date.parse(st.startedAt) : 0;
          return { variant: `  step ${st.id} (last run)`, best_ms: ms, db_MB_per_s: st.id === 'upload' ? `${last?.upload?.throughputMBps ?? 0} (dump MB/s)` : '' };
        }),
      ]);

      const drill = async () => (await o.client.workflow.execute('restore-drill', { taskQueue, workflowId: `bench-s3-drill-${Date.now()}`, args: [{ database: 'app', requestedBy: 'bench' }] })) as RestoreDrillResult;
      const local = await drill();
      await rm(repository, { recursive: true, force: true });
      const remote = await drill();
      table('restore-drill RTO from object storage (no local backup: download + SHA-256 check + pg_restore + verify)', [
        { source: 'local repository', rto_seconds: local.rtoSeconds, fetched_from: '-' },
        { source: 'object storage only', rto_seconds: remote.rtoSeconds, fetched_from: remote.logical?.fetchedFrom ?? '-' },
      ]);
    });
  } finally {
    s3client.destroy();
    await s3.stop();
  }
}

await main();
