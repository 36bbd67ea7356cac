import { Client as GrpcClient, credentials, Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import type { ProbeConfig } from '../../common/config-schema.js';
import { healthServiceDefinition, servingStatusName, type HealthCheckRequest } from '../proto/health.js';
import type { Probe } from './probe.js';

export const probeGrpc: Probe<'grpc'> = async (cfg, signal) => {
  const check = healthServiceDefinition().Check!;
  const client = new GrpcClient(cfg.address, cfg.tls ? credentials.createSsl() : credentials.createInsecure());
  try {
    const response = await new Promise<unknown>((resolve, reject) => {
      const call = client.makeUnaryRequest<HealthCheckRequest, unknown>(
        check.path,
        check.requestSerialize,
        check.responseDeserialize,
        { service: cfg.service },
        new Metadata(),
        { deadline: Date.now() + cfg.timeoutMs },
        (err, value) => (err ? reject(err) : resolve(value)),
      );
      signal.addEventListener('abort', () => call.cancel(), { once: true });
    });
    const status = servingStatusName((response as { status?: unknown } | undefined)?.status);
    const what = cfg.service ? `service "${cfg.service}"` : 'server';
    return { healthy: status === 'SERVING', detail: `${status} (${what})` };
  } catch (err) {
    if (isServiceError(err)) return { healthy: false, detail: describeGrpcError(err, cfg) };
    throw err;
  } finally {
    client.close();
  }
};

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && 'metadata' in err;
}

function describeGrpcError(err: ServiceError, cfg: Extract<ProbeConfig, { type: 'grpc' }>): string {
  const name = GrpcStatus[err.code] ?? String(err.code);
  switch (err.code) {
    case GrpcStatus.UNAVAILABLE:
      if (/ECONNREFUSED/.test(err.details)) return `connection refused (${name})`;
      break;
    case GrpcStatus.DEADLINE_EXCEEDED:
      return `timed out after ${cfg.timeoutMs}ms (${name})`;
    case GrpcStatus.UNIMPLEMENTED:
      return `${name}: the server does not implement grpc.health.v1.Health`;
    case GrpcStatus.NOT_FOUND:
      return `${name}: the server does not know service "${cfg.service}"`;
  }
  // grpc-js appends a timestamp and an empty resolution note: noise in a health table.
  return `${name}: ${err.details.replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/g, '').replace(/\.?\s*Resolution note:\s*$/, '')}`;
}
