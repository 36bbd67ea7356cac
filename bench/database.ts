/**
 * Database benchmarks, printed as tables. Not part of `npm test`.
 *   npx tsx bench/database.ts            (BENCH_DB_ROWS=4000000 for a ~1 GB database)
 * Starts its own Temporal dev server (in memory) unless TEMPORAL_ADDRESS is set, and a
 * real PostgreSQL cluster with WAL archiving. Measures:
 *   1. db-backup against plain `pg_dump -Fc` of the same database (throughput ratio), and
 *      directory format with 2 jobs against 1;
 *   2. pitr-restore wall time against the same steps by hand (copy base backup, recovery
 *      settings, start, wait for promotion);
 *   3. restore-drill RTO and RPO;
 *   4. db-backup to object storage (a real Versity S3 gateway) against pg_dump, pg_restore --list
 *      and an upload by hand, and the restore drill's RTO from object storage on a machine
 *      without the local backups. BENCH_DB_ONLY=object-storage runs only this part,
 *      BENCH_DB_ONLY=backup only part 1.
 */
import { chmod, chown, mkdir, mkdtemp, rm, stat, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
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
  if (only !== 'backup') await objectStorageBench({ root, size, appUrl, binDir: pgs.binDir, pgEnv: pgEnv0, address, namespace, native, client });
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
    rows.push({ variant: 'db-backup (custom: dump hashed as written, pg_restore --list, retention)', best_ms: best(wfMs), db_MB_per_s: mbps(best(wfMs)) });
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

    // 2. PITR: base backup, more writes, target T, then the runbook vs the same steps by hand.
    await client.workflow.execute('db-base-backup', { taskQueue, workflowId: `bench-base-${Date.now()}`, args: [{ database: 'app', requestedBy: 'bench' }] });
    await q(appUrl, `INSERT INTO events SELECT g, now(), md5(g::text) FROM generate_series(${ROWS + 1}, ${ROWS + 100000}) g`);
    await sleep(1100);
    const T = (await q(appUrl, 'SELECT clock_timestamp() AS t'))[0]!.t as Date;
    await sleep(1100);
    await q(appUrl, `INSERT INTO events SELECT g, now(), 'after' FROM generate_series(${ROWS + 100001}, ${ROWS + 100100}) g`);
    await q(appUrl, 'SELECT pg_switch_wal()');
    await sleep(2000);

    const baseId = (await import('node:fs/promises')).readdir(path.join(root, 'base')).then((d) => d.sort().at(-1)!);
    const byHandDir = path.join(root, 'byhand');
    const tHand = Date.now();
    await execa(asPostgres(['cp', '-a', path.join(root, 'base', await baseId, 'data'), byHandDir])[0]!, asPostgres(['cp', '-a', path.join(root, 'base', await baseId, 'data'), byHandDir]).slice(1), { cwd: '/' });
    await appendFile(path.join(byHandDir, 'postgresql.auto.conf'), `\nrestore_command = 'cp "${root}/wal/%f" "%p"'\nrecovery_target_time = '${T.toISOString().replace('T', ' ').replace('Z', '+00')}'\nrecovery_target_action = 'promote'\n`);
    await writeFile(path.join(byHandDir, 'recovery.signal'), '');
    if (isRoot) await execa('chown', ['postgres:postgres', path.join(byHandDir, 'recovery.signal')]);
    const port = await freePort();
    const start = asPostgres([path.join(pgs.binDir, 'pg_ctl'), '-D', byHandDir, '-l', path.join(root, 'byhand.log'), '-o', `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c archive_mode=off`, 'start']);
    await execa(start[0]!, start.slice(1), { cwd: '/' });
    const handUrl = `postgres://postgres@127.0.0.1:${port}/app`;
    for (;;) {
      const r = await q(handUrl, 'SELECT pg_is_in_recovery() AS rec').catch(() => [{ rec: true }]);
      if (r[0]!.rec === false) break;
      await sleep(100);
    }
    const byHandMs = Date.now() - tHand;
    const stop = asPostgres([path.join(pgs.binDir, 'pg_ctl'), '-D', byHandDir, '-m', 'fast', 'stop']);
    await execa(stop[0]!, stop.slice(1), { cwd: '/' });

    const handle = await client.workflow.start('pitr-restore', { taskQueue, workflowId: `bench-pitr-${Date.now()}`, args: [{ database: 'app', targetTime: T.toISOString(), requestedBy: 'alice' }] });
    for (let p = await handle.query(pendingApprovalQuery); !p; p = await handle.query(pendingApprovalQuery)) await sleep(50);
    // Wall time from the approval: the part a human does not wait on.
    const tWf = Date.now();
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'RESTORE', step: 'approve-restore' }] });
    let restoredMs = 0;
    for (;;) {
      const p = await handle.query(pendingApprovalQuery);
      if (p?.step === 'approve-cleanup') {
        restoredMs = Date.now() - tWf;
        break;
      }
      await sleep(50);
    }
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', step: 'approve-cleanup' }] });
    const pr = (await handle.result()) as PitrRestoreResult;
    table('PITR to the same target - target <= 1.3x by hand', [
      { variant: 'by hand: cp base backup, recovery settings, start, wait for promotion', ms: byHandMs, ratio: '1.00' },
      {
        variant: 'pitr-restore: approval -> recovered, verified, switched, healthy',
        ms: restoredMs,
        ratio: (restoredMs / byHandMs).toFixed(2),
      },
    ]);
    console.log(`recovered rows: ${JSON.stringify(pr.counts)}`);

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
