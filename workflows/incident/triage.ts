import { policyOf } from '../../common/approvals.js';
import { ActivityFailure, ApplicationFailure, patched, proxyActivities, sleep } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import { clip } from '../../common/bounds.js';
import { ErrorTypes } from '../../common/errors.js';
import type { TriageProcedureId } from '../../common/incident/procedures.js';
import type { TriageFinding, TriageResult } from '../../common/incident/types.js';
import { LOG_SEARCH, type DashboardCheck, type LogSearch, type LogSearchResult, type PolicyCheck } from '../../common/incident/service-checks.js';
import { PROCEDURES } from '../../common/procedures.js';
import { breaches, threshold } from '../../common/thresholds.js';
import type { CommonInput, RunbookPlan } from '../../common/types.js';
import { checkHealth, selectServices } from '../shared/health.js';
import { longRunning, quick } from '../shared/profiles.js';
import { RunContext } from '../shared/run-context.js';

const { loadPlan, redisClientCount, redisCountMatching, redisReplicationRead, redisTriageRead, natsTriageRead, cacheCheck, databaseCheck, fetchMetrics, promQuery, slowQueries, redisFlush, serviceLogs } =
  proxyActivities<Activities>(quick);
const { redisUnlink, natsPurge, serviceAction, waitHealthy } = proxyActivities<Activities>(longRunning);
const { policyCheck, searchLogs, dashboardCheck, clearBuildCache } = proxyActivities<Activities>(quick);

const BAD = new Set(['P0', 'P1', 'P2']);

function renderFindings(findings: readonly TriageFinding[]): string {
  return ['| check | severity | detail |', '| --- | --- | --- |', ...findings.map((f) => `| ${f.check} | ${f.severity} | ${f.detail.replace(/\|/g, '/')} |`)].join('\n');
}

function result(procedure: TriageProcedureId, ctx: RunContext, findings: TriageFinding[], recommendations: string[], remediations: string[]): TriageResult {
  return {
    procedure,
    ok: !findings.some((f) => f.severity === 'P0' || f.severity === 'P1'),
    findings,
    recommendations,
    remediations,
    table: renderFindings(findings),
    progress: ctx.progress,
  };
}

function summarize(findings: readonly TriageFinding[]): string {
  const bad = findings.filter((f) => BAD.has(f.severity));
  return bad.length === 0 ? `${findings.length} checks OK` : bad.map((f) => `${f.check} ${f.severity}`).join(', ');
}

function invalid(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ErrorTypes.InvalidInput);
}

function approvalTimeout(input: CommonInput, plan: RunbookPlan): number {
  return input.approvalTimeoutSeconds ?? plan.approvalTimeoutSeconds;
}

async function restartAndVerify(ctx: RunContext, plan: RunbookPlan, step: string, service: string, verify: string[]): Promise<string> {
  return ctx.step(
    step,
    async () => {
      await serviceAction({ service, action: 'restart' });
      const names = [...new Set([service, ...verify])].filter((n) => (plan.services.find((s) => s.name === n)?.probes.length ?? 0) > 0);
      if (names.length > 0) {
        await waitHealthy({ services: names, timeoutSeconds: 60, deadline: Date.now() + 60_000, pollIntervalSeconds: plan.pollIntervalSeconds });
      }
      return names.length > 0 ? `${service} restarted; healthy again: ${names.join(', ')}` : `${service} restarted (no probes to verify)`;
    },
    (s) => s,
  );
}

// ---------------------------------------------------------------- redis-triage

export interface RedisTriageInput extends CommonInput {
  service: string;
  deletePattern?: string;
  flush?: boolean;
  restart?: boolean;
  reconnectServices?: string[];
  slowlogEntries?: number;
  peers?: string[];
  linkDownSeconds?: number;
}

