import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/**
 * The grpc.health.v1 protocol, loaded once from the shipped health.proto and
 * shared by the gRPC probe and the demo service's health server.
 */

export const HEALTH_PROTO_PATH = fileURLToPath(new URL('./health.proto', import.meta.url));

export const SERVING_STATUSES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;
export type ServingStatus = (typeof SERVING_STATUSES)[number];

export interface HealthCheckRequest {
  service: string;
}

export interface HealthCheckResponse {
  status: ServingStatus;
}

let definition: ServiceDefinition | undefined;

/** `grpc.health.v1.Health`, with enums as their names so a probe can report "NOT_SERVING". */
export function healthServiceDefinition(): ServiceDefinition {
  if (!definition) {
    const pkg = loadSync(HEALTH_PROTO_PATH, { keepCase: true, enums: String, defaults: true, oneofs: true });
    const svc = pkg['grpc.health.v1.Health'];
    if (!svc || !('Check' in svc)) throw new Error(`${HEALTH_PROTO_PATH} does not define grpc.health.v1.Health`);
    definition = svc as ServiceDefinition;
  }
  return definition;
}

/** The status name of a decoded response; numbers outside the enum read as UNKNOWN. */
export function servingStatusName(value: unknown): ServingStatus {
  if (typeof value === 'string' && (SERVING_STATUSES as readonly string[]).includes(value)) return value as ServingStatus;
  if (typeof value === 'number') return SERVING_STATUSES[value] ?? 'UNKNOWN';
  return 'UNKNOWN';
}
