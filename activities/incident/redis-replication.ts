import type { Redis } from 'ioredis';
import type { TriageFinding } from '../../common/incident/types.js';
import { parseInfo } from './redis.js';

/**
 * Replication readings for redis-triage (AlphaPulse 2.2, Redis Split-Brain: "some keys not
 * found, inconsistent data"): each node's role, its link to its master and the offsets, and
 * across the nodes of one Redis (the triaged service and its `peers`) the split-brain symptoms:
 * two nodes answering role:master, a replica whose link has been down past a threshold.
 */

export interface ReplicaOfMaster {
  ip: string;
  port: number;
  state: string;
  offset: number;
  /** Seconds since the replica's last ack. */
  lagSeconds: number;
}

export interface ReplicationReading {
  role: 'master' | 'slave' | string;
  masterReplOffset: number;
  replId: string;
  connectedSlaves: number;
  slaves: ReplicaOfMaster[];
  /** Replica only. */
  masterHost?: string;
  masterPort?: number;
  linkStatus?: 'up' | 'down' | string;
  /** Seconds the link has been down (INFO master_link_down_since_seconds), when it is. */
  linkDownSeconds?: number;
  lastIoSecondsAgo?: number;
  slaveReplOffset?: number;
  syncInProgress?: boolean;
}

export interface ReplicationThresholds {
  /** A replica's link down longer than this is P1 (shorter: P2, it may be reconnecting). */
  linkDownSeconds: number;
  /** Replication backlog a replica may trail its master by before it is reported P2. */
  lagBytes: number;
}

/**
 * The seed gives no Redis value: 60 s is AlphaPulse 2.1's replica threshold ("restart replica
 * if lag >60 seconds") carried over; 1 MiB of unreplicated writes is this project's choice.
 */
export const REPLICATION_THRESHOLDS: ReplicationThresholds = { linkDownSeconds: 60, lagBytes: 1024 * 1024 };

export function parseReplication(text: string): ReplicationReading {
  const info = parseInfo(text);
  const num = (k: string) => Number(info[k] ?? 0) || 0;
  const slaves: ReplicaOfMaster[] = [];
  for (const [k, v] of Object.entries(info)) {
    if (!/^slave\d+$/.test(k)) continue;
    const f = Object.fromEntries(v.split(',').map((p) => p.split('=') as [string, string]));
    slaves.push({ ip: f.ip ?? '?', port: Number(f.port ?? 0), state: f.state ?? '?', offset: Number(f.offset ?? 0), lagSeconds: Number(f.lag ?? 0) });
  }
  const r: ReplicationReading = {
    role: info.role ?? '?',
    masterReplOffset: num('master_repl_offset'),
    replId: info.master_replid ?? '',
    connectedSlaves: num('connected_slaves'),
    slaves,
  };
  if (r.role === 'slave') {
    r.masterHost = info.master_host;
    r.masterPort = num('master_port');
    r.linkStatus = info.master_link_status;
    r.lastIoSecondsAgo = Number(info.master_last_io_seconds_ago ?? -1);
    r.slaveReplOffset = num('slave_repl_offset');
    r.syncInProgress = info.master_sync_in_progress === '1';
    if (info.master_link_down_since_seconds !== undefined) r.linkDownSeconds = Number(info.master_link_down_since_seconds);
  }
  return r;
}

export async function readReplication(redis: Redis): Promise<ReplicationReading> {
  return parseReplication(await redis.info('replication'));
}

/** One node of the Redis being triaged: its reading, or why it could not be read. */
export type ReplicationNode = { service: string; reading: ReplicationReading } | { service: string; error: string };

function kib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

