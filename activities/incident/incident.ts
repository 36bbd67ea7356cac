import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { ErrorTypes } from '../../common/errors.js';
import { defaultIncidentConfig, NOTIFICATION_KINDS, SEVERITIES, type IncidentConfig } from '../../common/incident/config.js';
import { oncallAt } from '../../common/incident/oncall.js';
import type { IncidentPlan, Notification, NotificationResult, TicketRef, TicketRequest, TriageFinding } from '../../common/incident/types.js';
import { resolveEnvRefs } from '../../lib/env.js';
import { redactUrlsIn } from '../../lib/redact.js';
import type { ActivityDeps } from '../deps.js';
import { configFailure } from '../drivers/support.js';
import { classifyStreams, connectNats, purgeOlderThan, readStreams, type StreamReading } from './nats.js';
import { classifyRedis, connectRedis, REDIS_THRESHOLDS, countByPattern, parseInfo, readRedis, unlinkByPattern, type RedisReading } from './redis.js';
import { classifyReplication, readReplication, REPLICATION_THRESHOLDS, type ReplicationNode } from './redis-replication.js';
import { sendTicket, sendWebhook } from './webhooks.js';
import { serviceNamed } from '../services.js';

export interface IncidentDeps extends ActivityDeps {
  /** The config's incident section, defaults filled in. */
  incident: IncidentConfig;
}

/** Activities of the incident runbook family; spread into the worker's activities by activities/index.ts. */
export function createIncidentActivities(deps: ActivityDeps) {
  const d: IncidentDeps = { ...deps, incident: deps.config.incident ?? defaultIncidentConfig() };
  return {
    incidentPlan: () => incidentPlan(d),
    notify: (n: Notification) => notify(d, n),
    createTicket: (req: TicketRequest) => createTicket(d, req),
    redisTriageRead: (req: { service: string; slowlogEntries: number }) => redisTriageRead(d, req),
    redisCountMatching: (req: { service: string; pattern: string }) => redisCountMatching(d, req),
    redisUnlink: (req: { service: string; pattern: string }) => redisUnlink(d, req),
    redisFlush: (req: { service: string }) => redisFlush(d, req),
    redisClientCount: (req: { service: string }) => redisClientCount(d, req),
    redisReplicationRead: (req: { service: string; peers?: string[]; linkDownSeconds?: number }) => redisReplicationRead(d, req),
    cacheCheck: (req: { service: string; pattern?: string }) => cacheCheck(d, req),
    natsTriageRead: (req: { service: string; stream?: string }) => natsTriageRead(d, req),
    natsPurge: (req: { service: string; stream: string; cutoff?: number }) => natsPurge(d, req),
    databaseCheck: (req: { database: string }) => databaseCheck(d, req),
    slowQueries: (req: { database: string; slowQueryMs: number }) => slowQueries(d, req),
    fetchMetrics: (req: { url: string; match?: string }) => fetchMetrics(req),
    promQuery: (req: { query: string }) => promQuery(d, req),
  };
}


function redisUrl(deps: ActivityDeps, service: string): string {
  const probe = serviceNamed(deps, service).probes.find((p) => p.type === 'redis');
  if (!probe || probe.type !== 'redis') {
    throw ApplicationFailure.nonRetryable(`service ${service} has no redis probe: add one with its url to services.${service}.probes`, ErrorTypes.InvalidInput);
  }
  try {
    return resolveEnvRefs(probe.url, deps.env, `services.${service}.probes.redis.url`);
  } catch (err) {
    return configFailure(err);
  }
}

function natsServers(deps: ActivityDeps, service: string): string {
  const probe = serviceNamed(deps, service).probes.find((p) => p.type === 'nats');
  if (!probe || probe.type !== 'nats') {
    throw ApplicationFailure.nonRetryable(`service ${service} has no nats probe: add one with its servers to services.${service}.probes`, ErrorTypes.InvalidInput);
  }
  try {
    return resolveEnvRefs(probe.servers, deps.env, `services.${service}.probes.nats.servers`);
  } catch (err) {
    return configFailure(err);
  }
}

function databaseUrl(deps: ActivityDeps, name: string): string {
  const { databases } = deps.config;
  const db = databases.find((x) => x.name === name);
  if (!db) {
    throw ApplicationFailure.nonRetryable(
      `database: unknown database "${name}": expected one of ${databases.map((x) => x.name).join(', ') || '(none configured)'}`,
      ErrorTypes.InvalidInput,
    );
  }
  try {
    return resolveEnvRefs(db.url, deps.env, `databases.${name}.url`);
  } catch (err) {
    return configFailure(err);
  }
}

