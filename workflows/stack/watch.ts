import { proxyLocalActivities, sleep } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { PROCEDURES } from '../../common/procedures.js';
import { PROBE_THRESHOLDS, probeConditions, SEVERITY_ORDER, worstSeverity } from '../../common/stack/classify.js';
import type { HealthWatchInput, HealthWatchResult, WatchedCondition } from '../../common/stack/types.js';
import { formatDuration, threshold } from '../../common/thresholds.js';
import type { HealthCheckResult } from '../../common/types.js';
import { checkHealth, selectServices } from '../shared/health.js';
import { localQuick } from '../shared/profiles.js';
import { RunContext } from '../shared/run-context.js';

const { loadPlan } = proxyLocalActivities<Activities>(localQuick);

/** At most this many samples per run, whatever the window: the run's history stays bounded. */
export const MAX_WATCH_SAMPLES = 240;

interface Streak {
  service: string;
  probe: string;
  threshold: WatchedCondition['threshold'];
  /** When the current unbroken stretch began (ms, workflow time); undefined while it does not hold. */
  since?: number;
  longestMs: number;
  seenIn: number;
  reason: string;
}

/** The table the UI, the CLI and a ticket show: one row per condition with how long it held. */
function renderWatchTable(conditions: readonly WatchedCondition[]): string {
  const rows = [
    ['SERVICE', 'PROBE', 'THRESHOLD', 'HELD', 'REQUIRED', 'SEVERITY', 'REASON'],
    ...conditions.map((c) => [c.service, c.probe, c.threshold, formatDuration(c.heldSeconds), formatDuration(c.requiredSeconds), c.sustained ? c.severity : 'transient', `${c.reason} (${c.seed})`]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

/**
 * `health-watch`: the health-check's probes sampled over a window, graded only by the threshold
 * rows (Fulcrum 2.3, AlphaPulse 4.2) that held without a break for their duration ("for 10min"),
 * at most the whole window. What came and went is listed as transient, with how long it held.
 */
export async function healthWatch(rawInput?: HealthWatchInput): Promise<HealthWatchResult> {
  const input = await RunContext.input(PROCEDURES.healthWatch, rawInput);
  const ctx = new RunContext(PROCEDURES.healthWatch, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['watch', 'Sample the probes over the window'],
  ]);
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadPlan({ procedure: PROCEDURES.healthWatch }), (p) => `${p.services.length} services`);
    const services = selectServices(plan, input.services);
    // The longest duration among the rows a probe can see: Fulcrum 2.3's Memory Usage, 10 min.
    const longest = Math.max(...PROBE_THRESHOLDS.map((id) => threshold(id, plan.thresholds).forSeconds));
    const windowSeconds = input.windowSeconds ?? Math.max(longest, 1);
    const everySeconds = Math.max(input.sampleEverySeconds ?? Math.min(30, Math.max(1, windowSeconds / 20)), windowSeconds / MAX_WATCH_SAMPLES);
    const required = (id: WatchedCondition['threshold']) => {
      const forSeconds = threshold(id, plan.thresholds).forSeconds;
      return forSeconds > 0 ? Math.min(forSeconds, windowSeconds) : windowSeconds;
    };

    const streaks = new Map<string, Streak>();
    let samples = 0;
    let last: HealthCheckResult | undefined;
    const watched = await ctx.step(
      'watch',
      async () => {
        const start = Date.now();
        const end = start + windowSeconds * 1000;
        for (;;) {
          const at = Date.now();
          last = await checkHealth(plan, services);
          samples += 1;
          const seen = new Set<string>();
          for (const r of last.results) {
            for (const c of probeConditions(r, plan.thresholds)) {
              const key = `${r.service}\u0000${r.index}\u0000${c.threshold}`;
              seen.add(key);
              const s = streaks.get(key) ?? { service: r.service, probe: `${r.type} ${r.target}`, threshold: c.threshold, longestMs: 0, seenIn: 0, reason: c.reason };
              s.since ??= at;
              s.longestMs = Math.max(s.longestMs, at - s.since);
              s.seenIn += 1;
              s.reason = c.reason;
              streaks.set(key, s);
            }
          }
          for (const [key, s] of streaks) if (!seen.has(key)) s.since = undefined;
          const holding = [...streaks.values()].filter((s) => s.since !== undefined).length;
          ctx.detail('watch', `${samples} samples, ${Math.round((at - start) / 1000)} of ${windowSeconds} s; ${holding} conditions holding`);
          if (at >= end) break;
          await sleep(Math.min(everySeconds * 1000, end - Date.now()));
        }
        return samples;
      },
      (n) => `${n} samples over ${formatDuration(windowSeconds)}`,
    );

    const conditions: WatchedCondition[] = [...streaks.values()]
      .map((s) => {
        const row = threshold(s.threshold, plan.thresholds);
        const requiredSeconds = required(s.threshold);
        const heldSeconds = Math.floor(s.longestMs / 100) / 10;
        const sustained = heldSeconds >= requiredSeconds;
        return { service: s.service, probe: s.probe, threshold: s.threshold, severity: sustained ? row.severity : 'OK', sustained, heldSeconds, requiredSeconds, seenIn: s.seenIn, reason: s.reason, seed: row.seed } satisfies WatchedCondition;
      })
      .sort((a, b) => Number(b.sustained) - Number(a.sustained) || SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity) || a.service.localeCompare(b.service));
    const worst = worstSeverity(conditions);
    return {
      ok: worst !== 'P0',
      worst,
      windowSeconds,
      sampleEverySeconds: everySeconds,
      samples: watched,
      conditions,
      table: conditions.length > 0 ? renderWatchTable(conditions) : `no threshold was crossed in ${watched} samples over ${formatDuration(windowSeconds)}`,
      last: last!,
      progress: ctx.progress,
    };
  });
}
