import path from 'node:path';
import type { DriverConfig } from '../../common/config-schema.js';
import type { ServiceAction, ServiceActionResult } from '../../common/types.js';
import { tailLines } from '../../lib/exec.js';
import type { DriverContext, ServiceDriver, ServiceStatus } from './driver.js';
import { invoke, runSteps } from './support.js';

type ComposeConfig = Extract<DriverConfig, { type: 'compose' }>;

/** Queries should answer quickly even when actions are allowed minutes. */
const QUERY_TIMEOUT_MS = 60_000;

/** The Fulcrum runbook's `docker compose -f FILE ...` commands, one service at a time. */
export class ComposeDriver implements ServiceDriver {
  readonly kind = 'compose' as const;
  private readonly composeService: string;

  constructor(
    private readonly service: string,
    private readonly cfg: ComposeConfig,
    private readonly ctx: DriverContext,
  ) {
    this.composeService = cfg.service ?? service;
  }

  private base(): string[] {
    const file = path.resolve(this.ctx.configDir, this.cfg.file);
    return ['docker', 'compose', '-f', file, ...(this.cfg.project ? ['-p', this.cfg.project] : [])];
  }

  plan(action: ServiceAction): string[] {
    const svc = this.composeService;
    switch (action) {
      case 'start':
        return [...this.base(), 'up', '-d', svc];
      case 'stop':
        return [...this.base(), 'stop', svc];
      case 'restart':
        return [...this.base(), 'restart', svc];
      case 'rebuild':
        return [...this.base(), 'up', '-d', '--build', svc];
      case 'force-recreate':
        return [...this.base(), 'up', '-d', '--force-recreate', svc];
      case 'clean':
        // The runbook's destructive stop: the whole project and its volumes, the same for every service of the file.
        return [...this.base(), 'down', '-v'];
    }
  }

  async run(action: ServiceAction): Promise<ServiceActionResult> {
    return runSteps([{ argv: this.plan(action), timeoutMs: this.cfg.timeoutSeconds * 1000 }], this.ctx, {
      service: this.service,
      action,
    });
  }

  async status(): Promise<ServiceStatus> {
    const { stdout } = await invoke(
      { argv: [...this.base(), 'ps', '--format', 'json', this.composeService], timeoutMs: QUERY_TIMEOUT_MS },
      this.ctx,
      `service ${this.service} status`,
    );
    return parsePs(stdout, this.composeService);
  }

  async logs(lines: number): Promise<string> {
    const { stdout } = await invoke(
      {
        argv: [...this.base(), 'logs', '--tail', String(lines), '--no-color', this.composeService],
        timeoutMs: QUERY_TIMEOUT_MS,
      },
      this.ctx,
      `service ${this.service} logs`,
    );
    return tailLines(stdout, lines);
  }
}

interface PsEntry {
  Name?: string;
  Service?: string;
  State?: string;
  Status?: string;
  Health?: string;
}

/** Compose v2 prints one JSON object per line; releases before 2.21 print one JSON array. */
export function parsePs(stdout: string, composeService: string): ServiceStatus {
  const text = stdout.trim();
  if (text === '') return { running: false, detail: `no running container for compose service ${composeService}` };
  let entries: PsEntry[];
  try {
    entries = text.startsWith('[')
      ? (JSON.parse(text) as PsEntry[])
      : text
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as PsEntry);
  } catch {
    return { running: 'unknown', detail: `could not parse docker compose ps output: ${tailLines(text, 3)}` };
  }
  const mine = entries.filter((e) => e.Service === undefined || e.Service === composeService);
  if (mine.length === 0) return { running: false, detail: `no container for compose service ${composeService}` };
  const running = mine.some((e) => e.State === 'running');
  const detail = mine
    .map((e) => `${e.Name ?? composeService}: ${e.State ?? 'unknown'}${e.Status ? ` (${e.Status})` : ''}`)
    .join('; ');
  return { running, detail };
}
