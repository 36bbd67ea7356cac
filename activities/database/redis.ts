import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApplicationFailure } from '@temporalio/common';
import type { Redis } from 'ioredis';
import { ErrorTypes } from '../../common/errors.js';
import type { RedisOpsConfig } from '../../common/database/config.js';
import type {
  RedisKeyCounts,
  RedisOpsPlan,
  RedisServerState,
  RedisSnapshotCheck,
  RedisSnapshotManifest,
} from '../../common/database/types.js';
import { resolveEnvRefs } from '../../lib/env.js';
import { CommandError, runCommand } from '../../lib/exec.js';
import { freePort } from '../../lib/local/index.js';
import { heartbeating } from '../context.js';
import type { ActivityDeps, LoggingDeps } from '../deps.js';
import { configFailure } from '../drivers/support.js';
import { connectRedis, parseInfo } from '../incident/redis.js';
import { checksum } from './backup.js';

/**
 * AlphaPulse 5.3, Redis disaster recovery, for one Redis server: RDB snapshots in
 * `<snapshots>/<service>/<id>.rdb` (with `<id>.json` when redis-snapshot took them), checked
 * before anything stops (the "REDIS" header, redis-check-rdb, and the keys the file holds,
 * counted by loading it into a scratch redis-server on a free port), and the swap of the
 * server's dump file while the service is stopped. The replaced dump file is renamed aside,
 * never deleted. The connection is the service's redis probe (its URL may hold ${SECRETS}).
 */

const ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const RDB = '.rdb';
/** "REDIS" and a 4-digit version: what every RDB file starts with. */
const HEADER = /^REDIS\d{4}$/;

export type RedisOpsDeps = LoggingDeps;

export function createRedisOpsActivities(deps: ActivityDeps) {
  const d: RedisOpsDeps = { ...deps, log: deps.logger.child({ family: 'database', variant: 'redis' }) };
  return {
    redisOpsPlan: (req: { service: string }) => redisOpsPlan(d, req),
    checkRedisSnapshot: (req: { service: string; snapshotId?: string }) => checkRedisSnapshot(d, req),
    redisServerState: (req: { service: string }) => redisServerState(d, req),
    waitRedisDown: (req: { service: string; timeoutSeconds: number }) => waitRedisDown(d, req),
    replaceRedisDump: (req: ReplaceRequest) => replaceRedisDump(d, req),
    waitRedisReady: (req: { service: string; timeoutSeconds: number }) => waitRedisReady(d, req),
    takeRedisSnapshot: (req: { service: string; id: string }) => takeRedisSnapshot(d, req),
  };
}

function invalidConfig(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ErrorTypes.InvalidConfig);
}

function entryFor(deps: ActivityDeps, service: string): RedisOpsConfig {
  const found = deps.config.databaseOps?.redis.find((r) => r.service === service);
  if (!found) {
    const known = deps.config.databaseOps?.redis.map((r) => r.service) ?? [];
    throw invalidConfig(
      `databaseOps.redis has no entry for service ${service}${known.length ? ` (configured: ${known.join(', ')})` : ''}: add { service: ${service}, snapshots: <directory> }`,
    );
  }
  return found;
}

function resolved(deps: ActivityDeps, value: string, field: string): string {
  try {
    return path.resolve(deps.configDir, resolveEnvRefs(value, deps.env, field));
  } catch (err) {
    return configFailure(err);
  }
}

function redisUrl(deps: ActivityDeps, service: string): string {
  const svc = deps.config.services.find((s) => s.name === service);
  if (!svc) {
    throw ApplicationFailure.nonRetryable(
      `service: unknown service "${service}": expected one of ${deps.config.services.map((s) => s.name).join(', ')}`,
      ErrorTypes.UnknownService,
    );
  }
  const probe = svc.probes.find((p) => p.type === 'redis');
  if (!probe || probe.type !== 'redis') throw invalidConfig(`service ${service} has no redis probe: add one with its url to services.${service}.probes`);
  try {
    return resolveEnvRefs(probe.url, deps.env, `services.${service}.probes.redis.url`);
  } catch (err) {
    return configFailure(err);
  }
}

async function withRedis<T>(url: string, body: (r: Redis) => Promise<T>): Promise<T> {
  const redis = connectRedis(url, 'runbook-redis-restore');
  try {
    await redis.connect();
    return await body(redis);
  } finally {
    redis.disconnect();
  }
}

function snapshotsDir(deps: ActivityDeps, cfg: RedisOpsConfig): string {
  return path.join(resolved(deps, cfg.snapshots, 'databaseOps.redis.snapshots'), cfg.service);
}

