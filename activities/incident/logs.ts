import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../common/errors.js';
import type { LogSearch, LogSearchResult } from '../../common/incident/service-checks.js';
import { redactSecrets } from '../../lib/redact.js';
import type { ServiceConfig } from '../../common/config-schema.js';
import type { ActivityDeps } from '../deps.js';
import { activitySignal } from '../context.js';
import { createDriver } from '../drivers/index.js';
import { CommandDriver } from '../drivers/command.js';

/**
 * Fulcrum 6 (log analysis): a service's log lines of one trace id and/or of a time window,
 * not only its last lines. A `command` service with a `logFile` is read from that file (its
 * last LOG_SCAN_BYTES); any other service from its driver's logs (the last LOG_SCAN_LINES).
 * What comes back is bounded in lines and bytes and redacted like the driver's own logs.
 */

export const LOG_SCAN_BYTES = 64 * 1024 * 1024;
export const LOG_SCAN_LINES = 20_000;
export const LOG_MAX_BYTES = 64 * 1024;
const LINE_MAX_CHARS = 2000;

const ISO_AT_START = /^\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)/;
const LOGFMT_TIME = /(?:^|\s)(?:time|ts|timestamp)="?(\d{4}-\d{2}-\d{2}T[^\s"]+)"?/;

/** The time a line was written, in epoch ms: a JSON line's time/timestamp/ts/@timestamp, a leading ISO time (a trailing UTC/GMT counts as its zone), or logfmt time=. */
export function lineTime(line: string): number | undefined {
  const text = line.trimStart();
  if (text.startsWith('{')) {
    try {
      const o = JSON.parse(text) as Record<string, unknown>;
      for (const key of ['time', 'timestamp', 'ts', '@timestamp']) {
        const v = o[key];
        if (typeof v === 'number' && Number.isFinite(v)) return v > 1e12 ? v : v * 1000;
        if (typeof v === 'string') {
          const t = Date.parse(v);
          if (!Number.isNaN(t)) return t;
        }
      }
    } catch {
      // not JSON after all: try the text forms
    }
  }
  const lead = ISO_AT_START.exec(text);
  const iso = lead?.[1] ?? LOGFMT_TIME.exec(text)?.[1];
  if (!iso) return undefined;
  // PostgreSQL writes "2026-01-06 10:00:00.123 UTC"; a time without any zone is read in the worker's zone.
  const named = lead && !/(Z|[+-]\d{2}:?\d{2})$/.test(iso) && /^\]?\s(UTC|GMT)\b/.test(text.slice(lead[0].length)) ? 'Z' : '';
  const t = Date.parse(iso.replace(' ', 'T').replace(',', '.') + named);
  return Number.isNaN(t) ? undefined : t;
}

/** A matcher for one search; the trace id must stand alone (not be part of a longer id). */
export function logMatcher(q: LogSearch): (line: string) => 'match' | 'no' | 'undated' {
  const trace = q.traceId ? new RegExp(`(^|[^A-Za-z0-9])${q.traceId.replace(/[^A-Za-z0-9]/g, '\\$&')}([^A-Za-z0-9]|$)`) : undefined;
  const since = q.since ? Date.parse(q.since) : undefined;
  const until = q.until ? Date.parse(q.until) : undefined;
  return (line) => {
    if (trace && !trace.test(line)) return 'no';
    if (since === undefined && until === undefined) return 'match';
    const t = lineTime(line);
    if (t === undefined) return 'undated';
    return (since === undefined || t >= since) && (until === undefined || t <= until) ? 'match' : 'no';
  };
}

class Collector {
  readonly lines: string[] = [];
  matched = 0;
  scanned = 0;
  undated = 0;
  private bytes = 0;
  truncated = false;

  constructor(
    private readonly match: (line: string) => 'match' | 'no' | 'undated',
    private readonly maxLines: number,
    private readonly secrets: string[],
  ) {}

  add(line: string): void {
    if (!line) return;
    this.scanned += 1;
    const m = this.match(line);
    if (m === 'undated') this.undated += 1;
    if (m !== 'match') return;
    this.matched += 1;
    if (this.truncated) return;
    const shown = redactSecrets(line.length > LINE_MAX_CHARS ? `${line.slice(0, LINE_MAX_CHARS)}…` : line, this.secrets);
    const size = Buffer.byteLength(shown) + 1;
    if (this.lines.length >= this.maxLines || this.bytes + size > LOG_MAX_BYTES) {
      this.truncated = true;
      return;
    }
    this.lines.push(shown);
    this.bytes += size;
  }
}

async function readFileLines(file: string, onLine: (line: string) => void): Promise<{ from: number; size: number }> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`log file ${file} cannot be read: ${(err as Error).message}`, ErrorTypes.InvalidConfig);
  }
  const from = Math.max(0, size - LOG_SCAN_BYTES);
  const rl = createInterface({ input: createReadStream(file, { start: from, end: Math.max(0, size - 1), encoding: 'utf8' }), crlfDelay: Infinity });
  let first = from > 0;
  const signal = activitySignal();
  for await (const line of rl) {
    if (signal?.aborted) break;
    // Started mid-file: the first piece is the tail of a line whose start was not read.
    if (first) {
      first = false;
      continue;
    }
    onLine(line);
  }
  return { from, size };
}

export async function searchServiceLogs(deps: ActivityDeps, svc: ServiceConfig, q: LogSearch): Promise<LogSearchResult> {
  const driver = createDriver(svc, { env: deps.env, logger: deps.logger.child({ service: svc.name }), configDir: deps.configDir, signal: activitySignal() });
  const source = driver instanceof CommandDriver ? driver.logSource() : undefined;
  const collector = new Collector(logMatcher(q), q.maxLines, source?.secrets ?? []);
  let from: string;
  if (source) {
    const r = await readFileLines(source.file, (l) => collector.add(l));
    from = r.from > 0 ? `the last ${LOG_SCAN_BYTES} bytes of ${source.file} (${r.size} bytes)` : source.file;
  } else {
    // The driver redacts its own output.
    for (const l of (await driver.logs(LOG_SCAN_LINES)).split('\n')) collector.add(l);
    from = `the last ${LOG_SCAN_LINES} lines of the ${driver.kind} driver's logs`;
  }
  return {
    source: from,
    scanned: collector.scanned,
    matched: collector.matched,
    undated: collector.undated,
    lines: collector.lines,
    truncated: collector.truncated,
  };
}
