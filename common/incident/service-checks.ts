/**
 * What service-error-triage reads besides health, cache and metrics: policies (Fulcrum 3.1),
 * a dashboard's backend, settings and build cache (Fulcrum 3.5) and log search (Fulcrum 6).
 * Workflow-safe types and constants only.
 */

/** Fulcrum 6.3: the lines of one trace id and/or a time window (ISO 8601). */
export interface LogSearch {
  traceId?: string;
  since?: string;
  until?: string;
  maxLines: number;
}

export interface LogSearchResult {
  /** Where the lines were read: the log file or the driver's logs, and how much of it. */
  source: string;
  scanned: number;
  matched: number;
  /** Lines without a timestamp, left out of a time-window search. */
  undated: number;
  lines: string[];
  /** More lines matched than maxLines / the byte bound allow. */
  truncated: boolean;
}

/** Bounds of a log search; a window longer than this is refused (Fulcrum 6.3 reads an hour). */
export const LOG_SEARCH = { maxWindowHours: 24, defaultWindowHours: 1, maxLines: 1000, defaultLines: 100, minTraceIdLength: 8, maxServices: 10 } as const;

/** Fulcrum 3.1 step 4 and the tenant query of its resolution. */
export interface PolicyCheck {
  ok: boolean;
  total: number | null;
  detail: string;
  tenant?: { id: string; policies: Array<{ id: string; name: string; enabled: boolean; updatedAt: string }> };
}

/** Fulcrum 3.5: the dashboard's backend, its required settings (names only) and its build cache. */
export interface DashboardCheck {
  backend: { ok: boolean; detail: string };
  env: { checked: string[]; present: string[]; missing: string[]; empty: string[]; sources: string[] };
  buildCache: { dir: string; exists: boolean; files: number; bytes: number } | null;
}

export interface BuildCacheCleared {
  dir: string;
  existed: boolean;
  files: number;
  bytes: number;
}
