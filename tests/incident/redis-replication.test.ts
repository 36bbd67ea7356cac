import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TriageFinding, TriageResult } from '../../common/incident/types.js';
import type { LoadedConfig } from '../../lib/config.js';
import { recordHistory, withWorker, writeConfig } from '../fixtures/runbook-worker.js';
import { failureText } from '../database/helpers.js';
import { freePort, startProcessServer, startRedis, type RedisServer } from '../fixtures/servers.js';

/**
 * redis-triage's replication check (AlphaPulse 2.2, Redis split-brain) against a real primary
 * and a real replica (`--replicaof`): role, link and offsets; the link down once the primary is
 * killed; two masters once the replica is promoted while another master serves the same data.
 */

let primary: RedisServer;
let other: RedisServer | undefined;
let replica: Awaited<ReturnType<typeof startReplica>>;

async function info(port: number, section: string): Promise<Record<string, string>> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  r.on('error', () => undefined);
  await r.connect();
  try {
    return Object.fromEntries(
      (await r.info(section))
        .split(/\r?\n/)
        .filter((l) => l.includes(':') && !l.startsWith('#'))
        .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]),
    );
  } finally {
    r.disconnect();
  }
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function startReplica(masterPort: number) {
  return startProcessServer({
    name: 'Redis-replica',
    ports: async () => ({ port: await freePort() }),
    argv: (tmp, { port }) => ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--dir', tmp, '--save', '', '--appendonly', 'no', '--replicaof', '127.0.0.1', String(masterPort)],
    ready: async ({ port }) => (await info(port, 'replication')).master_link_status === 'up',
  });
}

const service = (name: string, port: number) => ({ name, group: 'infra', driver: { type: 'command', status: ['true'] }, probes: [{ type: 'redis', url: `redis://127.0.0.1:${port}` }] });

async function triage(loaded: LoadedConfig, input: Record<string, unknown>, record?: string): Promise<TriageResult> {
  return withWorker(loaded, async ({ client, taskQueue }) => {
    const workflowId = `redis-replication-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;
    const r = (await client.workflow.execute('redis-triage', { taskQueue, workflowId, args: [{ requestedBy: 'alice', ...input }] })) as TriageResult;
    if (record) await recordHistory(client, workflowId, record);
    return r;
  });
}

const finding = (r: TriageResult, check: string): TriageFinding | undefined => r.findings.find((f) => f.check === check);

beforeAll(async () => {
  primary = await startRedis();
  replica = await startReplica(primary.port);
  const r = new Redis(primary.url);
  for (let i = 0; i < 100; i++) await r.set(`policy:${i}`, 'x'.repeat(100));
  r.disconnect();
  const head = Number((await info(primary.port, 'replication')).master_repl_offset);
  await until('the replica to catch up', async () => Number((await info(replica.ports.port, 'replication')).slave_repl_offset) >= head);
}, 60_000);

afterAll(async () => {
  await Promise.all([primary?.stop(), replica?.stop(), other?.stop()]);
});

describe('redis-triage replication check', { timeout: 60_000 }, () => {
  it('a healthy pair: the replica reports role, link up and offsets; the primary its replica; one master', async () => {
    const loaded = await writeConfig({ environment: 'repl', services: [service('redis-a', primary.port), service('redis-b', replica.ports.port)] });
    const r = await triage(loaded, { service: 'redis-b', peers: ['redis-a'] }, 'redis-triage-replication');
    const b = finding(r, 'replication redis-b')!;
    expect(b.severity).toBe('OK');
    expect(b.detail).toMatch(new RegExp(`^role replica of 127\\.0\\.0\\.1:${primary.port}, link up, last I/O \\d+s ago; master_repl_offset (\\d+) \\(redis-a\\), slave_repl_offset \\1, 0 KiB behind$`));
    const a = finding(r, 'replication redis-a')!;
    expect(a.severity).toBe('INFO');
    expect(a.detail).toMatch(new RegExp(`^role master, 1 connected replica\\(s\\), master_repl_offset \\d+; 127\\.0\\.0\\.1:${replica.ports.port} online offset \\d+`));
    expect(finding(r, 'split-brain')).toEqual({ check: 'split-brain', severity: 'OK', detail: '1 master among 2 reachable nodes' });
    expect(r.progress.steps.find((s) => s.id === 'replication')?.status).toBe('succeeded');
  });

  it('the primary killed: the replica link is down, P1 past the threshold, with a recommendation', async () => {
    const loaded = await writeConfig({ environment: 'repl', services: [service('redis-a', primary.port), service('redis-b', replica.ports.port)] });
    await primary.stop();
    await until('the link to go down', async () => (await info(replica.ports.port, 'replication')).master_link_status === 'down');
    const early = await triage(loaded, { service: 'redis-b', peers: ['redis-a'], linkDownSeconds: 60 });
    expect(finding(early, 'replication redis-b')).toMatchObject({ severity: 'P2', detail: expect.stringMatching(/link down for \d+s \(threshold 60s\)/) });
    await until('the link to be down over 1 s', async () => Number((await info(replica.ports.port, 'replication')).master_link_down_since_seconds) > 1);
    const r = await triage(loaded, { service: 'redis-b', peers: ['redis-a'], linkDownSeconds: 1 });
    expect(finding(r, 'replication redis-b')).toMatchObject({
      severity: 'P1',
      detail: expect.stringMatching(new RegExp(`^role replica of 127\\.0\\.0\\.1:${primary.port}, link down for \\d+s \\(threshold 1s\\)`)),
    });
    expect(finding(r, 'replication redis-a')).toMatchObject({ severity: 'P2', detail: expect.stringMatching(/^not reachable: /) });
    expect(r.ok).toBe(false);
    expect(r.recommendations.join('\n')).toMatch(/redis-b has lost its master 127\.0\.0\.1:\d+/);
  });

  it('the replica promoted (REPLICAOF NO ONE) while another master serves: split-brain P0', async () => {
    other = await startRedis();
    const r0 = new Redis({ port: replica.ports.port, host: '127.0.0.1' });
    await r0.replicaof('NO', 'ONE');
    await r0.set('written-after-the-split', '1');
    r0.disconnect();
    const loaded = await writeConfig({ environment: 'repl', services: [service('redis-b', replica.ports.port), service('redis-c', other.port)] });
    const r = await triage(loaded, { service: 'redis-b', peers: ['redis-c'] });
    expect(finding(r, 'replication redis-b')).toMatchObject({ severity: 'INFO', detail: expect.stringMatching(/^role master, 0 connected replica\(s\)/) });
    expect(finding(r, 'split-brain')).toMatchObject({ severity: 'P0', detail: expect.stringMatching(/^2 nodes answer role:master: redis-b \(offset \d+, 0 replicas\), redis-c \(offset \d+, 0 replicas\)/) });
    expect(r.ok).toBe(false);
    expect(r.recommendations.join('\n')).toMatch(/Split-brain \(AlphaPulse 2\.2\): keep one master/);
  });

  it('peers must be configured services', async () => {
    const loaded = await writeConfig({ environment: 'repl', services: [service('redis-b', replica.ports.port)] });
    const err = await triage(loaded, { service: 'redis-b', peers: ['redis-z'] }).catch((e: unknown) => e as Error);
    expect(failureText(err)).toMatch(/peers: unknown service\(s\) redis-z: expected one of redis-b/);
  });
});
