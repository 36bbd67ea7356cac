import {
  Server,
  ServerCredentials,
  status as GrpcStatus,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import { healthServiceDefinition, type HealthCheckRequest, type HealthCheckResponse } from '../activities/proto/health.js';

export type DemoServingStatus = 'SERVING' | 'NOT_SERVING';

export interface GrpcHealthServer {
  port: number;
  setStatus(status: DemoServingStatus): void;
  stop(): Promise<void>;
}

/** How long stop() lets open calls finish before cutting them. */
const SHUTDOWN_GRACE_MS = 1000;

/**
 * A grpc.health.v1 server, as an application exposes for grpc_health_probe and
 * Kubernetes. It answers for the whole server ("") and for each name in `services`;
 * any other name is NOT_FOUND, as the protocol says.
 */
export async function startGrpcHealthServer(opts: {
  port: number;
  host?: string;
  status?: DemoServingStatus;
  services?: string[];
}): Promise<GrpcHealthServer> {
  let status: DemoServingStatus = opts.status ?? 'SERVING';
  const known = new Set(['', ...(opts.services ?? [])]);
  const watchers = new Set<ServerWritableStream<HealthCheckRequest, HealthCheckResponse>>();

  const server = new Server();
  server.addService(healthServiceDefinition(), {
    Check(call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, callback: sendUnaryData<HealthCheckResponse>) {
      const name = call.request.service ?? '';
      if (!known.has(name)) {
        callback({ code: GrpcStatus.NOT_FOUND, details: `unknown service "${name}"` });
        return;
      }
      callback(null, { status });
    },
    Watch(call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) {
      const name = call.request.service ?? '';
      call.write({ status: known.has(name) ? status : 'SERVICE_UNKNOWN' });
      if (!known.has(name)) return;
      watchers.add(call);
      call.on('cancelled', () => watchers.delete(call));
      call.on('close', () => watchers.delete(call));
    },
  });

  const host = opts.host ?? '127.0.0.1';
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${opts.port}`, ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );

  let stopped: Promise<void> | undefined;
  return {
    port,
    setStatus(next) {
      if (next === status) return;
      status = next;
      for (const w of watchers) w.write({ status });
    },
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        // Watch streams never end by themselves: end them so the graceful shutdown can finish.
        for (const w of watchers) w.end();
        watchers.clear();
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return stopped;
    },
  };
}