/** `redis-triage`: Fulcrum 3.4 and AlphaPulse 2.2 High Memory Usage, with the runbooks' remediations. */
export async function redisTriage(rawInput: RedisTriageInput): Promise<TriageResult> {
  const input = await RunContext.input(PROCEDURES.redisTriage, rawInput);
  const ctx = new RunContext(PROCEDURES.redisTriage, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['inspect', 'PING, memory, policy, evictions, hit rate, slowlog, clients'],
    ['replication', 'Replication: role, link, offsets; split-brain across the peers'],
  ]);
  if (input.deletePattern) {
    ctx.addStep('approve-unlink', `Approval: delete keys matching ${input.deletePattern}`);
    ctx.addStep('unlink', `Delete keys matching ${input.deletePattern} (SCAN + UNLINK)`);
  }
  if (input.flush) {
    ctx.addStep('approve-flush', 'Approval: FLUSHDB');
    ctx.addStep('flush', 'FLUSHDB');
  }
  if (input.restart) {
    ctx.addStep('approve-restart', 'Approval: restart Redis');
    ctx.addStep('restart', 'Restart Redis through its driver');
    ctx.addStep('reconnect', 'Verify the clients reconnect');
  }
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadPlan({ procedure: PROCEDURES.redisTriage }), () => input.service);
    selectServices(plan, [input.service], 'service');
    if (input.reconnectServices) selectServices(plan, input.reconnectServices, 'reconnectServices');
    if (input.peers) selectServices(plan, input.peers, 'peers');
    const { reading, findings } = await ctx.step('inspect', () => redisTriageRead({ service: input.service, slowlogEntries: input.slowlogEntries ?? 10 }), (r) => summarize(r.findings));
    const recommendations: string[] = [];
    const remediations: string[] = [];
    if (reading.policy !== 'allkeys-lru') recommendations.push(`CONFIG SET maxmemory-policy allkeys-lru (now ${reading.policy})`);
    if (reading.memoryPercent !== null && reading.memoryPercent >= plan.thresholds.memoryWarnPercent) {
      recommendations.push('Free memory: delete stale keys by pattern (deletePattern), FLUSHDB if the cache can be rebuilt, or raise maxmemory');
    }
    if (reading.hitRatePercent !== null && reading.hitRatePercent < 85) recommendations.push('Hit rate under 85 %: check TTLs and evictions; tune the cache');
    // AlphaPulse 2.2 split-brain. Runs recorded before this check replay without it.
    if (patched('redis-replication-check')) {
      const repl = await ctx.step(
        'replication',
        () => redisReplicationRead({ service: input.service, peers: input.peers, linkDownSeconds: input.linkDownSeconds }),
        (r) => summarize(r.findings),
      );
      findings.push(...repl.findings);
      recommendations.push(...repl.recommendations);
    } else {
      ctx.skip('replication', 'run started before the replication check');
    }

    if (input.deletePattern) {
      const pattern = input.deletePattern;
      // Deleting by pattern waits for an approval, like FLUSHDB: `"*"` deletes every key. The
      // marker is asked for here, not at the start of the run, so a run in flight that has not
      // reached this point takes the gate too. Only a run whose history already holds the
      // unapproved UNLINK replays without it: those keys are gone, and refusing to replay would
      // wedge the run on non-determinism without bringing one back.
      let approvedBy: string | undefined;
      if (patched('redis-unlink-approval')) {
        const match = await redisCountMatching({ service: input.service, pattern });
        const shown = JSON.stringify(clip(pattern, 200));
        const record = await ctx.requestApproval({
          step: 'approve-unlink',
          summary:
            `Delete every key matching ${shown} in ${input.service} (SCAN + UNLINK): ` +
            `${match.complete ? `${match.matched}` : `at least ${match.matched} (the count stopped after a bounded SCAN)`} of its ${reading.keys} keys match` +
            `${match.sample.length ? `, e.g. ${match.sample.map((k) => JSON.stringify(clip(k, 64))).join(', ')}` : ''}. Deleted keys cannot be brought back.`,
          destructive: true,
          confirmPhrase: 'DELETE',
          policy: policyOf(plan),
          timeoutSeconds: approvalTimeout(input, plan),
        });
        RunContext.failUnlessApproved(record, 'no key was deleted and nothing else was changed');
        approvedBy = record.by;
      } else {
        ctx.skip('approve-unlink', 'run started before deleting keys by pattern needed an approval');
      }
      const n = await ctx.step('unlink', () => redisUnlink({ service: input.service, pattern }), (d) => `${d} keys unlinked`);
      remediations.push(`unlinked ${n} keys matching ${pattern}${approvedBy ? `, approved by ${approvedBy}` : ''}`);
    }
    if (input.flush) {
      const record = await ctx.requestApproval({
        step: 'approve-flush',
        summary: `FLUSHDB on ${input.service}: deletes all ${reading.keys} keys of the database; the services repopulate the cache.`,
        destructive: true,
        confirmPhrase: 'FLUSHDB',
        policy: policyOf(plan),
        timeoutSeconds: approvalTimeout(input, plan),
      });
      RunContext.failUnlessApproved(record, 'nothing was flushed');
      const r = await ctx.step('flush', () => redisFlush({ service: input.service }), (x) => `${x.keysBefore} keys flushed`);
      remediations.push(`FLUSHDB (${r.keysBefore} keys), approved by ${record.by}`);
    }
    if (input.restart) {
      const record = await ctx.requestApproval({
        step: 'approve-restart',
        summary: `Restart ${input.service}: clients disconnect briefly and must reconnect; verifies ${[input.service, ...(input.reconnectServices ?? [])].join(', ')} are healthy after.`,
        destructive: false,
        policy: policyOf(plan),
        timeoutSeconds: approvalTimeout(input, plan),
      });
      RunContext.failUnlessApproved(record, 'Redis was not restarted');
      const before = await redisClientCount({ service: input.service });
      remediations.push(await restartAndVerify(ctx, plan, 'restart', input.service, input.reconnectServices ?? []));
      // Fulcrum 3.4: after the restart, verify the services reconnect (as many clients as before).
      const back = await ctx.step(
        'reconnect',
        async () => {
          const deadline = Date.now() + 60_000;
          for (;;) {
            const now = await redisClientCount({ service: input.service });
            if (now >= before) return now;
            if (Date.now() >= deadline) throw ApplicationFailure.nonRetryable(`only ${now} of ${before} clients reconnected within 60 s`, 'ReconnectTimeout');
            await sleep(1000);
          }
        },
        (n) => `${n} of ${before} clients back`,
      );
      remediations.push(`${back} of ${before} clients reconnected`);
    }
    return result('redis-triage', ctx, findings, recommendations, remediations);
  });
}

