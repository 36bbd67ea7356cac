import { existsSync, readdirSync } from 'node:fs';
import { chmod, chown, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { runCommand } from '../exec.js';

/** Debian installs each major version's programs here, off PATH. */
const DEBIAN_ROOT = '/usr/lib/postgresql';
/** runuser keeps the caller's working directory: run from one the postgres user may enter. */
const CWD = '/';

/** The newest `/usr/lib/postgresql/<major>/bin` that has `program`, if any. */
export function newestPostgresBinDir(program: string): string | undefined {
  if (!existsSync(DEBIAN_ROOT)) return undefined;
  const versions = readdirSync(DEBIAN_ROOT)
    .filter((v) => existsSync(path.join(DEBIAN_ROOT, v, 'bin', program)))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(DEBIAN_ROOT, versions[0], 'bin') : undefined;
}

/** Where initdb, pg_ctl and postgres are: $PG_BIN_DIR, else the newest server install. */
export function postgresServerBinDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.PG_BIN_DIR || newestPostgresBinDir('pg_ctl');
  if (!dir) throw new Error(`PostgreSQL server binaries not found under ${DEBIAN_ROOT}/*/bin: install the postgresql package or set PG_BIN_DIR`);
  return dir;
}

const isRoot = () => process.getuid?.() === 0;

/** PostgreSQL refuses to run as root: then its programs run as the postgres user. */
export function asPostgres(argv: string[]): string[] {
  return isRoot() ? ['runuser', '-u', 'postgres', '--', ...argv] : argv;
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([runCommand(['id', '-u', 'postgres']), runCommand(['id', '-g', 'postgres'])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * Creates `dir` (0700); as root it belongs to the postgres user, and every directory above it
 * up to `within` is made passable (o+x) so that user can reach it.
 */
export async function postgresOwnedDir(dir: string, within?: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!isRoot()) return;
  if (within) {
    for (let d = path.dirname(dir); d.startsWith(within) && d !== path.dirname(d); d = path.dirname(d)) {
      const mode = (await stat(d)).mode & 0o777;
      if ((mode & 0o001) === 0) await chmod(d, mode | 0o001);
    }
  }
  const { uid, gid } = await postgresIds();
  await chown(dir, uid, gid);
}

/** A cluster on this machine: the server programs and the data directory. */
export interface LocalPostgres {
  binDir: string;
  dataDir: string;
}

/** pg_ctl on the cluster, as the postgres user when we are root. */
export function pgCtl(pg: LocalPostgres, ...args: string[]): string[] {
  return asPostgres([path.join(pg.binDir, 'pg_ctl'), '-D', pg.dataDir, ...args]);
}

/**
 * initdb with a `postgres` superuser trusted on this machine, UTF8; `noSync` for data that is
 * thrown away. Nothing happens when the data directory already holds a cluster.
 */
export async function initPostgres(pg: LocalPostgres & { noSync?: boolean }): Promise<void> {
  if (existsSync(path.join(pg.dataDir, 'PG_VERSION'))) return;
  const argv = [path.join(pg.binDir, 'initdb'), '-D', pg.dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', ...(pg.noSync ? ['--no-sync'] : [])];
  await runCommand(asPostgres(argv), { cwd: CWD, timeoutMs: 120_000 });
}

/** `pg_ctl start`, returning once the server accepts connections (60 s at most); `options` go to the server (-o). */
export async function startPostgresServer(pg: LocalPostgres & { logFile: string; options?: string }): Promise<void> {
  await runCommand(pgCtl(pg, '-l', pg.logFile, '-w', '-t', '60', ...(pg.options ? ['-o', pg.options] : []), 'start'), { cwd: CWD, timeoutMs: 90_000 });
}

export async function stopPostgresServer(pg: LocalPostgres, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
  await runCommand(pgCtl(pg, '-m', mode, '-w', '-t', '60', 'stop'), { cwd: CWD, timeoutMs: 90_000 });
}

export async function postgresRunning(pg: LocalPostgres): Promise<boolean> {
  if (!existsSync(pg.dataDir)) return false;
  return runCommand(pgCtl(pg, 'status'), { cwd: CWD, timeoutMs: 30_000 }).then(
    () => true,
    () => false,
  );
}
