import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../common/errors.js';
import { judge } from '../../common/delivery/analysis.js';
import type { Measurement, ResolvedQuery } from '../../common/delivery/types.js';

/** One instant query against Prometheus' HTTP API; null when the answer has no usable number. */
export async function queryPrometheus(baseUrl: string, query: string, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<number | null> {
  const url = new URL('api/v1/query', baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`);
  url.searchParams.set('query', query);
  const signal = opts.signal ? AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs)]) : AbortSignal.timeout(opts.timeoutMs);
  let res: Response;
  try {
    res = await fetch(url, { signal });
  } catch (err) {
    // Retryable: Prometheus restarting is not a reason to give up on the run.
    throw ApplicationFailure.retryable(`Prometheus at ${url.origin} did not answer: ${(err as Error).message}`, 'PrometheusUnavailable');
  }
  const body = (await res.json().catch(() => null)) as {
    status?: string;
    error?: string;
    data?: { resultType?: string; result?: unknown };
  } | null;
  if (res.status === 400 || body?.status === 'error') {
    throw ApplicationFailure.nonRetryable(`Prometheus refused the query ${JSON.stringify(query)}: ${body?.error ?? `HTTP ${res.status}`}`, ErrorTypes.InvalidConfig);
  }
  if (!res.ok || !body?.data) throw ApplicationFailure.retryable(`Prometheus answered HTTP ${res.status} to ${url.pathname}`, 'PrometheusUnavailable');
  const { resultType, result } = body.data;
  let raw: string | undefined;
  if (resultType === 'scalar') raw = (result as [number, string])[1];
  else if (resultType === 'vector') {
    const series = result as Array<{ value: [number, string] }>;
    if (series.length > 1) {
      throw ApplicationFailure.nonRetryable(
        `the query ${JSON.stringify(query)} returned ${series.length} series; an analysis query must return one number: aggregate it with sum(), max() or histogram_quantile()`,
        ErrorTypes.InvalidConfig,
      );
    }
    raw = series[0]?.value[1];
  } else {
    throw ApplicationFailure.nonRetryable(`the query ${JSON.stringify(query)} returned a ${resultType}; expected an instant vector or scalar`, ErrorTypes.InvalidConfig);
  }
  if (raw === undefined) return null;
  const n = Number(raw);
  return Number.isFinite(n) ? n : null;
}

/** Runs every query once and judges it against its thresholds. */
export async function measure(
  baseUrl: string,
  queries: ResolvedQuery[],
  opts: { timeoutMs: number; onMissingData: 'fail' | 'pass'; signal?: AbortSignal },
): Promise<Measurement> {
  const at = new Date().toISOString();
  const values = await Promise.all(queries.map((q) => queryPrometheus(baseUrl, q.query, opts)));
  const results = queries.map((q, i) => judge(q, values[i]!, opts.onMissingData));
  return { at, ok: results.every((r) => r.ok), results };
}
