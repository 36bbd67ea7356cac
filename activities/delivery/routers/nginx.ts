import { readFile, readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../../common/errors.js';
import type { RouterConfig } from '../../../common/delivery/config.js';
import type { WeightChange } from '../../../common/delivery/types.js';
import { formatCommand } from '../../../lib/exec.js';
import type { DriverContext } from '../../drivers/driver.js';
import { invoke } from '../../drivers/support.js';
import { checkWeight, type TrafficRouter } from './router.js';

type NginxConfig = Extract<RouterConfig, { type: 'nginx' }>;

const HEADER = /^# canary-weight: (\d{1,3})$/m;
const WORKER_SWAP_TIMEOUT_MS = 10_000;

/** The upstream file this router owns: rewritten atomically, tested, then nginx reloads. */
export function renderUpstream(cfg: Pick<NginxConfig, 'upstreamName' | 'stable' | 'canary'>, weight: number): string {
  checkWeight(weight);
  // nginx has no weight=0: at 0 % and 100 % only one server is listed.
  const servers =
    weight === 0
      ? [`    server ${cfg.stable};`]
      : weight === 100
        ? [`    server ${cfg.canary};`]
        : [`    server ${cfg.stable} weight=${100 - weight};`, `    server ${cfg.canary} weight=${weight};`];
  return [
    '# Managed by durable-runbooks (canary-deploy / blue-green-switch): edits are overwritten.',
    `# canary-weight: ${weight}`,
    `upstream ${cfg.upstreamName} {`,
    ...servers,
    '}',
    '',
  ].join('\n');
}

export class NginxRouter implements TrafficRouter {
  readonly type = 'nginx' as const;

  constructor(
    private readonly name: string,
    private readonly cfg: NginxConfig,
    private readonly ctx: DriverContext,
  ) {}

  describe() {
    return { stable: this.cfg.stable, canary: this.cfg.canary };
  }

  private nginx(...args: string[]): string[] {
    return [this.cfg.nginxBinary, ...(this.cfg.prefix ? ['-p', this.cfg.prefix] : []), '-c', this.cfg.configPath, ...args];
  }

  plan(weight: number): string[] {
    return [
      `write ${this.cfg.upstreamFile} (upstream ${this.cfg.upstreamName}: ${100 - weight} % ${this.cfg.stable}, ${weight} % ${this.cfg.canary})`,
      formatCommand(this.nginx('-t', '-q')),
      formatCommand(this.nginx('-s', 'reload')),
    ];
  }

  async currentWeight(): Promise<number | null> {
    const text = await readFile(this.cfg.upstreamFile, 'utf8').catch(() => null);
    const m = text ? HEADER.exec(text) : null;
    return m ? Number(m[1]) : null;
  }

  async setWeight(weight: number): Promise<WeightChange> {
    checkWeight(weight);
    const started = performance.now();
    const file = this.cfg.upstreamFile;
    const previous = await readFile(file, 'utf8').catch(() => null);
    const previousWeight = previous ? Number(HEADER.exec(previous)?.[1] ?? NaN) : NaN;
    const next = renderUpstream(this.cfg, weight);
    const base = { router: this.name, weight, previousWeight: Number.isNaN(previousWeight) ? null : previousWeight };
    // The marker says the file's content was reloaded: a retry after a crash between the
    // write and the reload finds the new file but no marker, and reloads.
    const marker = path.join(path.dirname(file), `.${path.basename(file)}.applied`);
    const applied = await readFile(marker, 'utf8').catch(() => null);
    if (previous === next && applied === next) {
      return { ...base, changed: false, commands: [], durationMs: Math.round(performance.now() - started) };
    }
    const timeoutMs = this.cfg.timeoutSeconds * 1000;
    await writeAtomically(file, next);
    const test = this.nginx('-t', '-q');
    try {
      await invoke({ argv: test, timeoutMs }, this.ctx, `nginx config test for router ${this.name}`);
    } catch (err) {
      // Put the last good file back so the next reload (by anyone) does not pick up a broken one.
      if (previous !== null) await writeAtomically(file, previous);
      throw ApplicationFailure.create({
        type: ErrorTypes.InvalidConfig,
        nonRetryable: true,
        message: `nginx rejected the new upstream for router ${this.name}; the previous file was restored: ${(err as Error).message}`,
      });
    }
    const oldWorkers = this.cfg.pidFile ? await this.workers() : [];
    const reload = this.nginx('-s', 'reload');
    await invoke({ argv: reload, timeoutMs }, this.ctx, `nginx reload for router ${this.name}`);
    if (this.cfg.pidFile) await this.waitForNewWorkers(oldWorkers);
    await writeAtomically(marker, next);
    return { ...base, changed: true, commands: [`write ${file}`, formatCommand(test), formatCommand(reload)], durationMs: Math.round(performance.now() - started) };
  }

  private async masterPid(): Promise<number | null> {
    const text = await readFile(this.cfg.pidFile!, 'utf8').catch(() => '');
    const pid = Number(text.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  }

  /** Children of the master, from /proc (nginx has no API for it). */
  private async workers(): Promise<number[]> {
    const master = await this.masterPid();
    if (!master) return [];
    const pids: number[] = [];
    for (const entry of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      // Fields after the parenthesised command name: state, ppid, ...
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === master) pids.push(Number(entry));
    }
    return pids;
  }

  /**
   * A reload returns once the master got the signal; the new weights are in effect only
   * when workers with the new config run and the old ones have finished their requests.
   */
  private async waitForNewWorkers(old: number[]): Promise<void> {
    const deadline = Date.now() + WORKER_SWAP_TIMEOUT_MS;
    for (;;) {
      const now = await this.workers();
      const fresh = now.filter((p) => !old.includes(p));
      const lingering = now.filter((p) => old.includes(p));
      if (fresh.length > 0 && lingering.length === 0) return;
      if (Date.now() > deadline) {
        throw ApplicationFailure.create({
          type: ErrorTypes.CommandFailed,
          message: `nginx (router ${this.name}) did not switch to the new configuration within ${WORKER_SWAP_TIMEOUT_MS / 1000}s: ${fresh.length} new worker(s), ${lingering.length} old worker(s) still running; see its error log`,
        });
      }
      await sleep(20);
    }
  }
}

/** Write to a temp file in the same directory, then rename: nginx never reads a half-written file. */
export async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, file);
}