// ---------------------------------------------------------------- nats-lag-triage

export interface NatsLagTriageInput extends CommonInput {
  service: string;
  stream?: string;
  consumerService?: string;
  restartConsumer?: boolean;
  purge?: boolean;
  purgeOlderThanSeconds?: number;
}

/** `nats-lag-triage`: Fulcrum 3.3 — streams, consumer lag and stuck messages, with its remediations. */
export async function natsLagTriage(rawInput: NatsLagTriageInput): Promise<TriageResult> {
  const input = await RunContext.input(PROCEDURES.natsLagTriage, rawInput);
  const problems: string[] = [];
  if ((input.purge || input.purgeOlderThanSeconds) && !input.stream) problems.push('stream: required to purge (which stream to purge)');
  if (input.purge && input.purgeOlderThanSeconds) problems.push('purge and purgeOlderThanSeconds: choose one');
  if (input.restartConsumer && !input.consumerService) problems.push('consumerService: required with restartConsumer (the service that consumes the stream)');
  if (problems.length > 0) throw invalid(`invalid input for nats-lag-triage: ${problems.join('; ')}`);
  const ctx = new RunContext(PROCEDURES.natsLagTriage, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['inspect', 'JetStream streams and consumers: pending, ack pending, redelivered'],
  ]);
  if (input.restartConsumer) {
    ctx.addStep('approve-restart', `Approval: restart ${input.consumerService}`);
    ctx.addStep('restart', `Restart ${input.consumerService}`);
  }
  if (input.purge || input.purgeOlderThanSeconds) {
    ctx.addStep('approve-purge', `Approval: purge ${input.stream}`);
    ctx.addStep('purge', `Purge ${input.stream}${input.purgeOlderThanSeconds ? ` (messages older than ${input.purgeOlderThanSeconds}s)` : ''}`);
  }
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadPlan({ procedure: PROCEDURES.natsLagTriage }), () => input.service);
    selectServices(plan, [input.service], 'service');
    if (input.consumerService) selectServices(plan, [input.consumerService], 'consumerService');
    const { streams, findings } = await ctx.step('inspect', () => natsTriageRead({ service: input.service, stream: input.stream }), (r) => summarize(r.findings));
    const recommendations: string[] = [];
    const remediations: string[] = [];
    const consumers = streams.flatMap((s) => s.consumers);
    if (consumers.some((c) => c.numRedelivered > 10)) {
      recommendations.push('Messages are redelivered repeatedly (stuck): restart the consumer service; if a message is poison, purge the stream (loses unprocessed events)');
    }
    if (consumers.some((c) => c.numPending > plan.thresholds.natsLagMessages)) {
      recommendations.push('Consumer lag over threshold: restart the consumer service or scale it up');
    }

    if (input.restartConsumer) {
      const svc = input.consumerService!;
      const record = await ctx.requestApproval({
        step: 'approve-restart',
        summary: `Restart ${svc}: in-flight messages are redelivered to the new process.`,
        destructive: false,
        policy: policyOf(plan),
        timeoutSeconds: approvalTimeout(input, plan),
      });
      RunContext.failUnlessApproved(record, `${svc} was not restarted`);
      remediations.push(await restartAndVerify(ctx, plan, 'restart', svc, []));
    }
    if (input.purge || input.purgeOlderThanSeconds) {
      const stream = input.stream!;
      const s = streams.find((x) => x.name === stream);
      const older = input.purgeOlderThanSeconds;
      const record = await ctx.requestApproval({
        step: 'approve-purge',
        summary: older
          ? `Purge messages older than ${older}s from ${stream}: LOSES those unprocessed events (consumers never see them).`
          : `Purge stream ${stream} (${s?.messages ?? '?'} messages): LOSES ALL UNPROCESSED EVENTS in it. Confirm with the stream name.`,
        destructive: true,
        confirmPhrase: stream,
        policy: policyOf(plan),
        timeoutSeconds: approvalTimeout(input, plan),
      });
      RunContext.failUnlessApproved(record, 'nothing was purged');
      // The cutoff is fixed here, not in the activity, so a retried purge removes the same range.
      const cutoff = older ? Date.now() - older * 1000 : undefined;
      const r = await ctx.step('purge', () => natsPurge({ service: input.service, stream, cutoff }), (x) => `${x.purged} messages purged`);
      remediations.push(`purged ${r.purged} messages from ${stream}${older ? ` older than ${older}s` : ''}, approved by ${record.by}`);
    }
    return result('nats-lag-triage', ctx, findings, recommendations, remediations);
  });
}