type Redis = ReturnType<typeof connectRedis>;
type Nats = Awaited<ReturnType<typeof connectNats>>;

async function withRedis<T>(deps: ActivityDeps, service: string, body: (r: Redis) => Promise<T>): Promise<T> {
  const redis = connectRedis(redisUrl(deps, service), 'runbook-triage');
  try {
    await redis.connect();
    return await body(redis);
  } finally {
    redis.disconnect();
  }
}

async function withNats<T>(deps: ActivityDeps, service: string, body: (c: Nats) => Promise<T>): Promise<T> {
  const c = await connectNats(natsServers(deps, service), 'runbook-triage');
  try {
    return await body(c);
  } finally {
    await c.nc.close().catch(() => undefined);
  }
}

async function withPg<T>(deps: ActivityDeps, database: string, body: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl(deps, database), connectionTimeoutMillis: 5000, statement_timeout: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The incident's durations, routes and the on-call pair now, captured once per run. */
export async function incidentPlan(d: IncidentDeps): Promise<IncidentPlan> {
  const { incident } = d;
  const routes = Object.fromEntries(
    NOTIFICATION_KINDS.map((k) => [k, incident.webhooks.filter((w) => w.events.includes(k)).map((w) => w.name)]),
  ) as IncidentPlan['routes'];
  const oncall = incident.oncall ? oncallAt(incident.oncall, new Date()) : null;
  const sev = incident.severities;
  return {
    environment: d.config.environment,
    responseSeconds: { P0: sev.P0.response, P1: sev.P1.response, P2: sev.P2.response, P3: sev.P3.response },
    stakeholderUpdateSeconds: Object.fromEntries(
      SEVERITIES.filter((s) => sev[s].stakeholderUpdates !== undefined).map((s) => [s, sev[s].stakeholderUpdates!]),
    ),
    ackTimeoutSeconds: incident.ackTimeout,
    l3AfterSeconds: incident.escalation.l3After,
    l4AfterSeconds: incident.escalation.l4After,
    contacts: { ...incident.escalation.contacts },
    postmortem: {
      requiredFor: incident.postmortem.requiredFor,
      dueSeconds: incident.postmortem.due,
      meetingWithinSeconds: incident.postmortem.meetingWithin,
      reminderEverySeconds: incident.postmortem.reminderEvery,
      maxReminders: incident.postmortem.maxReminders,
    },
    routes,
    oncall: oncall ? { primary: oncall.now.primary, secondary: oncall.now.secondary, shiftEnds: oncall.now.end } : null,
    statusPageUrl: incident.statusPageUrl,
    history: { ...incident.history },
    matrix: { l2For: incident.escalation.l2For, p0Immediate: incident.escalation.p0Immediate, security: incident.escalation.contacts.security },
    ticketFor: incident.ticket ? incident.ticket.for : [],
    verification: {
      requiredFor: incident.verification.requiredFor,
      ...(incident.verification.errorRateQuery ? { errorRateQuery: incident.verification.errorRateQuery } : {}),
      maxErrorRatePercent: incident.verification.maxErrorRatePercent,
      prometheus: !!incident.prometheusUrl,
    },
    watchSeconds: Object.fromEntries(SEVERITIES.filter((s) => sev[s].watch !== undefined).map((s) => [s, sev[s].watch!])),
  };
}

/** Creates the incident's ticket (AlphaPulse 1.4 step 2); the tracker's answer says where it is. */
export async function createTicket(d: IncidentDeps, req: TicketRequest): Promise<TicketRef> {
  if (!d.incident.ticket) throw ApplicationFailure.nonRetryable('incident.ticket is not configured', ErrorTypes.InvalidConfig);
  const ctx = Context.current();
  const ref = await sendTicket(d.incident.ticket, req, d.env, ctx.cancellationSignal);
  d.logger.info({ incidentId: req.incidentId, key: ref.key, status: ref.status }, 'ticket created');
  return ref;
}

/** One webhook delivery; throws on failure so the notify profile retries it. */
export async function notify(d: IncidentDeps, n: Notification): Promise<NotificationResult> {
  const hook = d.incident.webhooks.find((w) => w.name === n.webhook);
  if (!hook) throw ApplicationFailure.nonRetryable(`unknown webhook "${n.webhook}"`, ErrorTypes.InvalidConfig);
  const ctx = Context.current();
  const result = await sendWebhook(hook, n, d.env, ctx.info.attempt, ctx.cancellationSignal);
  d.logger.info({ webhook: hook.name, kind: n.kind, incidentId: n.incidentId, status: result.status }, 'notification sent');
  return result;
}

export async function redisTriageRead(deps: ActivityDeps, req: { service: string; slowlogEntries: number }): Promise<{ reading: RedisReading; findings: TriageFinding[] }> {
  return withRedis(deps, req.service, async (redis) => {
    const reading = await readRedis(redis, req.slowlogEntries);
    return { reading, findings: classifyRedis(reading, { ...REDIS_THRESHOLDS, table: deps.config.thresholds }) };
  });
}

/** How many keys a pattern matches (bounded SCAN), for the approval before they are deleted. */
export async function redisCountMatching(deps: ActivityDeps, req: { service: string; pattern: string }): Promise<{ matched: number; complete: boolean; sample: string[] }> {
  return withRedis(deps, req.service, (redis) => countByPattern(redis, req.pattern));
}

/** SCAN + UNLINK by pattern, heartbeating per batch. */
export async function redisUnlink(deps: ActivityDeps, req: { service: string; pattern: string }): Promise<number> {
  const ctx = Context.current();
  return withRedis(deps, req.service, (redis) => unlinkByPattern(redis, req.pattern, (deleted) => ctx.heartbeat({ deleted })));
}

export async function redisFlush(deps: ActivityDeps, req: { service: string }): Promise<{ keysBefore: number }> {
  return withRedis(deps, req.service, async (redis) => {
    const keysBefore = await redis.dbsize();
    if (keysBefore > 0) await redis.flushdb();
    return { keysBefore };
  });
}

/** Clients connected besides this one: before a restart, and polled after it to see the services come back. */
export async function redisClientCount(deps: ActivityDeps, req: { service: string }): Promise<number> {
  return withRedis(deps, req.service, async (redis) => Number(parseInfo(await redis.info('clients')).connected_clients ?? 1) - 1);
}

/** DBSIZE and a SCAN sample of keys matching a pattern (Fulcrum 3.1 step 3, without KEYS). */
export async function cacheCheck(deps: ActivityDeps, req: { service: string; pattern?: string }): Promise<{ keys: number; sample: string[]; hitRatePercent: number | null }> {
  return withRedis(deps, req.service, async (redis) => {
    const keys = await redis.dbsize();
    const sample: string[] = [];
    let cursor = '0';
    let rounds = 0;
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', req.pattern ?? '*', 'COUNT', 200);
      cursor = next;
      sample.push(...batch);
      rounds += 1;
    } while (cursor !== '0' && sample.length < 10 && rounds < 50);
    const reading = await readRedis(redis, 1);
    return { keys, sample: sample.slice(0, 10), hitRatePercent: reading.hitRatePercent };
  });
}