/** Findings for the triaged node (first) and its peers, with the recommendations they call for. */
export function classifyReplication(
  nodes: readonly ReplicationNode[],
  t: ReplicationThresholds = REPLICATION_THRESHOLDS,
): { findings: TriageFinding[]; recommendations: string[] } {
  const findings: TriageFinding[] = [];
  const recommendations = new Set<string>();
  const read = nodes.filter((n): n is { service: string; reading: ReplicationReading } => 'reading' in n);
  const masters = read.filter((n) => n.reading.role === 'master');
  for (const n of nodes) {
    if ('error' in n) {
      findings.push({ check: `replication ${n.service}`, severity: 'P2', detail: `not reachable: ${n.error}` });
      continue;
    }
    const r = n.reading;
    if (r.role === 'master') {
      const lagging = r.slaves.map((s) => ({ ...s, behind: Math.max(0, r.masterReplOffset - s.offset) }));
      const worst = lagging.filter((s) => s.behind > t.lagBytes || s.state !== 'online');
      findings.push({
        check: `replication ${n.service}`,
        severity: worst.length > 0 ? 'P2' : 'INFO',
        detail:
          `role master, ${r.connectedSlaves} connected replica(s), master_repl_offset ${r.masterReplOffset}` +
          (lagging.length ? `; ${lagging.map((s) => `${s.ip}:${s.port} ${s.state} offset ${s.offset} (${kib(s.behind)} behind, ack ${s.lagSeconds}s ago)`).join('; ')}` : ''),
      });
      if (worst.length > 0) recommendations.add(`Replicas of ${n.service} trail it by more than ${kib(t.lagBytes)} or are not online: check their network and load (INFO replication on each)`);
      continue;
    }
    // A replica: what it has applied against what its master has (the master's own offset when it is among the nodes).
    // A replica in sync follows its master's replication id.
    const master = r.replId ? masters.find((m) => m.reading.replId === r.replId) : undefined;
    const head = master ? master.reading.masterReplOffset : r.masterReplOffset;
    const behind = Math.max(0, head - (r.slaveReplOffset ?? 0));
    const offsets = `master_repl_offset ${head}${master ? ` (${master.service})` : ''}, slave_repl_offset ${r.slaveReplOffset ?? 0}, ${kib(behind)} behind`;
    if (r.linkStatus === 'up') {
      findings.push({
        check: `replication ${n.service}`,
        severity: behind > t.lagBytes ? 'P2' : 'OK',
        detail: `role replica of ${r.masterHost}:${r.masterPort}, link up, last I/O ${r.lastIoSecondsAgo}s ago; ${offsets}`,
      });
      if (behind > t.lagBytes) recommendations.add(`${n.service} trails its master by ${kib(behind)}: reads from it are stale; check the network and the master's load`);
    } else {
      const down = r.linkDownSeconds ?? -1;
      const long = down < 0 || down > t.linkDownSeconds;
      findings.push({
        check: `replication ${n.service}`,
        severity: long ? 'P1' : 'P2',
        detail:
          `role replica of ${r.masterHost}:${r.masterPort}, link ${r.linkStatus ?? '?'}` +
          `${down >= 0 ? ` for ${down}s` : ''} (threshold ${t.linkDownSeconds}s)${r.syncInProgress ? ', full sync in progress' : ''}; ${offsets}`,
      });
      recommendations.add(
        `${n.service} has lost its master ${r.masterHost}:${r.masterPort}: it serves data as of the link loss. Bring the master back, or promote a replica (Sentinel failover, or REPLICAOF NO ONE on one replica and REPLICAOF <new master> on the others)`,
      );
    }
  }
  if (masters.length > 1) {
    findings.push({
      check: 'split-brain',
      severity: 'P0',
      detail: `${masters.length} nodes answer role:master: ${masters.map((m) => `${m.service} (offset ${m.reading.masterReplOffset}, ${m.reading.connectedSlaves} replicas)`).join(', ')}; writes land on different data sets`,
    });
    recommendations.add(
      `Split-brain (AlphaPulse 2.2): keep one master (the one whose data is current: clients' writes, the higher offset), make the others REPLICAOF it (their writes since the split are lost: data loss possible), then use Sentinel for failover`,
    );
  } else if (read.length > 1) {
    findings.push({ check: 'split-brain', severity: 'OK', detail: `${masters.length} master among ${read.length} reachable nodes` });
  }
  return { findings, recommendations: [...recommendations] };
}
