import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { DEMO_PORTS } from './ports.js';

export type DemoPorts = { [K in keyof typeof DEMO_PORTS]: number };

// Compiled, this module runs from dist/demo/ (its migrations copied beside it); the `runbook`
// entry stays in bin/ at the package root either way.
const RUNBOOK_BIN = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../bin/runbook.mjs' : '../../bin/runbook.mjs', import.meta.url));
const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations', import.meta.url));

/**
 * The demo environment's configuration: the same shape as runbooks.example.yaml,
 * with ports and state dir as parameters so tests can run it on free ports.
 */
export function demoConfig(opts: { stateDir: string; ports?: Partial<DemoPorts>; approvers?: string[]; environment?: string }) {
  const p: DemoPorts = { ...DEMO_PORTS, ...opts.ports };
  const cmd = (action: string, service: string, port: number, port2?: number) => [
    process.execPath,
    RUNBOOK_BIN,
    'demo', 'service', action, service,
    '--state-dir', opts.stateDir,
    '--port', String(port),
    ...(port2 ? ['--port2', String(port2)] : []),
  ];
  const driver = (service: string, port: number, port2?: number) => ({
    type: 'command',
    start: cmd('start', service, port, port2),
    stop: cmd('stop', service, port, port2),
    status: cmd('status', service, port, port2),
    logs: cmd('logs', service, port, port2),
    clean: cmd('clean', service, port, port2),
  });
  const pgUrl = `postgres://postgres@127.0.0.1:${p.postgres}/postgres`;
  return {
    environment: opts.environment ?? 'demo',
    services: [
      { name: 'postgres', group: 'infra', ports: [p.postgres], driver: driver('postgres', p.postgres), probes: [{ type: 'postgres', url: pgUrl }] },
      { name: 'redis', group: 'infra', ports: [p.redis], driver: driver('redis', p.redis), probes: [{ type: 'redis', url: `redis://127.0.0.1:${p.redis}` }] },
      {
        name: 'nats',
        group: 'infra',
        ports: [p.nats, p.natsMonitor],
        driver: driver('nats', p.nats, p.natsMonitor),
        probes: [{ type: 'nats', servers: `nats://127.0.0.1:${p.nats}`, monitorUrl: `http://127.0.0.1:${p.natsMonitor}` }],
      },
      {
        name: 'api',
        group: 'apps',
        dependsOn: ['postgres', 'redis', 'nats'],
        ports: [p.apiHttp, p.apiGrpc],
        driver: driver('api', p.apiHttp, p.apiGrpc),
        probes: [
          { type: 'grpc', address: `127.0.0.1:${p.apiGrpc}` },
          { type: 'http', url: `http://127.0.0.1:${p.apiHttp}/healthz`, bodyMatch: 'healthy' },
        ],
      },
    ],
    stack: {
      groups: [
        { name: 'infra', waitTimeoutSeconds: 120, runMigrationsAfter: true },
        { name: 'apps', waitTimeoutSeconds: 180 },
      ],
      pollIntervalSeconds: 0.5,
    },
    preflight: { ports: Object.values(p), minDiskGb: 1, minMemoryGb: 1 },
    databases: [{ name: 'main', url: pgUrl, service: 'postgres', migrationsDir: MIGRATIONS_DIR }],
    approvals: { timeoutSeconds: 3600, approvers: { default: opts.approvers ?? ['alice', 'bob'] } },
  };
}

export function demoConfigYaml(opts: Parameters<typeof demoConfig>[0]): string {
  return stringify(demoConfig(opts));
}
