import { ApplicationFailure, patched, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { classifyProbe, renderHealthTable, SEVERITY_ORDER, worstSeverity } from '../../common/stack/classify.js';
import { ErrorTypes } from '../../common/errors.js';
import { PROCEDURES } from '../../common/procedures.js';
import type { HealthCheckResult, PlanService, ProbeRef, ProbeResult, RunbookPlan } from '../../common/types.js';
import type { HealthCheckInput } from '../../common/stack/types.js';
import { localProbe, localQuick } from './profiles.js';
import { RunContext } from './run-context.js';

const { runProbe, runProbes } = proxyLocalActivities<Activities>(localProbe);
const { loadPlan } = proxyLocalActivities<Activities>(localQuick);

/**
 * Every probe of the named services, in parallel, classified with the runbook's alert thresholds.
 * `probe` is the local activity unless a caller that answers queries meanwhile passes a regular one.
 */
export async function checkHealth(plan: RunbookPlan, services: readonly PlanService[], probe: typeof runProbe = runProbe): Promise<HealthCheckResult> {
  const started = Date.now();
  return graded(plan, await Promise.all(probeRefs(services).map((ref) => probe(ref))), started);
}

/**
 * The same checks with every probe in one local activity: the run's code wakes up once for all
 * the results instead of once per probe (20 probes ending together cost 20 activations in a row).
 */
async function checkHealthAtOnce(plan: RunbookPlan, services: readonly PlanService[]): Promise<HealthCheckResult> {
  const started = Date.now();
  const probes = probeRefs(services);
  return graded(plan, probes.length > 0 ? await runProbes({ probes }) : [], started);
}

function probeRefs(services: readonly PlanService[]): ProbeRef[] {
  return services.flatMap((s) => s.probes.map((p) => ({ service: s.name, index: p.index })));
}

/** Probe results classified with the runbook's alert thresholds, worst first. */
function graded(plan: RunbookPlan, raw: ProbeResult[], started: number): HealthCheckResult {
  const results = raw
    .map((r) => classifyProbe(r, plan.thresholds))
    .sort((a, b) => SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity) || a.service.localeCompare(b.service));
  const worst = worstSeverity(results);
  return { ok: worst !== 'P0', worst, results, table: renderHealthTable(results), durationMs: Date.now() - started };
}

/** The named services (all when none are named); an unknown name fails the run with the list of known ones. */
export function selectServices(plan: RunbookPlan, names: readonly string[] | undefined, field = 'services'): PlanService[] {
  if (!names || names.length === 0) return plan.services;
  const known = new Map(plan.services.map((s) => [s.name, s]));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw ApplicationFailure.nonRetryable(
      `${field}: unknown service(s) ${unknown.join(', ')}: expected one of ${[...known.keys()].join(', ')}`,
      ErrorTypes.InvalidInput,
    );
  }
  return names.map((n) => known.get(n)!);
}

export function summarizeHealth(h: HealthCheckResult): string {
  const bad = h.results.filter((r) => r.severity !== 'OK');
  return `${h.results.length - bad.length}/${h.results.length} OK, worst ${h.worst}${bad.length ? `: ${bad.map((r) => `${r.service} ${r.severity}`).join(', ')}` : ''}`;
}

/**
 * The change that runs all of health-check's probes in one local activity instead of one each.
 * Taken where RunContext takes its own (after the input check, before any local activity): the
 * input check stays a regular activity, since with a local one in the first task a query could
 * leave patch markers where a replay does not find them (tests/replay/query-at-start.test.ts).
 */
const PROBES_AT_ONCE = 'health-check-probes-at-once';

/** `health-check`: the runbook's section 2 checks, all at once. */
export async function healthCheck(rawInput?: HealthCheckInput): Promise<HealthCheckResult> {
  const input = await RunContext.input(PROCEDURES.healthCheck, rawInput);
  const atOnce = patched(PROBES_AT_ONCE);
  const ctx = new RunContext(PROCEDURES.healthCheck, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['probes', 'Probe services'],
  ]);
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadPlan({ procedure: PROCEDURES.healthCheck }), (p) => `${p.services.length} services`);
    const services = selectServices(plan, input.services);
    const health = await ctx.step('probes', () => (atOnce ? checkHealthAtOnce(plan, services) : checkHealth(plan, services)), summarizeHealth);
    return { ...health, progress: ctx.progress };
  });
}
