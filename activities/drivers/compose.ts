import path from 'node:path';
import type { DriverConfig } from '../../common/config-schema.js';
import type { ServiceAction, ServiceActionResult } from '../../common/types.js';
import { tailLines } from '../../lib/exec.js';
import type { DriverContext, ServiceDriver, ServiceStatus } from './driver.js';
import { invoke, invokeForAnswer, runSteps } from './support.js';

type ComposeConfig = Extract<DriverConfig, { type: 'compose' }>;

/** Queries should answer quickly even when actions are allowed minutes. */
const QUERY_TIMEOUT_MS = 60_000;

/**
 * The Fulcrum runbook's `docker compose -f FILE ...` commands, one service at a time, with the
 * configured Compose CLI: the v2 plugin (`docker compose`) or v1 (`docker-compose`). Status asks
 * compose for the service's container ids (`ps -a -q`, the same in both) and `docker inspect`
 * for their state: v1 has no `ps --format json` and names containers differently.
 */
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
    return composeBase(this.cfg, this.ctx.configDir);
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
    // A group's services start in parallel; two `up` of one project at once race to create its
    // network ("network ... already exists"), so this worker runs one action per project at a time.
    return oneAtATime(JSON.stringify(this.base()), () =>
      runSteps([{ argv: this.plan(action), timeoutMs: this.cfg.timeoutSeconds * 1000 }], this.ctx, {
        service: this.service,
        action,
      }),
    );
  }

  async status(): Promise<ServiceStatus> {
    const { stdout } = await invoke(
      { argv: [...this.base(), 'ps', '-a', '-q', this.composeService], timeoutMs: QUERY_TIMEOUT_MS },
      this.ctx,
      `service ${this.service} status`,
    );
    const ids = stdout.split('\n').map((l) => l.trim()).filter((l) => /^[0-9a-f]{12,64}$/i.test(l));
    if (ids.length === 0) return { running: false, detail: `no container for compose service ${this.composeService}` };
    const answer = await invokeForAnswer(
      { argv: [dockerProgram(this.cfg), 'inspect', '--format', INSPECT_FORMAT, ...ids], timeoutMs: QUERY_TIMEOUT_MS },
      this.ctx,
      `service ${this.service} status`,
    );
    // A container removed between ps and inspect: not running, and the next poll sees the new state.
    if (!('result' in answer)) return { running: false, detail: `docker inspect failed: ${tailLines(answer.output, 3)}` };
    return parseInspect(answer.result.stdout, this.composeService);
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

const running = new Map<string, Promise<unknown>>();

async function oneAtATime<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const previous = running.get(key) ?? Promise.resolve();
  const mine = previous.catch(() => undefined).then(fn);
  const settled = mine.catch(() => undefined);
  running.set(key, settled);
  try {
    return await mine;
  } finally {
    if (running.get(key) === settled) running.delete(key);
  }
}

/** The compose invocation up to the subcommand: CLI, file, project. */
export function composeBase(cfg: ComposeConfig, configDir: string): string[] {
  const file = path.resolve(configDir, cfg.file);
  return [...cfg.command, '-f', file, ...(cfg.project ? ['-p', cfg.project] : [])];
}

/** `docker inspect` comes from the same CLI as `docker compose`; with docker-compose (v1), the docker on PATH. */
function dockerProgram(cfg: ComposeConfig): string {
  const first = cfg.command[0]!;
  return path.basename(first) === 'docker' ? first : 'docker';
}

/** One JSON line per container: its name and State (Docker leaves State.Health out without a healthcheck). */
const INSPECT_FORMAT = '{"name":{{json .Name}},"id":{{json .Id}},"state":{{json .State}}}';

interface InspectEntry {
  name?: string;
  id?: string;
  state?: { Status?: string; Running?: boolean; ExitCode?: number; StartedAt?: string; Health?: { Status?: string } | null };
}

export function parseInspect(stdout: string, composeService: string): ServiceStatus {
  const entries: InspectEntry[] = [];
  for (const line of stdout.split('\n').filter((l) => l.trim() !== '')) {
    try {
      entries.push(JSON.parse(line) as InspectEntry);
    } catch {
      return { running: 'unknown', detail: `could not parse docker inspect output: ${tailLines(stdout, 3)}` };
    }
  }
  if (entries.length === 0) return { running: false, detail: `no container for compose service ${composeService}` };
  const running = entries.some((e) => e.state?.Status === 'running' || e.state?.Running === true);
  const detail = entries
    .map((e) => {
      const st = e.state ?? {};
      const status = st.Status ?? 'unknown';
      const health = st.Health?.Status ? `, health ${st.Health.Status}` : '';
      const since = status === 'running' && st.StartedAt ? ` since ${st.StartedAt}` : status === 'exited' ? ` (exit code ${st.ExitCode ?? '?'})` : '';
      return `${(e.name ?? composeService).replace(/^\//, '')} ${(e.id ?? '').slice(0, 12)}: ${status}${since}${health}`;
    })
    .join('; ');
  return { running, detail };
}