// ---------------------------------------------------------------- service-error-triage

export interface ServiceErrorTriageInput extends CommonInput {
  service: string;
  cacheService?: string;
  cachePattern?: string;
  database?: string;
  metricsUrl?: string;
  metricsMatch?: string;
  logLines?: number;
  traceId?: string;
  since?: string;
  until?: string;
  logServices?: string[];
  tenantId?: string;
  flushAndRestart?: boolean;
  clearBuildCache?: boolean;
}

/** The log search an input asks for (Fulcrum 6.3), or the problems with it; `now` is the workflow's clock. */
function logSearchOf(input: ServiceErrorTriageInput, now: number, problems: string[]): LogSearch | undefined {
  if (input.traceId === undefined && input.since === undefined && input.until === undefined) {
    if (input.logServices) problems.push('logServices: only with traceId, since or until (the search to run in their logs)');
    return undefined;
  }
  if ((input.logServices?.length ?? 0) > LOG_SEARCH.maxServices) problems.push(`logServices: at most ${LOG_SEARCH.maxServices} services`);
  const maxLines = input.logLines ?? LOG_SEARCH.defaultLines;
  if (maxLines > LOG_SEARCH.maxLines) problems.push(`logLines: at most ${LOG_SEARCH.maxLines} lines are shown by a log search; narrow the search instead`);
  if (input.traceId !== undefined && input.traceId.length < LOG_SEARCH.minTraceIdLength) {
    problems.push(`traceId: at least ${LOG_SEARCH.minTraceIdLength} characters, so it matches one trace (a W3C trace id is 32 hex digits)`);
  }
  const search: LogSearch = { maxLines, ...(input.traceId ? { traceId: input.traceId } : {}) };
  if (input.since === undefined && input.until === undefined) return search;
  const hour = 3_600_000;
  const until = input.until !== undefined ? Date.parse(input.until) : now;
  const since = input.since !== undefined ? Date.parse(input.since) : until - LOG_SEARCH.defaultWindowHours * hour;
  if (since > now) problems.push('since: in the future; give the start of the window to search');
  if (until <= since) problems.push('until: must be after since');
  else if (until - since > LOG_SEARCH.maxWindowHours * hour) problems.push(`since/until: the window is over ${LOG_SEARCH.maxWindowHours} h; search a shorter window`);
  return { ...search, since: new Date(since).toISOString(), until: new Date(until).toISOString() };
}

function mb(bytes: number): string {
  return `${Math.round((bytes / 1_048_576) * 10) / 10} MB`;
}

const ERROR_LINE = /\b(error|fatal|panic|exception|unavailable|internal)\b/i;

interface Report {
  findings: TriageFinding[];
  recommendations: string[];
}

function serviceErrorContext(input: ServiceErrorTriageInput, search: LogSearch | undefined): RunContext {
  const ctx = new RunContext(PROCEDURES.serviceErrorTriage, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['health', `Health of ${input.service}`],
    ['logs', search ? `Log lines${search.traceId ? ` of trace ${search.traceId}` : ''}${search.since ? ` from ${search.since} to ${search.until}` : ''}` : 'Recent error lines from the logs'],
    ['cache', 'Cache check'],
    ['database', 'Database connectivity'],
    ['policies', input.tenantId ? `Policies, and those of tenant ${input.tenantId}` : 'Policies'],
    ['metrics', 'Metrics'],
    ['dashboard', 'Dashboard: backend reachable, settings present, build cache'],
  ]);
  if (search && input.logServices?.length) ctx.addStep('related-logs', `The same log search in ${input.logServices.join(', ')}`);
  if (input.flushAndRestart) {
    ctx.addStep('approve-remediation', 'Approval: flush the cache and restart');
    ctx.addStep('flush', `FLUSHDB ${input.cacheService}`);
    ctx.addStep('restart', `Restart ${input.service}`);
  }
  if (input.clearBuildCache) {
    ctx.addStep('approve-build-cache', `Approval: delete the build cache of ${input.service} and restart it`);
    ctx.addStep('clear-build-cache', `Delete the build cache of ${input.service}`);
    ctx.addStep('restart-dashboard', `Restart ${input.service}`);
  }
  return ctx;
}

