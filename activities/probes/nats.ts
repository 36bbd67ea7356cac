import { jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { closeQuietly, describeError, readCapped, safeDecode, snippet, type Probe } from './probe.js';

/** JetStream lag is summed over at most this many streams, so a huge account can't stall the probe. */
const MAX_STREAMS = 100;

export const probeNats: Probe<'nats'> = async (cfg, signal) => {
  const { servers, auth } = natsServers(cfg.servers);
  let nc: NatsConnection | undefined;
  const close = () => (nc ? closeQuietly(() => nc!.close()) : Promise.resolve());
  signal.addEventListener('abort', close, { once: true });
  try {
    nc = await natsConnect({
      servers,
      ...auth,
      timeout: cfg.timeoutMs,
      reconnect: false,
      maxReconnectAttempts: 0,
      name: 'runbook-probe',
    });
    // The connection may have completed after the deadline: close it rather than leak it.
    signal.throwIfAborted();
    const parts = [`connected to nats-server ${nc.info?.version ?? '?'}`];
    const metrics: Record<string, number> = {};
    let healthy = true;

    if (cfg.jetstream) {
      const js = await jetStreamReading(nc, cfg.timeoutMs);
      if ('error' in js) {
        healthy = false;
        parts.push(js.error);
      } else {
        Object.assign(metrics, js.metrics);
        parts.push(
          `JetStream ${js.metrics.streams} streams, ${js.metrics.consumers} consumers, ${formatBytes(js.metrics.storageBytes)} stored, max consumer pending ${js.metrics.maxConsumerPending}`,
        );
      }
    }

    if (cfg.monitorUrl) {
      const monitor = await natsHealthz(cfg.monitorUrl, signal);
      if (!monitor.ok) healthy = false;
      parts.push(monitor.detail);
    }
    return { healthy, detail: parts.join('; '), ...(Object.keys(metrics).length > 0 ? { metrics } : {}) };
  } finally {
    signal.removeEventListener('abort', close);
    await close();
  }
};

/** nats.js does not take credentials from server URLs, so they are lifted out into connect options. */
function natsServers(spec: string): { servers: string[]; auth: { user?: string; pass?: string; token?: string } } {
  const auth: { user?: string; pass?: string; token?: string } = {};
  const servers = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const m = /^([a-z][a-z0-9+.-]*:\/\/)([^@/\s]*)@(.*)$/i.exec(s);
      if (!m) return s;
      const [user, ...rest] = m[2]!.split(':');
      if (rest.length > 0) {
        auth.user = safeDecode(user!);
        auth.pass = safeDecode(rest.join(':'));
      } else if (user) {
        auth.token = safeDecode(user);
      }
      return `${m[1]}${m[3]}`;
    });
  return { servers, auth };
}

interface JetStreamMetrics {
  streams: number;
  consumers: number;
  storageBytes: number;
  memoryBytes: number;
  maxConsumerPending: number;
}

async function jetStreamReading(nc: NatsConnection, timeoutMs: number): Promise<{ metrics: JetStreamMetrics } | { error: string }> {
  let info;
  const jsm = await jetstreamManager(nc, { timeout: timeoutMs, checkAPI: false });
  try {
    info = await jsm.getAccountInfo();
  } catch (err) {
    const msg = describeError(err);
    return {
      error: /not enabled/i.test(msg)
        ? 'JetStream is not enabled on the server'
        : /no responders|503/i.test(msg)
          ? `JetStream is not available (${msg})`
          : `JetStream account info failed: ${msg}`,
    };
  }
  let maxConsumerPending = 0;
  let seen = 0;
  for await (const stream of jsm.streams.list()) {
    if (++seen > MAX_STREAMS) break;
    for await (const consumer of jsm.consumers.list(stream.config.name)) {
      maxConsumerPending = Math.max(maxConsumerPending, consumer.num_pending);
    }
  }
  return {
    metrics: {
      streams: info.streams,
      consumers: info.consumers,
      storageBytes: info.storage,
      memoryBytes: info.memory,
      maxConsumerPending,
    },
  };
}

async function natsHealthz(monitorUrl: string, signal: AbortSignal): Promise<{ ok: boolean; detail: string }> {
  const url = `${monitorUrl.replace(/\/+$/, '')}/healthz`;
  try {
    const res = await fetch(url, { signal });
    const body = await readCapped(res, 64 * 1024);
    return res.status === 200
      ? { ok: true, detail: 'monitor /healthz ok' }
      : { ok: false, detail: `monitor /healthz HTTP ${res.status}${snippet(body)}` };
  } catch (err) {
    if (signal.aborted) throw err;
    return { ok: false, detail: `monitor /healthz: ${describeError(err)}` };
  }
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}
