import type { ProbeConfig } from '../../common/config-schema.js';
import type { ProbeResult } from '../../common/types.js';

/**
 * Health probes, one per probe type. An unreachable or unhealthy target is a result
 * ("unhealthy" with a detail a person can act on), never an exception: only a config
 * the probe cannot run with throws. Every client is closed, whatever happens.
 */

export type ProbeOutcome = Omit<ProbeResult, 'service' | 'index'>;

export interface ProbeOptions {
  env: NodeJS.ProcessEnv;
  /** The probe's config path, for error messages, e.g. `services[2].probes[0]`. */
  field: string;
  /** Cancels the probe (the activity was cancelled): runProbe then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** A probe config that cannot be run as written (bad bodyMatch regex, ...). */
export class ProbeConfigError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'ProbeConfigError';
  }
}

export interface Reading {
  healthy: boolean;
  detail: string;
  metrics?: Record<string, number>;
}

export type Probe<T extends ProbeConfig['type']> = (cfg: Extract<ProbeConfig, { type: T }>, signal: AbortSignal, field: string) => Promise<Reading>;

/** A close that hangs must not hold a probe result back. */
const CLOSE_TIMEOUT_MS = 2000;

export class ProbeTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`timed out after ${timeoutMs}ms`);
    this.name = 'ProbeTimeoutError';
  }
}

/** Rejects as soon as `signal` aborts, even if `work` ignores it; `work` still runs its own cleanup. */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => undefined);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

export async function closeQuietly(close: () => Promise<unknown> | unknown): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(close),
      new Promise((resolve) => {
        timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
      }),
    ]);
  } catch {
    // closing a connection that never opened
  } finally {
    clearTimeout(timer);
  }
}

export const ERRNO_DETAILS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by peer',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EPIPE: 'connection closed by peer',
};

/** A short, actionable reason from whatever a client library threw. */
export function describeError(err: unknown): string {
  const codes: string[] = [];
  const messages: string[] = [];
  const seen = new Set<unknown>();
  const walk = (e: unknown, depth: number) => {
    if (!e || typeof e !== 'object' || seen.has(e) || depth > 5) return;
    seen.add(e);
    const { code, message, cause, errors } = e as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
    if (typeof code === 'string') codes.push(code);
    if (typeof message === 'string' && message) messages.push(message);
    walk(cause, depth + 1);
    if (Array.isArray(errors)) errors.forEach((x) => walk(x, depth + 1));
  };
  walk(err, 0);
  for (const code of codes) {
    const known = ERRNO_DETAILS[code];
    if (known) return known;
  }
  const joined = messages.join(' ');
  for (const [code, text] of Object.entries(ERRNO_DETAILS)) {
    if (joined.includes(code)) return text;
  }
  // "fetch failed" says nothing; the cause usually does.
  const message = messages.find((m) => m !== 'fetch failed') ?? messages[0] ?? String(err);
  const line = message.split('\n')[0]!.trim();
  return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}

export function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

export async function readCapped(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const decoder = new TextDecoder();
  const reader = res.body.getReader();
  let text = '';
  let bytes = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      text += decoder.decode(value, { stream: true });
      if (bytes >= max) break;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return text + decoder.decode();
}

export function snippet(body: string): string {
  const s = body.replace(/\s+/g, ' ').trim();
  if (!s) return '';
  return `: ${s.length > 120 ? `${s.slice(0, 120)}...` : s}`;
}