/** Error lines of the service's last log lines, or of a log search (Fulcrum 6.3); unavailable logs are a finding, not a failure. */
async function readErrorLines(input: ServiceErrorTriageInput, search: LogSearch | undefined): Promise<{ available: boolean; lines: string[]; why: string; found?: LogSearchResult }> {
  try {
    if (search) {
      const found = await searchLogs({ service: input.service, ...search });
      return { available: true, lines: found.lines.filter((l) => ERROR_LINE.test(l)).slice(-20), why: '', found };
    }
    const text = await serviceLogs({ service: input.service, lines: input.logLines ?? 100 });
    return { available: true, lines: text.split('\n').filter((l) => ERROR_LINE.test(l)).slice(-20), why: '' };
  } catch (err) {
    const cause = err instanceof ActivityFailure && err.cause ? err.cause.message : String(err);
    return { available: false, lines: [], why: cause };
  }
}

function logSearchFinding(search: LogSearch, found: LogSearchResult): TriageFinding {
  const what = [search.traceId ? `trace ${search.traceId}` : '', search.since ? `${search.since} to ${search.until}` : ''].filter(Boolean).join(', ');
  return {
    check: 'log search',
    severity: 'INFO',
    detail:
      `${found.matched} of ${found.scanned} lines match ${what} in ${found.source}` +
      `${found.truncated ? `; first ${found.lines.length} shown` : ''}${search.since && found.undated ? `; ${found.undated} lines without a timestamp left out` : ''}`,
  };
}

/** Fulcrum 3.1 step 4 and the tenant's policies: none, or none enabled, is worth a look. */
function policyFindings(p: PolicyCheck, r: Report): void {
  r.findings.push({ check: 'policies', severity: !p.ok ? 'P1' : p.total === 0 ? 'P2' : 'OK', detail: p.detail });
  if (!p.tenant) return;
  const { id, policies: list } = p.tenant;
  const enabled = list.filter((x) => x.enabled).length;
  r.findings.push({
    check: `tenant ${id} policies`,
    severity: list.length === 0 || enabled === 0 ? 'P2' : 'INFO',
    detail:
      list.length === 0
        ? `no policies for tenant ${id}`
        : `${enabled} of the ${list.length} latest enabled: ${list.map((x) => `${x.id} ${x.name} ${x.enabled ? 'enabled' : 'disabled'} ${x.updatedAt}`).join(' ⏎ ')}`,
  });
  if (list.length === 0) r.recommendations.push(`Tenant ${id} has no policies: check the tenant id and whether its policies were deleted`);
  else if (enabled === 0) r.recommendations.push(`Every recent policy of tenant ${id} is disabled: check the latest change (updated_at) with its owner`);
}

/** Fulcrum 3.5 steps 2-4: backend, settings (names only), build cache. */
function dashboardFindings(d: DashboardCheck, service: string, r: Report): void {
  r.findings.push({ check: 'dashboard backend', severity: d.backend.ok ? 'OK' : 'P1', detail: d.backend.detail });
  if (!d.backend.ok) r.recommendations.push(`The backend is not reachable from ${service}: triage the backend service, then check the dashboard's API URL setting`);
  const { env } = d;
  const unset = [...env.missing, ...env.empty];
  const list = (label: string, names: string[]) => (names.length ? `${label}${names.join(', ')}` : '');
  r.findings.push({
    check: 'dashboard settings',
    severity: unset.length > 0 ? 'P1' : 'OK',
    detail:
      env.sources.length === 0
        ? 'no env file or driver env configured to check'
        : `${env.present.length} of ${env.checked.length} set${env.present.length ? ` (${env.present.join(', ')})` : ''}${list('; missing: ', env.missing)}${list('; empty: ', env.empty)} (in ${env.sources.join(', ')})`,
  });
  if (unset.length > 0) r.recommendations.push(`Set ${unset.join(', ')} for ${service} and restart it (Fulcrum 3.5: verify the Clerk keys are set)`);
  const cache = d.buildCache;
  if (cache) {
    r.findings.push({
      check: 'dashboard build cache',
      severity: cache.exists ? 'INFO' : 'P2',
      detail: cache.exists ? `${cache.dir}: ${cache.files} files, ${mb(cache.bytes)}` : `${cache.dir} does not exist: the build did not run or did not finish`,
    });
  }
}

