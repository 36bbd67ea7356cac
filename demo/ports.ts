/** The demo environment's default ports: away from the standard ones so a machine's own services don't clash. */
export const DEMO_PORTS = { postgres: 15432, redis: 16379, nats: 14222, natsMonitor: 18222, apiHttp: 18080, apiGrpc: 15051 } as const;