function program(deps: ActivityDeps, cfg: RedisOpsConfig, name: string): string {
  return cfg.binDir ? path.join(resolved(deps, cfg.binDir, 'databaseOps.redis.binDir'), name) : name;
}

export async function redisOpsPlan(deps: RedisOpsDeps, req: { service: string }): Promise<RedisOpsPlan> {
  const cfg = entryFor(deps, req.service);
  redisUrl(deps, req.service);
  const svc = deps.config.services.find((s) => s.name === req.service)!;
  const d = svc.driver;
  const lock = deps.config.databaseOps?.lock ?? { mode: 'fail' as const, waitTimeoutSeconds: 3600, pollSeconds: 5 };
  return {
    service: cfg.service,
    snapshotsDir: snapshotsDir(deps, cfg),
    readyTimeoutSeconds: cfg.readyTimeoutSeconds,
    snapshotTimeoutSeconds: cfg.snapshotTimeoutSeconds,
    managed: d.type !== 'command' || Boolean(d.stop && d.start),
    lock: { mode: lock.mode, waitTimeoutSeconds: lock.waitTimeoutSeconds, pollSeconds: lock.pollSeconds },
  };
}

/** INFO keyspace as counts per database: `db0:keys=3,expires=1,avg_ttl=0`. */
export function keyCountsOf(info: Record<string, string>): RedisKeyCounts {
  const out: RedisKeyCounts = {};
  for (const [k, v] of Object.entries(info)) {
    if (!/^db\d+$/.test(k)) continue;
    const fields = Object.fromEntries(v.split(',').map((p) => p.split('=') as [string, string]));
    out[k] = { keys: Number(fields.keys ?? 0), expires: Number(fields.expires ?? 0) };
  }
  return out;
}

async function keyCounts(redis: Redis): Promise<RedisKeyCounts> {
  return keyCountsOf(parseInfo(await redis.info('keyspace')));
}

async function configValue(redis: Redis, name: string): Promise<string> {
  return ((await redis.config('GET', name)) as string[])[1] ?? '';
}

export async function redisServerState(deps: RedisOpsDeps, req: { service: string }): Promise<RedisServerState> {
  entryFor(deps, req.service);
  return withRedis(redisUrl(deps, req.service), async (redis) => {
    const info = parseInfo(await redis.info());
    return {
      pid: Number(info.process_id ?? 0),
      runId: info.run_id ?? '',
      role: info.role ?? '?',
      redisVersion: info.redis_version ?? '?',
      dir: await configValue(redis, 'dir'),
      dbfilename: await configValue(redis, 'dbfilename'),
      appendonly: (await configValue(redis, 'appendonly')) === 'yes',
      keyCounts: keyCountsOf(info),
    };
  });
}

async function snapshotFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  return entries.filter((f) => f.endsWith(RDB) && ID.test(f.slice(0, -RDB.length))).sort();
}

/** The most recently written snapshot: redis-snapshot's own ids sort by time, copied-in files need not. */
async function newest(dir: string, files: string[]): Promise<string | undefined> {
  const dated = await Promise.all(files.map(async (f) => ({ f, t: (await stat(path.join(dir, f))).mtimeMs })));
  return dated.sort((a, b) => a.t - b.t || a.f.localeCompare(b.f)).at(-1)?.f;
}

async function readHeader(file: string): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(9);
    const { bytesRead } = await fh.read(buf, 0, 9, 0);
    return buf.subarray(0, bytesRead).toString('latin1');
  } finally {
    await fh.close();
  }
}

async function readManifest(dir: string, id: string): Promise<RedisSnapshotManifest | null> {
  const text = await readFile(path.join(dir, `${id}.json`), 'utf8').catch(() => null);
  return text ? (JSON.parse(text) as RedisSnapshotManifest) : null;
}

function corrupt(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, 'SnapshotInvalid');
}

/**
 * The snapshot to restore, checked: it exists, starts with the RDB header, redis-check-rdb
 * accepts it (when installed), and the keys it holds, counted by loading it into a scratch
 * redis-server: the count the restored server must show. Nothing of the live server is touched.
 */