async function flushCacheAndRestart(ctx: RunContext, plan: RunbookPlan, input: ServiceErrorTriageInput): Promise<string[]> {
  const cacheService = input.cacheService!;
  const record = await ctx.requestApproval({
    step: 'approve-remediation',
    summary: `FLUSHDB on ${cacheService} (the service repopulates it) and restart ${input.service}.`,
    destructive: true,
    confirmPhrase: 'FLUSHDB',
    policy: policyOf(plan),
    timeoutSeconds: approvalTimeout(input, plan),
  });
  RunContext.failUnlessApproved(record, 'nothing was flushed or restarted');
  const f = await ctx.step('flush', () => redisFlush({ service: cacheService }), (x) => `${x.keysBefore} keys flushed`);
  return [`FLUSHDB ${cacheService} (${f.keysBefore} keys), approved by ${record.by}`, await restartAndVerify(ctx, plan, 'restart', input.service, [])];
}

/** Fulcrum 3.5 resolution: delete the build cache and restart, after an approval that shows what goes. */
async function clearCacheAndRestart(ctx: RunContext, plan: RunbookPlan, input: ServiceErrorTriageInput, cache: NonNullable<DashboardCheck['buildCache']>): Promise<string[]> {
  const record = await ctx.requestApproval({
    step: 'approve-build-cache',
    summary:
      `Delete the build cache ${cache.dir} of ${input.service} (${cache.exists ? `${cache.files} files, ${mb(cache.bytes)}` : 'absent now'}) and restart ${input.service}; ` +
      'it is rebuilt when the service starts (Fulcrum 3.5).',
    destructive: true,
    confirmPhrase: 'DELETE',
    policy: policyOf(plan),
    timeoutSeconds: approvalTimeout(input, plan),
  });
  RunContext.failUnlessApproved(record, 'the build cache was not deleted and nothing was restarted');
  const c = await ctx.step('clear-build-cache', () => clearBuildCache({ service: input.service }), (x) => (x.existed ? `${x.files} files deleted` : 'already absent'));
  return [`build cache ${c.dir} deleted (${c.files} files, ${mb(c.bytes)}), approved by ${record.by}`, await restartAndVerify(ctx, plan, 'restart-dashboard', input.service, [])];
}

