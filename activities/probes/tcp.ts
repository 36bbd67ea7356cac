import net from 'node:net';
import type { Probe, Reading } from './probe.js';

export const probeTcp: Probe<'tcp'> = (cfg, signal) =>
  new Promise<Reading>((resolve, reject) => {
    const socket = net.connect({ host: cfg.host, port: cfg.port });
    const onAbort = () => socket.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    const finish = (fn: () => void) => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      fn();
    };
    socket.once('connect', () => finish(() => resolve({ healthy: true, detail: `connected to ${cfg.host}:${cfg.port}` })));
    socket.once('error', (err) => finish(() => reject(err)));
  });
