import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { TriageFinding } from '../../common/incident/types.js';

/**
 * JetStream readings and remediations for nats-lag-triage (Fulcrum 3.3): stream and
 * consumer state through the JetStream API (the same numbers as /jsz?consumers=true).
 */

export interface ConsumerReading {
  stream: string;
  name: string;
  numPending: number;
  numAckPending: number;
  numRedelivered: number;
  numWaiting: number;
}

export interface StreamReading {
  name: string;
  messages: number;
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  consumers: ConsumerReading[];
}

export interface NatsThresholds {
  pendingMax: number;
  redeliveredMax: number;
}

export async function connectNats(servers: string, name: string): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  const list = servers.split(',').map((s) => s.trim()).filter(Boolean);
  const nc = await connect({ servers: list, name, timeout: 5000, reconnect: false, maxReconnectAttempts: 0 });
  try {
    return { nc, jsm: await jetstreamManager(nc, { timeout: 10_000 }) };
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw err;
  }
}

export async function readStreams(jsm: JetStreamManager, only?: string): Promise<StreamReading[]> {
  const out: StreamReading[] = [];
  for await (const si of jsm.streams.list()) {
    const name = si.config.name;
    if (only && name !== only) continue;
    const consumers: ConsumerReading[] = [];
    for await (const ci of jsm.consumers.list(name)) {
      consumers.push({
        stream: name,
        name: ci.name,
        numPending: ci.num_pending,
        numAckPending: ci.num_ack_pending,
        numRedelivered: ci.num_redelivered,
        numWaiting: ci.num_waiting,
      });
    }
    out.push({ name, messages: si.state.messages, bytes: si.state.bytes, firstSeq: si.state.first_seq, lastSeq: si.state.last_seq, consumers });
  }
  return out;
}

export function classifyStreams(streams: readonly StreamReading[], t: NatsThresholds): TriageFinding[] {
  const f: TriageFinding[] = [];
  for (const s of streams) {
    f.push({ check: `stream ${s.name}`, severity: 'INFO', detail: `${s.messages} messages, ${s.bytes} bytes, ${s.consumers.length} consumers` });
    for (const c of s.consumers) {
      const lag = c.numPending > t.pendingMax;
      const stuck = c.numRedelivered > t.redeliveredMax;
      f.push({
        check: `consumer ${s.name}/${c.name}`,
        severity: lag || stuck ? 'P1' : 'OK',
        detail: [
          `num_pending ${c.numPending}${lag ? ` > ${t.pendingMax} (lagging)` : ''}`,
          `num_ack_pending ${c.numAckPending}`,
          `num_redelivered ${c.numRedelivered}${stuck ? ` > ${t.redeliveredMax} (stuck messages: a poison message or a failing handler)` : ''}`,
        ].join(', '),
      });
    }
  }
  return f;
}

/** Stream time of a sequence, looking forward past deleted messages; null past the end. */
async function timeAtOrAfter(jsm: JetStreamManager, stream: string, seq: number, lastSeq: number): Promise<{ seq: number; time: number } | null> {
  for (let s = seq; s <= lastSeq; s++) {
    const m = await jsm.streams.getMessage(stream, { seq: s }).catch(() => null);
    if (m) return { seq: s, time: m.time.getTime() };
  }
  return null;
}

/**
 * Purges messages published before `cutoff` (epoch ms): binary search for the first
 * sequence at or after it, then purge everything below. Repeating it purges nothing more.
 */
export async function purgeOlderThan(jsm: JetStreamManager, stream: string, cutoff: number): Promise<{ purged: number; keptFromSeq: number }> {
  const si = await jsm.streams.info(stream);
  let lo = si.state.first_seq;
  let hi = si.state.last_seq + 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const at = await timeAtOrAfter(jsm, stream, mid, si.state.last_seq);
    if (at === null || at.time >= cutoff) hi = mid;
    else lo = at.seq + 1;
  }
  if (lo <= si.state.first_seq) return { purged: 0, keptFromSeq: lo };
  const r = await jsm.streams.purge(stream, { seq: lo });
  return { purged: r.purged, keptFromSeq: lo };
}