/** `service-error-triage`: Fulcrum 3.1 (policy evaluation failures), 3.5 (dashboard errors) and 6 (log analysis). */
export async function serviceErrorTriage(rawInput: ServiceErrorTriageInput): Promise<TriageResult> {
  const input = await RunContext.input(PROCEDURES.serviceErrorTriage, rawInput);
  if (input.flushAndRestart && !input.cacheService) throw invalid('invalid input for service-error-triage: cacheService: required with flushAndRestart (the cache to flush)');
  const problems: string[] = [];
  if (input.tenantId && !input.database) problems.push("tenantId: needs database (the database that holds the tenant's policies)");
  const search = logSearchOf(input, Date.now(), problems);
  if (problems.length > 0) throw invalid(`invalid input for service-error-triage: ${problems.join('; ')}`);
  const ctx = serviceErrorContext(input, search);
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadPlan({ procedure: PROCEDURES.serviceErrorTriage }), () => input.service);
    const [svc] = selectServices(plan, [input.service], 'service');
    if (input.cacheService) selectServices(plan, [input.cacheService], 'cacheService');
    const report: Report = { findings: [], recommendations: [] };
    const { findings, recommendations } = report;
    const remediations: string[] = [];

    const health = await ctx.step('health', () => checkHealth(plan, [svc!]), (h) => (h.results.length ? `worst ${h.worst}` : 'no probes'));
    for (const r of health.results) findings.push({ check: `health ${r.type} ${r.target}`, severity: r.severity === 'OK' ? 'OK' : r.severity, detail: r.detail });

    // Policies (Fulcrum 3.1) and dashboard checks (3.5) came later: runs recorded before them replay without.
    const v2 = patched('service-error-triage-policies-dashboard');
    const logs = await ctx.step('logs', () => readErrorLines(input, search), (l) => (l.available ? `${l.lines.length} error lines` : `logs unavailable: ${l.why}`));
    findings.push(
      logs.available
        ? { check: 'error log lines', severity: logs.lines.length > 0 ? 'P2' : 'OK', detail: logs.lines.length ? logs.lines.slice(-5).join(' ⏎ ') : search ? 'none among the lines found' : 'none in the last lines' }
        : { check: 'error log lines', severity: 'INFO', detail: `logs unavailable: ${logs.why}` },
    );
    if (search && logs.found) findings.push(logSearchFinding(search, logs.found));
    // Trace correlation (Fulcrum 6.3 greps the server's and the processor's logs for one trace id).
    const related: NonNullable<TriageResult['relatedLogs']> = [];
    if (search && input.logServices?.length) {
      const others = input.logServices;
      selectServices(plan, others, 'logServices');
      const read = async (service: string) => {
        try {
          return { service, ...(await searchLogs({ service, ...search })) };
        } catch (err) {
          return { service, why: err instanceof ActivityFailure && err.cause ? err.cause.message : String(err) };
        }
      };
      const found = await ctx.step('related-logs', () => Promise.all(others.map(read)), (x) => x.map((o) => `${o.service} ${'why' in o ? 'unavailable' : o.matched}`).join(', '));
      for (const r of found) {
        if ('why' in r) findings.push({ check: `log search ${r.service}`, severity: 'INFO', detail: `logs unavailable: ${r.why}` });
        else {
          related.push(r);
          findings.push({ ...logSearchFinding(search, r), check: `log search ${r.service}` });
        }
      }
    }

    if (input.cacheService) {
      const cacheService = input.cacheService;
      const c = await ctx.step('cache', () => cacheCheck({ service: cacheService, pattern: input.cachePattern }), (x) => `${x.keys} keys`);
      findings.push({
        check: `cache ${cacheService}`,
        severity: c.hitRatePercent !== null && c.hitRatePercent < 85 ? 'P2' : 'INFO',
        detail: `${c.keys} keys; sample ${c.sample.join(', ') || '(none match)'}; hit rate ${c.hitRatePercent ?? '-'}%`,
      });
    } else ctx.skip('cache', 'no cacheService given');

    if (input.database) {
      const database = input.database;
      const d = await ctx.step('database', () => databaseCheck({ database }), (x) => x.detail);
      findings.push({ check: `database ${database}`, severity: d.ok ? 'OK' : 'P0', detail: d.detail });
      if (!d.ok) recommendations.push('Database unreachable: see database runbooks; restart the service to reset its connection pool once it is back');
    } else ctx.skip('database', 'no database given');

    if (input.database && v2) {
      const database = input.database;
      policyFindings(await ctx.step('policies', () => policyCheck({ database, tenantId: input.tenantId }), (x) => x.detail), report);
    } else ctx.skip('policies', input.database ? 'run started before the policies check' : 'no database given');

    if (input.metricsUrl) {
      const url = input.metricsUrl;
      const m = await ctx.step('metrics', () => fetchMetrics({ url, match: input.metricsMatch }), (x) => x.detail);
      findings.push({ check: 'metrics', severity: m.ok ? 'INFO' : 'P1', detail: m.ok ? m.lines.slice(0, 8).join('; ') || m.detail : m.detail });
    } else ctx.skip('metrics', 'no metricsUrl given');

    const dashboard = v2
      ? await ctx.step('dashboard', () => dashboardCheck({ service: input.service }), (x) => (x ? `backend ${x.backend.ok ? 'ok' : 'unreachable'}, ${x.env.missing.length + x.env.empty.length} settings missing` : 'not a configured dashboard'))
      : null;
    if (dashboard) dashboardFindings(dashboard, input.service, report);
    else ctx.skip('dashboard', v2 ? `${input.service} is not in incident.dashboards` : 'run started before the dashboard checks');
    if (input.clearBuildCache && !dashboard?.buildCache) {
      throw invalid(`invalid input for service-error-triage: clearBuildCache: ${input.service} has no build cache configured (incident.dashboards[].buildCacheDir); nothing was deleted`);
    }

    const unhealthy = findings.some((f) => f.check.startsWith('health') && f.severity === 'P0');
    const errors = findings.some((f) => f.check === 'error log lines' && f.severity !== 'OK');
    if ((unhealthy || errors) && input.cacheService) recommendations.push('If the cache is corrupted: flush the cache and restart the service (flushAndRestart, approval)');
    if (unhealthy) recommendations.push(`Restart ${input.service} (service-restart) and watch its probes`);

    if (input.flushAndRestart) remediations.push(...(await flushCacheAndRestart(ctx, plan, input)));
    if (input.clearBuildCache && dashboard?.buildCache) remediations.push(...(await clearCacheAndRestart(ctx, plan, input, dashboard.buildCache)));
    const out = result('service-error-triage', ctx, findings, recommendations, remediations);
    return logs.found ? { ...out, logSearch: logs.found, ...(related.length ? { relatedLogs: related } : {}) } : out;
  });
}

// ---------------------------------------------------------------- latency-triage

export interface LatencyTriageInput extends CommonInput {
  p99Query?: string;
  errorRateQuery?: string;
  p99ThresholdMs?: number;
  errorRateThresholdPercent?: number;
  database?: string;
  slowQueryMs?: number;
  cacheService?: string;
}

export const DEFAULT_P99_QUERY = 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))';
export const DEFAULT_ERROR_RATE_QUERY = 'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))';

