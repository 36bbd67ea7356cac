import type { AnalysisSettings, Measurement, QueryResult, ResolvedQuery } from './types.js';

/**
 * Pure analysis helpers shared by the workflow (sandbox-safe: no imports with side
 * effects) and the activities: input overrides, query templating, verdicts.
 */

const WINDOW = /^\d+(ms|s|m|h)$/;
const QUERY_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const KEYS = ['intervalSeconds', 'count', 'failureLimit', 'onMissingData', 'window', 'queries'] as const;

/** Problems with an `analysis` input override, each naming the field and the fix. */
export function analysisOverrideProblems(raw: unknown): string[] {
  if (raw === undefined) return [];
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return ['analysis: expected an object'];
  const o = raw as Record<string, unknown>;
  const problems: string[] = [];
  for (const k of Object.keys(o)) {
    if (!(KEYS as readonly string[]).includes(k)) problems.push(`analysis.${k}: unknown field, expected one of ${KEYS.join(', ')}`);
  }
  const positive = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;
  if (o.intervalSeconds !== undefined && !positive(o.intervalSeconds)) problems.push('analysis.intervalSeconds: expected a number > 0');
  if (o.count !== undefined && !(Number.isInteger(o.count) && positive(o.count))) problems.push('analysis.count: expected an integer > 0');
  if (o.failureLimit !== undefined && !(Number.isInteger(o.failureLimit) && (o.failureLimit as number) >= 0)) {
    problems.push('analysis.failureLimit: expected an integer >= 0');
  }
  if (o.onMissingData !== undefined && o.onMissingData !== 'fail' && o.onMissingData !== 'pass') {
    problems.push('analysis.onMissingData: expected "fail" or "pass"');
  }
  if (o.window !== undefined && !(typeof o.window === 'string' && WINDOW.test(o.window))) {
    problems.push('analysis.window: expected a Prometheus duration like 30s or 1m');
  }
  if (o.queries !== undefined) {
    if (!Array.isArray(o.queries) || o.queries.length === 0) {
      problems.push('analysis.queries: expected a non-empty list of {name, query, max and/or min}');
    } else {
      o.queries.forEach((q: unknown, i) => {
        const at = `analysis.queries[${i}]`;
        if (!q || typeof q !== 'object') return problems.push(`${at}: expected {name, query, max and/or min}`);
        const qq = q as Record<string, unknown>;
        if (typeof qq.name !== 'string' || !QUERY_NAME.test(qq.name)) problems.push(`${at}.name: expected a lower-case name`);
        if (typeof qq.query !== 'string' || qq.query.trim() === '') problems.push(`${at}.query: expected PromQL text`);
        const num = (v: unknown) => v === undefined || (typeof v === 'number' && Number.isFinite(v));
        if (!num(qq.max) || !num(qq.min)) problems.push(`${at}: max and min must be numbers`);
        if (qq.max === undefined && qq.min === undefined) problems.push(`${at}: set max or min (the threshold)`);
        const extra = Object.keys(qq).filter((k) => !['name', 'query', 'max', 'min'].includes(k));
        if (extra.length) problems.push(`${at}: unknown field(s) ${extra.join(', ')}`);
        return undefined;
      });
    }
  }
  return problems;
}

export function mergeAnalysis(base: AnalysisSettings, override?: Partial<AnalysisSettings>): AnalysisSettings {
  return { ...base, ...(override ?? {}), queries: override?.queries ?? base.queries };
}

/** Substitutes {selector} and {window} in every query. */
export function resolveQueries(settings: AnalysisSettings, selector: string): ResolvedQuery[] {
  return settings.queries.map((q) => ({
    ...q,
    query: q.query.split('{selector}').join(selector).split('{window}').join(settings.window),
  }));
}

/** A value against its thresholds; `null` (no data, NaN) is decided by the missing-data policy. */
export function judge(q: ResolvedQuery, value: number | null, onMissingData: 'fail' | 'pass'): QueryResult {
  const base = { name: q.name, query: q.query, value, ...(q.max !== undefined ? { max: q.max } : {}), ...(q.min !== undefined ? { min: q.min } : {}) };
  if (value === null) {
    return { ...base, ok: onMissingData === 'pass', detail: `no data (onMissingData: ${onMissingData})` };
  }
  if (q.max !== undefined && value > q.max) return { ...base, ok: false, detail: `${formatValue(value)} > max ${q.max}` };
  if (q.min !== undefined && value < q.min) return { ...base, ok: false, detail: `${formatValue(value)} < min ${q.min}` };
  const bounds = [q.min !== undefined ? `min ${q.min}` : '', q.max !== undefined ? `max ${q.max}` : ''].filter(Boolean).join(', ');
  return { ...base, ok: true, detail: `${formatValue(value)} within ${bounds}` };
}

export function formatValue(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(3);
}

export function describeMeasurement(m: Measurement): string {
  return m.results.map((r) => `${r.name} ${r.value === null ? 'no data' : formatValue(r.value)}${r.ok ? '' : ' ✗'}`).join(', ');
}