export async function checkRedisSnapshot(deps: RedisOpsDeps, req: { service: string; snapshotId?: string }): Promise<RedisSnapshotCheck> {
  const cfg = entryFor(deps, req.service);
  const dir = snapshotsDir(deps, cfg);
  if (req.snapshotId !== undefined && !ID.test(req.snapshotId)) {
    throw ApplicationFailure.nonRetryable(`snapshotId: expected letters, digits, "_" or "-" (got ${JSON.stringify(req.snapshotId.slice(0, 40))})`, ErrorTypes.InvalidInput);
  }
  const files = await snapshotFiles(dir);
  const name = req.snapshotId !== undefined ? `${req.snapshotId}${RDB}` : await newest(dir, files);
  if (!name || !files.includes(name)) {
    throw corrupt(
      req.snapshotId !== undefined
        ? `snapshot ${req.snapshotId} not found: no ${req.snapshotId}${RDB} in ${dir} (have: ${files.map((f) => f.slice(0, -RDB.length)).join(', ') || 'none'})`
        : `no snapshot in ${dir}: take one with redis-snapshot or put a <id>${RDB} there`,
    );
  }
  const id = name.slice(0, -RDB.length);
  const file = path.join(dir, name);
  const header = await readHeader(file);
  if (!HEADER.test(header)) {
    throw corrupt(`${file} is not an RDB file: it starts with ${JSON.stringify(header)}, expected "REDIS" and a 4-digit version`);
  }
  return heartbeating(
    () => ({ snapshot: id }),
    async (signal) => {
      let checkedWith: RedisSnapshotCheck['checkedWith'] = 'header';
      try {
        await runCommand([program(deps, cfg, 'redis-check-rdb'), file], { timeoutMs: cfg.snapshotTimeoutSeconds * 1000, signal, logger: deps.log });
        checkedWith = 'redis-check-rdb';
      } catch (err) {
        if (!(err instanceof CommandError)) throw err;
        if (!err.notFound) throw corrupt(`redis-check-rdb refused ${file}: ${err.stderrTail.split('\n').slice(-3).join(' ').slice(0, 400)}`);
        deps.log.warn({ file }, 'redis-check-rdb not found: only the RDB header was checked');
      }
      const manifest = await readManifest(dir, id);
      const st = await stat(file);
      const sha256 = await checksum(file);
      if (manifest && manifest.sha256 !== sha256) throw corrupt(`${file} is corrupt: sha256 ${sha256.slice(0, 12)}… differs from ${id}.json's ${manifest.sha256.slice(0, 12)}…`);
      const loaded = await scratchLoad(deps, cfg, file, signal);
      if (!loaded && !manifest) {
        throw invalidConfig(`cannot count the keys in ${file}: redis-server was not found (set databaseOps.redis.binDir) and the snapshot has no ${id}.json`);
      }
      return {
        id,
        file,
        sizeBytes: st.size,
        sha256,
        header,
        checkedWith,
        expected: loaded ?? manifest!.keyCountsAtSnapshot,
        expectedFrom: loaded ? ('scratch-load' as const) : ('manifest' as const),
        takenAt: manifest?.takenAt ?? null,
      };
    },
  );
}

/**
 * Loads `file` into a throwaway redis-server (127.0.0.1, a free port, its own temp dir, no
 * persistence) and reads INFO keyspace once it has finished loading. Undefined when
 * redis-server is not installed.
 */