export async function natsTriageRead(deps: ActivityDeps, req: { service: string; stream?: string }): Promise<{ streams: StreamReading[]; findings: TriageFinding[] }> {
  return withNats(deps, req.service, async ({ jsm }) => {
    const streams = await readStreams(jsm, req.stream);
    if (req.stream && streams.length === 0) {
      throw ApplicationFailure.nonRetryable(`stream: no JetStream stream named "${req.stream}"`, ErrorTypes.InvalidInput);
    }
    return { streams, findings: classifyStreams(streams, { pendingMax: deps.config.thresholds.natsLagMessages, redeliveredMax: 10 }) };
  });
}

/** Whole-stream purge, or only messages older than `cutoff` (epoch ms fixed by the workflow, so a retry purges the same range). */
export async function natsPurge(deps: ActivityDeps, req: { service: string; stream: string; cutoff?: number }): Promise<{ purged: number }> {
  return withNats(deps, req.service, async ({ jsm }) => {
    if (req.cutoff !== undefined) return { purged: (await purgeOlderThan(jsm, req.stream, req.cutoff)).purged };
    const r = await jsm.streams.purge(req.stream);
    return { purged: r.purged };
  });
}

export async function databaseCheck(deps: ActivityDeps, req: { database: string }): Promise<{ ok: boolean; detail: string }> {
  try {
    return await withPg(deps, req.database, async (c) => {
      const r = await c.query<{ state: string | null; n: string }>(
        'SELECT state, count(*) AS n FROM pg_stat_activity WHERE datname = current_database() GROUP BY state',
      );
      const max = await c.query<{ max_connections: string }>('SHOW max_connections');
      return { ok: true, detail: `SELECT ok; connections ${r.rows.map((x) => `${x.state ?? 'none'} ${x.n}`).join(', ')} of max ${max.rows[0]?.max_connections}` };
    });
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    return { ok: false, detail: redactUrlsIn((err as Error).message) };
  }
}