/** `latency-triage`: AlphaPulse 2.4 High API Latency — p99, error rate, slow queries, cache hit rate, and what to do. */
export async function latencyTriage(rawInput: LatencyTriageInput): Promise<TriageResult> {
  const input = await RunContext.input(PROCEDURES.latencyTriage, rawInput);
  const ctx = new RunContext(PROCEDURES.latencyTriage, input.requestedBy ?? 'unknown', [
    ['plan', 'Load configuration'],
    ['metrics', 'p99 latency and error rate (Prometheus)'],
    ['slow-queries', 'Slow queries (pg_stat_activity)'],
    ['cache', 'Cache hit rate'],
  ]);
  return ctx.run(async () => {
    const plan = await ctx.step('plan', () => loadPlan({ procedure: PROCEDURES.latencyTriage }), () => 'ok');
    if (input.cacheService) selectServices(plan, [input.cacheService], 'cacheService');
    // Defaults from the threshold table (common/thresholds.ts): AlphaPulse 4.2 p99 >500 ms and error
    // rate >0.5 % (P1), Fulcrum 2.3 error rate >20 % (P0); AlphaPulse 2.1 queries running >1 s.
    const p99Limit = input.p99ThresholdMs ?? threshold('api-latency-p99', plan.thresholds).value;
    const errLimit = input.errorRateThresholdPercent ?? threshold('api-error-rate', plan.thresholds).value;
    const critical = threshold('error-rate-critical', plan.thresholds);
    const slowQueryMs = input.slowQueryMs ?? threshold('slow-query', plan.thresholds).value;
    const findings: TriageFinding[] = [];
    const recommendations: string[] = [];

    const m = await ctx.step(
      'metrics',
      async () => {
        const [p99, errorRate] = await Promise.all([promQuery({ query: input.p99Query ?? DEFAULT_P99_QUERY }), promQuery({ query: input.errorRateQuery ?? DEFAULT_ERROR_RATE_QUERY })]);
        return { p99Ms: p99 === null ? null : Math.round(p99 * 1000), errorPercent: errorRate === null ? null : Math.round(errorRate * 1000) / 10 };
      },
      (x) => `p99 ${x.p99Ms ?? '-'} ms, errors ${x.errorPercent ?? '-'}%`,
    );
    const slow = m.p99Ms !== null && m.p99Ms > p99Limit;
    const failing = m.errorPercent !== null && m.errorPercent > errLimit;
    const paging = m.errorPercent !== null && breaches(critical, m.errorPercent);
    findings.push({ check: 'p99 latency', severity: slow ? 'P1' : 'OK', detail: m.p99Ms === null ? 'no data' : `${m.p99Ms} ms (threshold ${p99Limit} ms)` });
    findings.push({
      check: 'error rate',
      severity: paging ? critical.severity : failing ? 'P1' : 'OK',
      detail: m.errorPercent === null ? 'no data' : `${m.errorPercent}% (threshold ${errLimit}%; ${critical.severity} over ${critical.value}%, ${critical.seed})`,
    });

    let slowCount = 0;
    if (input.database) {
      const database = input.database;
      const rows = await ctx.step('slow-queries', () => slowQueries({ database, slowQueryMs }), (r) => `${r.length} slow`);
      slowCount = rows.length;
      findings.push({
        check: `slow queries ${database}`,
        severity: rows.length > 0 ? 'P2' : 'OK',
        detail: rows.length ? rows.slice(0, 3).map((r) => `pid ${r.pid} ${r.durationMs} ms: ${r.query}`).join(' ⏎ ') : `none over ${slowQueryMs} ms`,
      });
    } else ctx.skip('slow-queries', 'no database given');

    let hitRate: number | null = null;
    if (input.cacheService) {
      const cacheService = input.cacheService;
      const c = await ctx.step('cache', () => cacheCheck({ service: cacheService }), (x) => `hit rate ${x.hitRatePercent ?? '-'}%`);
      hitRate = c.hitRatePercent;
      findings.push({ check: `cache hit rate ${cacheService}`, severity: hitRate !== null && hitRate < 85 ? 'P2' : 'OK', detail: hitRate === null ? 'no lookups yet' : `${hitRate}% (minimum 85%)` });
    } else ctx.skip('cache', 'no cacheService given');

    if (slowCount > 0) recommendations.push('Slow queries found: EXPLAIN them and add the missing index; terminate a runaway query with approval (AlphaPulse 2.1)');
    if (hitRate !== null && hitRate < 85) recommendations.push('Cache hit rate under 85 %: run redis-triage (memory, eviction policy) and tune TTLs');
    if (paging) recommendations.push(`Error rate over ${critical.value}% (${critical.severity}, ${critical.seed}): page on-call now; run service-error-triage and roll back a recent deployment if it started after one`);
    else if (failing) recommendations.push('Error rate over threshold: run service-error-triage; roll back a recent deployment if it started after one');
    if (slow && slowCount === 0 && (hitRate === null || hitRate >= 85) && !failing) {
      recommendations.push('Latency high with healthy database and cache: scale up the service and check distributed traces for the slow endpoint');
    }
    if (recommendations.length === 0) recommendations.push('No action: latency and error rate are within thresholds');
    return result('latency-triage', ctx, findings, recommendations, []);
  });
}