async function scratchLoad(deps: RedisOpsDeps, cfg: RedisOpsConfig, file: string, signal: AbortSignal): Promise<RedisKeyCounts | undefined> {
  const tmp = await mkdtemp(path.join(tmpdir(), 'runbook-redis-scratch-'));
  const pidFile = path.join(tmp, 'redis.pid');
  try {
    // A link, not a copy: a snapshot may be large; the scratch server never saves (NOSAVE, no save points).
    await symlink(file, path.join(tmp, 'dump.rdb'));
    const port = await freePort();
    try {
      await runCommand(
        [
          program(deps, cfg, 'redis-server'),
          '--port', String(port),
          '--bind', '127.0.0.1',
          '--dir', tmp,
          '--dbfilename', 'dump.rdb',
          '--save', '',
          '--appendonly', 'no',
          '--daemonize', 'yes',
          '--pidfile', pidFile,
          '--logfile', path.join(tmp, 'redis.log'),
          '--protected-mode', 'yes',
        ],
        { timeoutMs: 30_000, signal, logger: deps.log },
      );
    } catch (err) {
      if (err instanceof CommandError && err.notFound) return undefined;
      throw err;
    }
    const url = `redis://127.0.0.1:${port}`;
    const deadline = Date.now() + cfg.readyTimeoutSeconds * 1000;
    try {
      for (;;) {
        const state = await readiness(url);
        if (state.ready) return state.counts;
        if (Date.now() > deadline || signal.aborted) {
          const log = await readFile(path.join(tmp, 'redis.log'), 'utf8').catch(() => '');
          throw corrupt(`a scratch redis-server could not load ${file} within ${cfg.readyTimeoutSeconds} s: ${log.trim().split('\n').slice(-3).join(' ').slice(0, 400)}`);
        }
        await sleep(200);
      }
    } finally {
      await withRedis(url, (r) => r.call('SHUTDOWN', 'NOSAVE')).catch(() => undefined);
      const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
      if (pid > 0) {
        for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
        if (alive(pid)) process.kill(pid, 'SIGKILL');
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Answers PING and has finished loading its dataset (INFO persistence loading:0). */
async function readiness(url: string): Promise<{ ready: false } | { ready: true; counts: RedisKeyCounts; pid: number }> {
  return withRedis(url, async (redis) => {
    if ((await redis.ping()) !== 'PONG') return { ready: false as const };
    const info = parseInfo(await redis.info());
    if (info.loading !== '0') return { ready: false as const };
    return { ready: true as const, counts: keyCountsOf(info), pid: Number(info.process_id ?? 0) };
  }).catch(() => ({ ready: false as const }));
}

/** After the driver's stop: polls until the server no longer answers (its shutdown save, if any, is done). */
export async function waitRedisDown(deps: RedisOpsDeps, req: { service: string; timeoutSeconds: number }): Promise<{ waitedMs: number }> {
  const url = redisUrl(deps, req.service);
  const started = Date.now();
  return heartbeating(
    () => ({ service: req.service, waiting: 'for Redis to stop' }),
    async (signal) => {
      for (;;) {
        const answers = await withRedis(url, async (r) => (await r.ping()) === 'PONG').catch(() => false);
        if (!answers) return { waitedMs: Date.now() - started };
        if (Date.now() - started > req.timeoutSeconds * 1000 || signal.aborted) {
          throw ApplicationFailure.nonRetryable(`${req.service} still answers PING ${req.timeoutSeconds} s after its stop command: the dump file was not replaced`, 'RedisStillRunning');
        }
        await sleep(200);
      }
    },
  );
}

export async function waitRedisReady(
  deps: RedisOpsDeps,
  req: { service: string; timeoutSeconds: number },
): Promise<{ pid: number; counts: RedisKeyCounts; waitedMs: number }> {
  const url = redisUrl(deps, req.service);
  const started = Date.now();
  return heartbeating(
    () => ({ service: req.service, waiting: 'for PING and loading:0', seconds: Math.round((Date.now() - started) / 1000) }),
    async (signal) => {
      for (;;) {
        const state = await readiness(url);
        if (state.ready) return { pid: state.pid, counts: state.counts, waitedMs: Date.now() - started };
        if (Date.now() - started > req.timeoutSeconds * 1000 || signal.aborted) {
          throw ApplicationFailure.nonRetryable(`${req.service} did not answer PING with its data loaded within ${req.timeoutSeconds} s`, 'RedisNotReady');
        }
        await sleep(250);
      }
    },
  );
}

export interface ReplaceRequest {
  service: string;
  snapshotId: string;
  sha256: string;
  /** The server's dir and dbfilename, read while it ran. */
  dir: string;
  dbfilename: string;
  /** Name the current dump file is kept under, fixed by the run so a retry finds it. */
  keepAs: string;
}

/**
 * Puts the snapshot in place of the server's dump file while Redis is stopped: the current
 * file is renamed to `keepAs` in the same directory (never deleted), the snapshot is copied
 * to a temp name and renamed over. A retry finds the snapshot in place and does nothing.
 */
export async function replaceRedisDump(deps: RedisOpsDeps, req: ReplaceRequest): Promise<{ target: string; keptAs: string | null; already: boolean }> {
  const cfg = entryFor(deps, req.service);
  if (!ID.test(req.snapshotId) || path.basename(req.dbfilename) !== req.dbfilename || path.basename(req.keepAs) !== req.keepAs) {
    throw ApplicationFailure.nonRetryable('snapshot id, dbfilename and keep name must be plain file names', ErrorTypes.InvalidInput);
  }
  const dir = cfg.dataDir ? resolved(deps, cfg.dataDir, 'databaseOps.redis.dataDir') : path.resolve(req.dir);
  if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
    throw invalidConfig(`Redis's dir ${dir} is not a directory the worker can see: run the worker on Redis's host or set databaseOps.redis.dataDir to where it is mounted`);
  }
  const target = path.join(dir, req.dbfilename);
  const kept = path.join(dir, req.keepAs);
  const source = path.join(snapshotsDir(deps, cfg), `${req.snapshotId}${RDB}`);
  if (existsSync(target) && (await checksum(target)) === req.sha256) {
    return { target, keptAs: existsSync(kept) ? kept : null, already: true };
  }
  let keptAs: string | null = existsSync(kept) ? kept : null;
  let movedNow = false;
  if (!keptAs && existsSync(target)) {
    await rename(target, kept);
    keptAs = kept;
    movedNow = true;
  }
  const tmp = `${target}.runbook-restore.tmp`;
  try {
    await copyFile(source, tmp);
    if ((await checksum(tmp)) !== req.sha256) {
      throw corrupt(`the copy of ${source} does not match the checked sha256: the dump file was not replaced`);
    }
    await rename(tmp, target);
  } catch (err) {
    // Whatever failed, the server's own file goes back, so starting Redis again is safe.
    await rm(tmp, { force: true });
    if (movedNow) await rename(kept, target);
    throw err;
  }
  deps.log.info({ target, keptAs, snapshot: req.snapshotId }, 'redis dump file replaced');
  return { target, keptAs, already: false };
}

/**
 * BGSAVE, wait for LASTSAVE to move past its value before, copy the dump file into the
 * snapshots directory as `<id>.rdb` with `<id>.json`. A retry that finds `<id>.json` returns it.
 */
export async function takeRedisSnapshot(deps: RedisOpsDeps, req: { service: string; id: string }): Promise<RedisSnapshotManifest> {
  const cfg = entryFor(deps, req.service);
  if (!ID.test(req.id)) throw ApplicationFailure.nonRetryable(`snapshot id ${JSON.stringify(req.id.slice(0, 40))} is not a plain name`, ErrorTypes.InvalidInput);
  const dir = snapshotsDir(deps, cfg);
  const done = await readManifest(dir, req.id);
  if (done) return done;
  await mkdir(dir, { recursive: true });
  return heartbeating(
    () => ({ service: req.service, snapshot: req.id }),
    (signal) =>
      withRedis(redisUrl(deps, req.service), async (redis) => {
        const before = Number(await redis.lastsave());
        // rdb_saves (Redis 7) tells a finished save apart even within LASTSAVE's one-second resolution.
        const savesBefore = parseInfo(await redis.info('persistence')).rdb_saves;
        const counts = await keyCounts(redis);
        const version = parseInfo(await redis.info('server')).redis_version ?? '?';
        await bgsave(redis);
        const deadline = Date.now() + cfg.snapshotTimeoutSeconds * 1000;
        let last = before;
        for (;;) {
          const p = parseInfo(await redis.info('persistence'));
          last = Number(await redis.lastsave());
          const saved = savesBefore !== undefined && p.rdb_saves !== undefined ? Number(p.rdb_saves) > Number(savesBefore) : last !== before;
          if (p.rdb_bgsave_in_progress === '0' && saved) {
            if (p.rdb_last_bgsave_status !== 'ok') throw ApplicationFailure.nonRetryable(`BGSAVE on ${req.service} failed (rdb_last_bgsave_status ${p.rdb_last_bgsave_status})`, 'SnapshotFailed');
            break;
          }
          if (Date.now() > deadline || signal.aborted) throw ApplicationFailure.nonRetryable(`BGSAVE on ${req.service} did not finish within ${cfg.snapshotTimeoutSeconds} s`, 'SnapshotFailed');
          await sleep(200);
        }
        const src = cfg.dataDir
          ? path.join(resolved(deps, cfg.dataDir, 'databaseOps.redis.dataDir'), await configValue(redis, 'dbfilename'))
          : path.join(await configValue(redis, 'dir'), await configValue(redis, 'dbfilename'));
        const file = `${req.id}${RDB}`;
        const tmp = path.join(dir, `${file}.tmp`);
        await copyFile(src, tmp);
        const header = await readHeader(tmp);
        if (!HEADER.test(header)) throw corrupt(`${src} does not start with an RDB header after BGSAVE`);
        await rename(tmp, path.join(dir, file));
        const manifest: RedisSnapshotManifest = {
          id: req.id,
          service: req.service,
          file,
          sizeBytes: (await stat(path.join(dir, file))).size,
          sha256: await checksum(path.join(dir, file)),
          takenAt: new Date(last * 1000).toISOString(),
          redisVersion: version,
          keyCountsAtSnapshot: counts,
        };
        await writeFile(path.join(dir, `${req.id}.json.tmp`), `${JSON.stringify(manifest, null, 2)}\n`);
        await rename(path.join(dir, `${req.id}.json.tmp`), path.join(dir, `${req.id}.json`));
        return manifest;
      }),
  );
}

/** BGSAVE, waiting out one already in progress (Redis refuses a second). */
async function bgsave(redis: Redis): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await redis.bgsave();
      return;
    } catch (err) {
      if (i < 300 && /in progress/i.test((err as Error).message)) {
        await sleep(200);
        continue;
      }
      throw err;
    }
  }
}