/** Active queries running longer than the threshold (AlphaPulse 2.1 Slow Queries). */
export async function slowQueries(deps: ActivityDeps, req: { database: string; slowQueryMs: number }): Promise<Array<{ pid: number; durationMs: number; query: string }>> {
  return withPg(deps, req.database, async (c) => {
    const r = await c.query<{ pid: number; ms: number; query: string }>(
      `SELECT pid, (extract(epoch FROM now() - query_start) * 1000)::float8 AS ms, left(query, 200) AS query
         FROM pg_stat_activity
        WHERE state = 'active' AND pid <> pg_backend_pid() AND now() - query_start > make_interval(secs => $1::float8 / 1000)
        ORDER BY ms DESC LIMIT 10`,
      [req.slowQueryMs],
    );
    return r.rows.map((x) => ({ pid: x.pid, durationMs: Math.round(x.ms), query: x.query }));
  });
}

/** The metric lines of a Prometheus text endpoint whose names start with `match`. */
export async function fetchMetrics(req: { url: string; match?: string }): Promise<{ ok: boolean; lines: string[]; detail: string }> {
  try {
    const res = await fetch(req.url, { signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    const lines = text.split('\n').filter((l) => l && !l.startsWith('#') && (!req.match || l.startsWith(req.match)));
    return { ok: res.ok, lines: lines.slice(0, 50), detail: `HTTP ${res.status}, ${lines.length} matching lines` };
  } catch (err) {
    return { ok: false, lines: [], detail: (err as Error).message };
  }
}

/** One instant PromQL query against incident.prometheusUrl; the first sample's value, or null when empty. */
export async function promQuery(d: IncidentDeps, req: { query: string }): Promise<number | null> {
  if (!d.incident.prometheusUrl) {
    throw ApplicationFailure.nonRetryable('incident.prometheusUrl is not set: add the Prometheus base URL to the config', ErrorTypes.InvalidConfig);
  }
  let base: string;
  try {
    base = resolveEnvRefs(d.incident.prometheusUrl, d.env, 'incident.prometheusUrl');
  } catch (err) {
    return configFailure(err);
  }
  const res = await fetch(`${base.replace(/\/$/, '')}/api/v1/query?query=${encodeURIComponent(req.query)}`, { signal: AbortSignal.timeout(10_000) });
  const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: Array<{ value: [number, string] }> | [number, string] } };
  if (body.status !== 'success') {
    throw ApplicationFailure.nonRetryable(`PromQL ${req.query}: ${body.error ?? `HTTP ${res.status}`}`, ErrorTypes.InvalidInput);
  }
  const data = body.data!;
  const raw = data.resultType === 'scalar' ? (data.result as [number, string])[1] : (data.result as Array<{ value: [number, string] }>)[0]?.value[1];
  if (raw === undefined) return null;
  const v = Number(raw);
  return Number.isFinite(v) ? v : null;
}

/**
 * AlphaPulse 2.2 split-brain symptoms across the triaged node and its peers: role, link and
 * offsets of each. A node that cannot be reached is a finding, not a failure (a dead master is
 * what this looks for); a peer that is not a Redis service of the config is refused.
 */
export async function redisReplicationRead(
  deps: ActivityDeps,
  req: { service: string; peers?: string[]; linkDownSeconds?: number },
): Promise<{ nodes: ReplicationNode[]; findings: TriageFinding[]; recommendations: string[] }> {
  const nodes: ReplicationNode[] = [];
  for (const service of [req.service, ...(req.peers ?? []).filter((p) => p !== req.service)]) {
    redisUrl(deps, service);
    try {
      nodes.push({ service, reading: await withRedis(deps, service, readReplication) });
    } catch (err) {
      if (err instanceof ApplicationFailure) throw err;
      nodes.push({ service, error: redactUrlsIn((err as Error).message).slice(0, 200) });
    }
  }
  return { nodes, ...classifyReplication(nodes, { ...REPLICATION_THRESHOLDS, ...(req.linkDownSeconds !== undefined ? { linkDownSeconds: req.linkDownSeconds } : {}) }) };
}
